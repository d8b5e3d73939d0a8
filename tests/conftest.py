"""Databases for the tests: a SQLite file and a PostgreSQL database, each made by
`alembic upgrade head`. On PostgreSQL the app connects as a login role that only belongs to
the application group role (owns nothing, cannot bypass RLS); migrations run as the owner.

PostgreSQL comes from PATIENTPOOL_TEST_POSTGRES_URL (default: postgres on 127.0.0.1:5432).
When it cannot be reached the PostgreSQL tests skip and say why; under CI=true they fail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from api.app import create_app
from api.context import AppState
from api.document_commands import push_project_operations
from api.settings import Settings
from auth.ratelimit import SlidingWindowLimiter
from auth.sessions import SignInLimits
from auth.signing_keys import SigningKeys
from migrations.runner import upgrade
from tenancy.keyring import LocalKeyProvider, generate_master_key_text
from tenancy.rls import APP_ROLE
from tenancy.session import make_engine, session_factory

PG_ADMIN_URL = os.environ.get(
    "PATIENTPOOL_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
APP_LOGIN = "pp_test_app"


@dataclass(frozen=True)
class Database:
    kind: str
    owner_url: str
    app_url: str


async def _pg_reachable() -> str | None:
    engine = create_async_engine(PG_ADMIN_URL)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001 - the reason is shown in the skip message
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    finally:
        await engine.dispose()


async def drop_pg_database(name: str) -> None:
    """Test databases are dropped when done, so runs do not pile them up on the server."""
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.dispose()


async def push_operations(owner_url: str) -> None:
    """What `patientpool migrate` does after upgrading: trust the project's own operations."""
    engine = make_engine(owner_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            await push_project_operations(session)
    finally:
        await engine.dispose()


async def _make_pg_database(name: str) -> Database:
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    await admin.dispose()
    owner_url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, owner_url)
    await push_operations(owner_url)
    admin = create_async_engine(owner_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        exists = await conn.exec_driver_sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_LOGIN}'")
        if exists.first() is None:
            await conn.exec_driver_sql(
                f"CREATE ROLE {APP_LOGIN} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE {APP_ROLE}"
            )
    await admin.dispose()
    app_url = (
        make_url(owner_url)
        .set(username=APP_LOGIN, password=None)
        .render_as_string(hide_password=False)
    )
    return Database("postgres", owner_url, app_url)


def pg_unavailable(reason: str) -> None:
    message = (
        f"PostgreSQL not reachable at {PG_ADMIN_URL} ({reason}); "
        "set PATIENTPOOL_TEST_POSTGRES_URL to run these tests"
    )
    if IN_CI:
        pytest.fail("CI=true and " + message)
    pytest.skip(message)


# The database fixtures are synchronous (their own short event loops): they run before the
# session's loop serves the async fixtures, and leave no connection behind.
@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    path: Path = tmp_path_factory.mktemp("sqlite") / "test.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    asyncio.run(push_operations(url))
    return Database("sqlite", url, url)


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[Database]:
    reason = asyncio.run(_pg_reachable())
    if reason is not None:
        pg_unavailable(reason)
    name = f"pp_test_{os.getpid()}"
    yield asyncio.run(_make_pg_database(name))
    asyncio.run(drop_pg_database(name))


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def db(request: pytest.FixtureRequest) -> Database:
    return request.getfixturevalue(f"{request.param}_db")


@pytest.fixture(scope="session")
def master_key() -> LocalKeyProvider:
    return LocalKeyProvider.from_text(generate_master_key_text())


@pytest.fixture(scope="session")
def signing_keys() -> SigningKeys:
    return SigningKeys.from_jwks_json(SigningKeys.generate_jwks_json())


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
async def state(
    db: Database, settings: Settings, master_key: LocalKeyProvider, signing_keys: SigningKeys
) -> AsyncIterator[AppState]:
    engine = make_engine(db.app_url, pool_size=5)
    # Generous limits: many tests sign in from the same test address. The limiter has tests.
    limits = SignInLimits(SlidingWindowLimiter(10, 300), SlidingWindowLimiter(100_000, 300))
    yield AppState(settings, session_factory(engine), master_key, signing_keys, limits)
    await engine.dispose()


@pytest.fixture(scope="session")
async def owner_state(
    db: Database, settings: Settings, master_key: LocalKeyProvider, signing_keys: SigningKeys
) -> AsyncIterator[AppState]:
    """Sessions as the owner: for provisioning test tenants (the platform-operator path)."""
    engine = make_engine(db.owner_url, pool_size=5)
    yield AppState(settings, session_factory(engine), master_key, signing_keys)
    await engine.dispose()


@pytest.fixture(scope="session")
async def pg_owner_state(
    postgres_db: Database,
    settings: Settings,
    master_key: LocalKeyProvider,
    signing_keys: SigningKeys,
) -> AsyncIterator[AppState]:
    """Owner sessions on PostgreSQL, for the tests that exist only there (RLS)."""
    engine = make_engine(postgres_db.owner_url, pool_size=2)
    yield AppState(settings, session_factory(engine), master_key, signing_keys)
    await engine.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (
            "postgres" in getattr(item, "fixturenames", ())
            or "postgres_db" in getattr(item, "fixturenames", ())
            or "[postgres" in item.name
        ):
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a skipped PostgreSQL test is a failure, whatever skipped it."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("postgres") is not None:
        report.outcome = "failed"
        report.longrepr = f"CI=true: PostgreSQL test skipped ({report.longrepr})"


@pytest.fixture
async def client(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(state.settings, state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
def unique() -> Iterator[str]:
    yield uuid.uuid4().hex[:10]


@pytest.fixture(scope="session", autouse=True)
def no_seeded_value_in_any_log_line() -> Iterator[None]:
    """DESIGN.md invariant 6 over the whole run: every log record of every test, at INFO and
    above as production logs, formatted with its traceback, holds no value a test world
    seeded (tests/support.py SEEDED)."""
    from tests.api.production import LogLines
    from tests.support import SEEDED, SEEDED_MARKS

    lines = LogLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(lines)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    # As production configures it (api/logs.py): Casbin's INFO is the whole policy.
    logging.getLogger("casbin").setLevel(logging.WARNING)
    yield
    root.removeHandler(lines)
    root.setLevel(level)
    marked = [line for line in lines.lines if any(m in line for m in SEEDED_MARKS)]
    leaked = [line for line in marked if any(v in line for v in SEEDED)]
    assert leaked == [], f"{len(leaked)} log lines hold seeded personal values: {leaked[:3]}"
