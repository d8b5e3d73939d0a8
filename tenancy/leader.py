"""The start-up lock: of the processes serving one database, one does the start-up work
(resuming background jobs), and holds the lock for as long as it lives, so a worker that starts
later does not do it again. PostgreSQL: a session-level advisory lock on a connection of its
own, outside the pool. SQLite: an exclusive `flock` on a file next to the database.

Behind a transaction-mode pooler (PgBouncer) a session lock would stay on a server connection
that other clients then share, so there the lock is transaction-level, in a transaction the
holder keeps open: the leader occupies one server connection for as long as it lives.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

LOCK_KEY = "patientpool:start-up"


class StartupLock:
    def __init__(self, url: str, *, transaction_pooled: bool = False) -> None:
        self.url = url
        self.transaction_pooled = transaction_pooled
        self._conn: AsyncConnection | None = None
        self._fd: int | None = None

    async def acquire(self) -> bool:
        """True when this process got the lock (and keeps it until `release`)."""
        if self.url.startswith("sqlite"):
            path = Path(make_url(self.url).database or "patientpool.db")
            fd = os.open(f"{path}.start-up.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True
        engine = create_async_engine(self.url, poolclass=NullPool)
        conn = await engine.connect()
        got = await conn.exec_driver_sql(f"SELECT pg_try_advisory_lock(hashtext('{LOCK_KEY}'))")
        if got.scalar():
            await conn.commit()  # end the implicit transaction; the session lock stays
            self._conn = conn
            return True
        await conn.close()
        await engine.dispose()
        return False

    async def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        if self._conn is not None:
            engine = self._conn.engine
            await self._conn.close()  # the session ends, and with it the advisory lock
            await engine.dispose()
            self._conn = None
