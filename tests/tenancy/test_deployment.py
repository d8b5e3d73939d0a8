"""PostgreSQL deployments without superpowers: `migrate` as an owner that may not create roles,
two deployments on one cluster kept apart, and `db check` finding each broken setting."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.runner import upgrade
from process.operator import db_check_command
from process.settings import Settings
from tests.conftest import PG_ADMIN_URL, Database, create_pg_database, drop_pg_database

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "process.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


async def _admin(database: str, *sql: str) -> list[Any]:
    """Run statements as the cluster's superuser in `database`; the last one's rows."""
    url = make_url(PG_ADMIN_URL).set(database=database)
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    rows: list[Any] = []
    try:
        async with engine.connect() as conn:
            for statement in sql:
                result = await conn.exec_driver_sql(statement)
                rows = list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()
    return rows


def _name(db: Database) -> str:
    return str(make_url(db.owner_url).database)


async def _check(db: Database, app_role: str | None = None) -> list[str]:
    cfg = Settings(database_url=db.app_url, migration_database_url=db.migration_url)
    return await db_check_command(cfg)


async def _can_connect(url: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
        return True
    except Exception as exc:  # noqa: BLE001 - the refusal is the answer
        assert "permission denied for database" in str(exc), exc
        return False
    finally:
        await engine.dispose()


@pytest.fixture
async def limited(postgres_db: Database, unique: str) -> AsyncIterator[Database]:
    """A database owned by a role with neither SUPERUSER nor CREATEROLE, not yet migrated."""
    db = await create_pg_database(f"pp_lim_{unique}", limited_owner=True)
    yield db
    await drop_pg_database(_name(db))


async def test_migrate_as_owner_without_createrole(limited: Database, tmp_path: Path) -> None:
    name = _name(limited)
    env = {
        "PATIENTPOOL_MIGRATION_DATABASE_URL": limited.migration_url,
        "PATIENTPOOL_DATABASE_URL": limited.app_url,
        "PATIENTPOOL_DATA_DIR": str(tmp_path),
    }
    done = _cli("migrate", env=env)
    assert done.returncode == 0, done.stderr
    assert f"privileges granted directly to the login role {name}_login" in done.stderr
    assert await _admin(name, f"SELECT 1 FROM pg_roles WHERE rolname = '{name}_app'") == []
    owners = await _admin(
        name,
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
    )
    assert owners == [(f"{name}_owner",)]
    assert await _admin(
        name, f"SELECT has_table_privilege('{name}_login', 'patients', 'SELECT, INSERT')"
    ) == [(True,)]
    checked = _cli("db", "check", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("ok:")
    # A second run changes nothing and says the same.
    again = _cli("migrate", env=env)
    assert again.returncode == 0 and "directly to the login role" in again.stderr


async def test_migrate_without_a_role_to_grant_to_fails_with_a_reason(
    limited: Database, tmp_path: Path
) -> None:
    env = {
        "PATIENTPOOL_MIGRATION_DATABASE_URL": limited.migration_url,
        "PATIENTPOOL_DATABASE_URL": limited.migration_url,  # no separate login role
        "PATIENTPOOL_DATA_DIR": str(tmp_path),
    }
    done = _cli("migrate", env=env)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "may not create roles" in done.stderr


def test_isolation_suite_as_the_directly_granted_login() -> None:
    """The PostgreSQL isolation tests, with every test database migrated by an owner without
    CREATEROLE and the app connecting as the login role the grants went to."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/attacks/test_isolation.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "postgres and not cannot_reach",
            "tests/migrations",
        ],
        env={**os.environ, "PATIENTPOOL_TEST_PG_OWNER": "limited"},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "skipped" not in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= 12, summary


async def test_two_deployments_on_one_cluster_stay_apart(
    postgres_db: Database, unique: str
) -> None:
    a = await create_pg_database(f"pp_dep_a_{unique}")
    b = await create_pg_database(f"pp_dep_b_{unique}")
    try:
        for db in (a, b):
            notes = await asyncio.to_thread(db.migrate)
            assert f"created the group role {_name(db)}_app" in notes
        for mine, other in ((a, b), (b, a)):
            assert await _can_connect(mine.app_url)
            stranger = make_url(other.app_url).set(username=mine.app_login)
            assert not await _can_connect(stranger.render_as_string(hide_password=False))
            rows = await _admin(
                _name(other),
                f"""SELECT r.rolname, c.relname FROM pg_roles r, pg_class c
                    WHERE r.rolname IN ('{_name(mine)}_app', '{mine.app_login}')
                      AND c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                      AND (has_table_privilege(r.oid, c.oid, 'SELECT')
                           OR has_table_privilege(r.oid, c.oid, 'INSERT')
                           OR has_table_privilege(r.oid, c.oid, 'UPDATE'))""",
            )
            assert rows == []
            assert await _check(mine) == []
    finally:
        await drop_pg_database(_name(a))
        await drop_pg_database(_name(b))


async def test_migration_moves_a_deployment_off_the_shared_group_role(
    postgres_db: Database, unique: str
) -> None:
    db = await create_pg_database(f"pp_legacy_{unique}")
    name = _name(db)
    try:
        # What revisions up to 0010 did: everything granted to the cluster-wide role.
        await asyncio.to_thread(lambda: upgrade(db.owner_url, "0010", app_role="patientpool_app"))
        legacy = await _admin(
            name,
            "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE a.grantee = 'patientpool_app'::regrole",
        )
        assert legacy[0][0] > 10
        await asyncio.to_thread(db.migrate)
        left = await _admin(
            name,
            """SELECT has_table_privilege('patientpool_app', 'patients', 'SELECT'),
                      has_column_privilege('patientpool_app', 'tenants', 'policy_version',
                                           'UPDATE'),
                      has_database_privilege('patientpool_app', current_database(), 'CONNECT'),
                      has_table_privilege(:r, 'patients', 'SELECT, INSERT, UPDATE, DELETE'),
                      has_column_privilege(:r, 'tenants', 'policy_version', 'UPDATE'),
                      has_table_privilege(:r, 'tenants', 'UPDATE')""".replace(
                ":r", f"'{name}_app'"
            ),
        )
        assert left == [(False, False, False, True, True, False)]
        assert await _check(db) == []
    finally:
        await drop_pg_database(name)


# db check: one deliberately broken setting per test, on one deployment made for the module.


@pytest.fixture(scope="module")
def deployment(postgres_db: Database) -> Any:
    db = asyncio.run(create_pg_database(f"pp_chk_{os.getpid()}"))
    asyncio.run(asyncio.to_thread(db.migrate))
    yield db
    asyncio.run(drop_pg_database(_name(db)))


async def _broken(db: Database, breaks: str, mends: str) -> list[str]:
    name = _name(db)
    assert await _check(db) == []
    await _admin(name, *breaks.format(db=name, login=db.app_login).split(";"))
    try:
        return await _check(db)
    finally:
        await _admin(name, *mends.format(db=name, login=db.app_login).split(";"))
        assert await _check(db) == []


async def test_db_check_superuser(deployment: Database) -> None:
    found = await _broken(
        deployment, "ALTER ROLE {login} SUPERUSER", "ALTER ROLE {login} NOSUPERUSER"
    )
    assert f"app role {deployment.app_login} is a superuser" in found


async def test_db_check_bypassrls(deployment: Database) -> None:
    found = await _broken(
        deployment, "ALTER ROLE {login} BYPASSRLS", "ALTER ROLE {login} NOBYPASSRLS"
    )
    assert found == [
        f"app role {deployment.app_login} has BYPASSRLS (row-level security does not apply)"
    ]


async def test_db_check_app_role_owns_objects(deployment: Database) -> None:
    found = await _broken(
        deployment,
        "CREATE TABLE pp_stray (x int); ALTER TABLE pp_stray OWNER TO {login}",
        "DROP TABLE pp_stray",
    )
    assert found == [
        "app role owns 1 objects (e.g. pp_stray): the owner is not bound by the grants"
    ]


async def test_db_check_table_without_forced_rls(deployment: Database) -> None:
    found = await _broken(
        deployment,
        "ALTER TABLE visits NO FORCE ROW LEVEL SECURITY",
        "ALTER TABLE visits FORCE ROW LEVEL SECURITY",
    )
    assert found == ["table visits has tenant rows without forced row-level security"]


async def test_db_check_connect_open_to_public(deployment: Database) -> None:
    found = await _broken(
        deployment,
        'GRANT CONNECT ON DATABASE "{db}" TO PUBLIC',
        'REVOKE CONNECT ON DATABASE "{db}" FROM PUBLIC',
    )
    assert found == [
        "CONNECT on this database is open to PUBLIC: every role of the cluster may connect"
    ]


async def test_db_check_another_deployments_role_may_connect(deployment: Database) -> None:
    """Staging's login made a member of production's app role (the shared-role mistake)."""
    other = f"{_name(deployment)}_other"
    await _admin(_name(deployment), f"CREATE ROLE {other} LOGIN NOSUPERUSER NOBYPASSRLS")
    try:
        found = await _broken(
            deployment,
            f"GRANT {{db}}_app TO {other}",
            f"REVOKE {{db}}_app FROM {other}",
        )
    finally:
        await _admin(_name(deployment), f"DROP ROLE {other}")
    assert found == [
        f"1 other login roles may connect (e.g. {other}): "
        "another deployment's role reaches this database"
    ]


def test_db_check_command_exits_1_with_a_line_each(deployment: Database, tmp_path: Path) -> None:
    name = _name(deployment)
    asyncio.run(_admin(name, "ALTER TABLE visits NO FORCE ROW LEVEL SECURITY"))
    try:
        done = _cli(
            "db",
            "check",
            env={
                "PATIENTPOOL_DATABASE_URL": deployment.app_url,
                "PATIENTPOOL_DATA_DIR": str(tmp_path),
            },
        )
    finally:
        asyncio.run(_admin(name, "ALTER TABLE visits FORCE ROW LEVEL SECURITY"))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "table visits has tenant rows without forced row-level security"
    ]


def test_a_bad_app_role_setting_exits_2(tmp_path: Path) -> None:
    done = _cli(
        "migrate",
        env={"PATIENTPOOL_APP_ROLE": "Robert'); DROP", "PATIENTPOOL_DATA_DIR": str(tmp_path)},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "patientpool: PATIENTPOOL_APP_ROLE must be a lowercase role name "
        "(letters, digits and _, at most 63)"
    ]
