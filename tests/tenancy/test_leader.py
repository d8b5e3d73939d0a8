"""The start-up lock: one holder per database at a time, on both databases."""

from __future__ import annotations

from tenancy.leader import StartupLock
from tests.conftest import Database


async def test_one_holder_at_a_time(db: Database) -> None:
    first, second = StartupLock(db.app_url), StartupLock(db.app_url)
    assert await first.acquire()
    try:
        assert not await second.acquire()
    finally:
        await first.release()
    assert await second.acquire()
    await second.release()
