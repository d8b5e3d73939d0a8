"""Databases for the tests: a SQLite file and a PostgreSQL database, each made by
`alembic upgrade head`. On PostgreSQL each test database is its own deployment: the app
connects as the login role `<db>_login` (owns nothing, cannot bypass RLS), which the migration
makes a member of the deployment's group role `<db>_app`; provisioning runs as the superuser.

With PATIENTPOOL_TEST_PG_OWNER=limited the database is owned by `<db>_owner`, a role with
neither SUPERUSER nor CREATEROLE: the migration runs as that owner and, unable to create the
group role, grants straight to the login role (tests/tenancy/test_deployment.py runs the
isolation suite that way).

PostgreSQL comes from PATIENTPOOL_TEST_POSTGRES_URL (default: postgres on 127.0.0.1:5432).
When it cannot be reached the PostgreSQL tests skip and say why; under CI=true they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from auth.ratelimit import WindowLimit
from auth.sessions import SignInLimits
from auth.signing_keys import SigningKeys
from migrations.runner import upgrade
from process.document_commands import push_project_operations
from process.serve import app_state
from process.settings import Settings
from tenancy.keyring import LocalKeyProvider, generate_master_key_text
from tenancy.session import make_engine, session_factory

PG_ADMIN_URL = os.environ.get(
    "PATIENTPOOL_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
LIMITED_OWNER = os.environ.get("PATIENTPOOL_TEST_PG_OWNER", "") == "limited"


@dataclass(frozen=True)
class Database:
    kind: str
    owner_url: str  # provisioning and schema checks (the superuser on PostgreSQL)
    app_url: str
    migration_url: str = ""  # who runs `migrate` (the owner); owner_url when empty
    app_login: str | None = None

    def migrate(self, revision: str = "head") -> list[str]:
        return upgrade(self.migration_url or self.owner_url, revision, app_login=self.app_login)


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


def _pg_url(name: str, user: str | None = None) -> str:
    url = make_url(PG_ADMIN_URL).set(database=name)
    if user is not None:
        url = url.set(username=user, password=None)
    return url.render_as_string(hide_password=False)


def deployment_roles(name: str) -> tuple[str, ...]:
    return (f"{name}_app", f"{name}_login", f"{name}_owner")


async def drop_pg_database(name: str) -> None:
    """Test databases (and their deployment's roles) are dropped when done, so runs do not
    pile them up on the server."""
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in deployment_roles(name):
            # A role still granted in another database stays (it then says so, harmlessly).
            with contextlib.suppress(Exception):
                await conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
    await admin.dispose()


async def push_operations(owner_url: str) -> None:
    """What `patientpool migrate` does after upgrading: trust the project's own operations."""
    engine = make_engine(owner_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            await push_project_operations(session)
    finally:
        await engine.dispose()


async def create_pg_database(name: str, *, limited_owner: bool = False) -> Database:
    """An empty database and its login role `<name>_login`; with `limited_owner` the database
    belongs to `<name>_owner` (no SUPERUSER, no CREATEROLE), who is to migrate it."""
    login, owner = f"{name}_login", f"{name}_owner"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        roles = [(login, "")] + ([(owner, " NOCREATEROLE NOCREATEDB")] if limited_owner else [])
        for role, extra in roles:
            found = await conn.exec_driver_sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'")
            if found.first() is None:
                await conn.exec_driver_sql(
                    f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS{extra}'
                )
        await conn.exec_driver_sql(
            f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if limited_owner else "")
        )
    await admin.dispose()
    return Database(
        "postgres",
        _pg_url(name),
        _pg_url(name, login),
        _pg_url(name, owner) if limited_owner else _pg_url(name),
        login,
    )


async def _make_pg_database(name: str) -> Database:
    db = await create_pg_database(name, limited_owner=LIMITED_OWNER)
    await asyncio.to_thread(db.migrate)
    await push_operations(db.migration_url or db.owner_url)
    return db


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
    limits = SignInLimits(
        WindowLimit(10, 300, "account"),
        WindowLimit(100_000, 300, "address"),
        survey_link=WindowLimit(100_000, 300, "survey_link"),
    )
    yield app_state(settings, session_factory(engine), master_key, signing_keys, limits)
    await engine.dispose()


@pytest.fixture(scope="session")
async def owner_state(
    db: Database, settings: Settings, master_key: LocalKeyProvider, signing_keys: SigningKeys
) -> AsyncIterator[AppState]:
    """Sessions as the owner: for provisioning test tenants (the platform-operator path)."""
    engine = make_engine(db.owner_url, pool_size=5)
    yield app_state(settings, session_factory(engine), master_key, signing_keys)
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
    yield app_state(settings, session_factory(engine), master_key, signing_keys)
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
