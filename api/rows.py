"""GraphQL types over one row: the type declares its plain fields as attributes, and `of`
fills them from the row's attributes of the same names.

A field that only shows a column is an attribute (Strawberry's default resolver reads it; a
compiled plan reads it in place); a resolver is written only where a field computes (an id,
an enum, a look-up, a permission check), reading the row kept in `_row`."""

from __future__ import annotations

from functools import cache
from typing import Any, Self

from strawberry.types import get_object_definition
from strawberry.types.private import is_private


class RowType:
    """Base of a Strawberry type over a row (the type also declares `_row` as Private)."""

    @classmethod
    def of(cls, row: Any, **given: Any) -> Self:
        """The type over `row`: each plain field from the row, unless given here (as are the
        type's other private values)."""
        copied = {name: getattr(row, name) for name in _plain_fields(cls) if name not in given}
        return cls(_row=row, **copied, **given)  # type: ignore[call-arg]


@cache
def _plain_fields(cls: type) -> tuple[str, ...]:
    """The GraphQL fields of a Strawberry type that have no resolver, by Python name."""
    definition = get_object_definition(cls, strict=True)
    return tuple(
        f.python_name
        for f in definition.fields
        if f.base_resolver is None and not is_private(f.type_annotation.annotation)  # type: ignore[union-attr]
    )
