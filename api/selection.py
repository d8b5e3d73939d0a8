"""What an operation asks for below a field: lets a root resolver load, once, only what the
selected fields will need."""

from __future__ import annotations

from typing import Any


def asks(selections: list[Any], names: frozenset[str]) -> bool:
    """Whether the selection (fragments included) reaches any of these fields anywhere below."""
    for sel in selections:
        if getattr(sel, "name", None) in names:
            return True
        if asks(getattr(sel, "selections", None) or [], names):
            return True
    return False
