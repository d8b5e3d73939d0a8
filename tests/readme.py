"""The README's code blocks, so tests can run them as a newcomer would."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks(language: str, section: str | None = None) -> list[str]:
    """The README's ```language blocks, in order; only those under the heading `section`
    (up to the next heading of the same or a higher level) when it is given."""
    text = README.read_text(encoding="utf-8")
    if section is not None:
        start = text.index(section)
        level = len(section) - len(section.lstrip("#"))
        rest = text[start + len(section) :]
        heading = re.compile("^#{1," + str(level) + "} ", re.M)
        ends = [m.start() for m in heading.finditer(rest)]
        text = rest[: ends[0]] if ends else rest
    return [body for lang, body in _BLOCK.findall(text) if lang == language]
