"""Times from the API: an argument must carry its offset, and is kept in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.errors import BadInput


def to_utc(at: datetime, field: str) -> datetime:
    if at.tzinfo is None:
        raise BadInput("give a time with a timezone offset", field=field)
    return at.astimezone(UTC)
