"""The server's clock as the judge of times that callers give: a moment more than a few
minutes ahead of it (a device clock set wrong, a typo in the year) is refused rather than
counted now as if it had happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.errors import BadInput

# Clocks of phones and kiosks drift; five minutes absorbs that and nothing more.
MAX_AHEAD = timedelta(minutes=5)


def not_in_future(at: datetime, field: str) -> datetime:
    """`at` (timezone-aware) unless it lies more than MAX_AHEAD past the server's clock."""
    if at > datetime.now(UTC) + MAX_AHEAD:
        raise BadInput("that time is in the future by the server's clock", field=field)
    return at
