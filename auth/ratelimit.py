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

from sqlalchemy import Integer, LargeBinary, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from tenancy.orm import Base


class SignInWindow(Base):
    """Hits of one limiter key in one fixed window (not tenant-owned: an address spans
    tenants)."""

    __tablename__ = "sign_in_windows"

    key_digest: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hits: Mapped[int] = mapped_column(Integer)


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
            dialect = session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            stmt = insert(SignInWindow).values(key_digest=digest, window=current, hits=1)
            stmt = stmt.on_conflict_do_update(
                index_elements=["key_digest", "window"],
                set_={"hits": SignInWindow.hits + 1},
            ).returning(SignInWindow.hits)
            hits = int((await session.execute(stmt)).scalar_one())
            previous = await session.scalar(
                select(SignInWindow.hits).where(
                    SignInWindow.key_digest == digest, SignInWindow.window == current - 1
                )
            )
            await session.execute(
                delete(SignInWindow).where(
                    SignInWindow.key_digest == digest, SignInWindow.window < current - 1
                )
            )
        overlap = 1.0 - (now % self.window_seconds) / self.window_seconds
        return hits + (previous or 0) * overlap <= self.limit

    async def reset(self, sessions: async_sessionmaker[AsyncSession], key: str) -> None:
        async with sessions() as session, session.begin():
            await session.execute(
                delete(SignInWindow).where(SignInWindow.key_digest == self._digest(key))
            )
