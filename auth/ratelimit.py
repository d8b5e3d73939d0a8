"""Sign-in attempt limits that hold across every process: the attempts are counted in the
database (`sign_in_windows`), not in one process's memory, so N workers allow what one does.

Each key counts hits in fixed windows; a hit is admitted while the sliding estimate (this
window's hits plus the previous window's, weighted by how much of it still overlaps the last
`window` seconds) stays within the limit. One upsert counts a hit atomically, whatever process
sends it. Keys are stored as digests: no email address or client address sits in the table.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.repository import RateLimitRepository


@dataclass(frozen=True)
class WindowLimit:
    """At most `limit` hits of one key in any `window_seconds`."""

    limit: int
    window_seconds: int
    name: str = ""
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def _digest(self, key: str) -> bytes:
        return hashlib.sha256(f"{self.name}\x00{key}".encode()).digest()[:16]

    async def hit(self, sessions: async_sessionmaker[AsyncSession], key: str) -> bool:
        """Record an attempt; True while the key stays within its limit."""
        now = self.clock()
        current = int(now // self.window_seconds)
        digest = self._digest(key)

        async with sessions() as session, session.begin():
            windows = RateLimitRepository(session)
            hits = await windows.count_hit(digest, current)
            previous = await windows.hits(digest, current - 1)
            await windows.drop_windows_before(digest, current - 1)
        overlap = 1.0 - (now % self.window_seconds) / self.window_seconds
        return hits + (previous or 0) * overlap <= self.limit

    async def reset(self, sessions: async_sessionmaker[AsyncSession], key: str) -> None:

        async with sessions() as session, session.begin():
            await RateLimitRepository(session).drop_windows(self._digest(key))
