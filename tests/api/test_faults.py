"""Limits under faults, on PostgreSQL: the statement timeout fires and rolls the mutation back,
and a pool with no connection free answers UNAVAILABLE after the pool timeout instead of
hanging.

Both hold a lock from a second (owner) connection so that the API's statement waits on it:
deterministic, where a "slow query" would depend on the machine's speed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from api.app import create_app
from api.context import AppState
from auth.access_log_archive import verify_log
from auth.ratelimit import WindowLimit
from auth.sessions import SignInLimits
from process.serve import app_state
from process.settings import Settings
from tenancy.session import bind_tenant, make_engine, session_factory
from tests.conftest import Database
from tests.support import SEEDED, World, build_world, codes, gql, ok, sign_in

pytestmark = pytest.mark.postgres

RENAME = """mutation($id: ID!, $n: String!) {
  updatePatient(id: $id, input: {name: $n}) { patient { name } } }"""
NAME = "query($id: ID!) { patient(id: $id) { name } }"


def _app_state(db: Database, base: AppState, *, timeout_ms: int, pool: int = 2) -> AppState:
    engine = make_engine(db.app_url, pool_size=pool, pool_timeout=0.5)
    return app_state(
        Settings(data_dir=base.settings.data_dir),
        session_factory(engine, statement_timeout_ms=timeout_ms),
        base.key_provider,
        base.signing_keys,
        # Its own limits: the suite's shared address window is spent by the tests before it.
        SignInLimits(WindowLimit(10, 300, "account"), WindowLimit(100_000, 300, "address")),
    )


async def _client(app_state: AppState) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(app_state.settings, app_state))
    return httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30)


async def _lock_access_log(db: Database) -> asyncpg.Connection:
    """Holds the access log's heads so that every append waits: the mutation's own writes
    have been sent by then, so a rollback is what keeps them out."""
    conn = await asyncpg.connect(db.owner_url.replace("+asyncpg", ""))
    await conn.execute("BEGIN; LOCK TABLE access_log_heads IN EXCLUSIVE MODE")
    return conn


async def _waiting(db: Database) -> int:
    conn = await asyncpg.connect(db.owner_url.replace("+asyncpg", ""))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND usename = $1",
                db.app_login,
            )
        )
    finally:
        await conn.close()


async def _chain_whole(owner: AppState, world: World) -> bool:
    async with owner.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        checked = await verify_log(session, owner.settings.archive_dir)
    return checked.result.ok


@pytest.fixture
async def world(pg_owner_state: AppState, unique: str) -> AsyncIterator[World]:
    yield await build_world(pg_owner_state, f"flt-{unique}")


async def test_each_transaction_sets_its_own_statement_timeout(
    postgres_db: Database, pg_owner_state: AppState, world: World
) -> None:
    timed = _app_state(postgres_db, pg_owner_state, timeout_ms=1234, pool=1)
    engine = timed.sessions.kw["bind"]
    plain = session_factory(engine)  # the same pooled connection, no timeout given
    try:
        async with timed.sessions() as session, session.begin():
            await bind_tenant(session, world.tenant_id)
            assert await session.scalar(text("SHOW statement_timeout")) == "1234ms"
            tenant = await session.scalar(text("SELECT current_setting('app.tenant_id')"))
            assert tenant == str(world.tenant_id)
        async with plain() as session, session.begin():
            # transaction-local: nothing carried into the next transaction on the connection
            assert await session.scalar(text("SHOW statement_timeout")) == "0"
    finally:
        await engine.dispose()


async def test_statement_timeout_answers_timeout_and_rolls_back(
    postgres_db: Database, pg_owner_state: AppState, world: World, unique: str
) -> None:
    timed = _app_state(postgres_db, pg_owner_state, timeout_ms=300)
    renamed = f"测试患者改名{unique}"
    SEEDED.add(renamed)
    try:
        async with await _client(timed) as client:
            token = await sign_in(client, world, "hq_admin")
            lock = await _lock_access_log(postgres_db)
            try:
                answer = await gql(client, RENAME, {"id": world.gid("b1"), "n": renamed}, token)
            finally:
                await lock.close()  # ends its transaction
            assert codes(answer) == ["TIMEOUT"], answer
            assert answer["data"] is None
            assert renamed not in str(answer)
            after = ok(await gql(client, NAME, {"id": world.gid("b1")}, token))
            assert after["patient"]["name"] == world.plaintext["b1"]["name"]
        assert await _chain_whole(pg_owner_state, world)
    finally:
        await timed.sessions.kw["bind"].dispose()


async def test_pool_exhausted_answers_unavailable_not_a_hang(
    postgres_db: Database, pg_owner_state: AppState, world: World, unique: str
) -> None:
    """A pool of one connection and one overflow: two renames hold both while they wait on
    the lock; a third request gets no connection within the pool timeout (0.5 s)."""
    slow = _app_state(postgres_db, pg_owner_state, timeout_ms=60_000, pool=1)
    names = [f"测试患者满池{unique}{i}" for i in range(2)]
    SEEDED.update(names)
    try:
        async with await _client(slow) as client:
            token = await sign_in(client, world, "hq_admin")
            lock = await _lock_access_log(postgres_db)
            try:
                held: list[asyncio.Task[Any]] = [
                    asyncio.create_task(
                        gql(client, RENAME, {"id": world.gid(key), "n": name}, token)
                    )
                    for key, name in zip(("b1", "b2"), names, strict=True)
                ]
                for _ in range(200):
                    if await _waiting(postgres_db) == 2:
                        break
                    await asyncio.sleep(0.05)
                assert await _waiting(postgres_db) == 2
                refused = await asyncio.wait_for(
                    gql(client, NAME, {"id": world.gid("hm")}, token), timeout=20
                )
                assert codes(refused) == ["UNAVAILABLE"], refused
            finally:
                await lock.close()
            done = await asyncio.gather(*held)
            assert [d["data"]["updatePatient"]["patient"]["name"] for d in done] == names
            again = ok(await gql(client, NAME, {"id": world.gid("hm")}, token))
            assert again["patient"]["name"] == world.plaintext["hm"]["name"]
        assert await _chain_whole(pg_owner_state, world)
    finally:
        await slow.sessions.kw["bind"].dispose()
