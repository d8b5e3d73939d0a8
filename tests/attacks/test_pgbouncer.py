"""Isolation through a real PgBouncer in transaction mode with 2 server connections: two app
instances (PATIENTPOOL_DATABASE_POOLER=pgbouncer) serve 500 interleaved requests of three
tenants, a fifth of them failing after the tenant was set, and none sees another tenant's
row; no server connection keeps a tenant between transactions.

Requests cancelled mid-transaction (api/extensions.py rolls back and returns the connection at
once: left to the garbage collector, under transaction pooling it would pin one of the two
server connections while its transaction stayed open) free their server connection; server
connections PostgreSQL closes behind the pooler are replaced within seconds."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from api.app import create_app
from api.ids import parse_global_id
from process.serve import app_state
from process.settings import Settings
from tenancy.session import make_engine, session_factory
from tests.api.test_served import _free_port
from tests.conftest import IN_CI, Database, create_pg_database, drop_pg_database
from tests.support import SEEDED, World, build_world, codes, gql, half_written, sign_in

pytestmark = pytest.mark.postgres
LIST = "{ patients(first: 50) { edges { node { id name } } } }"
ONE = "query($id: ID!) { patient(id: $id) { id name } }"


def _pgbouncer(tmp: Path, db: Database) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        message = "pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    target = make_url(db.owner_url)
    users = tmp / "users.txt"
    users.write_text(f'"{target.username}" ""\n"{db.app_login}" ""\n')
    config = tmp / "pgbouncer.ini"
    config.write_text(
        f"""[databases]
* = host={target.host} port={target.port or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
server_reset_query =
logfile = {tmp / "pgbouncer.log"}
pidfile = {tmp / "pgbouncer.pid"}
"""
    )
    tmp.chmod(0o777)
    for path in (users, config):
        path.chmod(0o644)
    command = [binary, str(config)]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        command = [binary, "-u", "postgres", str(config)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pgbouncer did not start: {proc.stderr.read()!r}") from None
            time.sleep(0.1)
    return proc, port


@pytest.fixture(scope="module")
def bouncer(postgres_db: Database) -> Iterator[Any]:
    name = f"pp_pgb_{os.getpid()}"
    db = asyncio.run(create_pg_database(name))
    db.migrate()
    # Its own directory: PgBouncer runs as another user, who cannot enter pytest's tmp dirs.
    tmp = Path(tempfile.mkdtemp(prefix="pp-pgbouncer-"))
    proc, port = _pgbouncer(tmp, db)
    pooled = make_url(db.app_url).set(host="127.0.0.1", port=port)
    yield db, pooled.render_as_string(hide_password=False)
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)
    asyncio.run(drop_pg_database(name))


@pytest.fixture(scope="module")
async def instances(
    bouncer: tuple[Database, str], master_key: Any, signing_keys: Any, tmp_path_factory: Any
) -> AsyncIterator[tuple[list[httpx.AsyncClient], list[World], str]]:
    db, pooled_url = bouncer
    settings = Settings(data_dir=tmp_path_factory.mktemp("pgb-data"), database_pooler="pgbouncer")
    owner_engine = make_engine(db.owner_url, pool_size=1)
    owner = app_state(settings, session_factory(owner_engine), master_key, signing_keys)
    worlds = [await build_world(owner, f"pgb{i}-{uuid.uuid4().hex[:6]}") for i in range(3)]
    await owner_engine.dispose()
    engines = [make_engine(pooled_url, pool_size=10, pooler="pgbouncer") for _ in range(2)]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(
                app=create_app(
                    settings,
                    app_state(settings, session_factory(engine), master_key, signing_keys),
                )
            ),
            base_url="http://test",
            timeout=120,
        )
        for engine in engines
    ]
    yield clients, worlds, pooled_url
    for client in clients:
        await client.aclose()
    for engine in engines:
        await engine.dispose()


async def _at_most(concurrent: int, call: Callable[[int], Awaitable[None]], count: int) -> None:
    """call(0) … call(count - 1), `concurrent` of them in flight at a time."""
    gate = asyncio.Semaphore(concurrent)

    async def limited(n: int) -> None:
        async with gate:
            await call(n)

    await asyncio.gather(*(limited(n) for n in range(count)))


async def _no_tenant_left(pooled_url: str) -> None:
    """Through the same pooler, 8 transactions (which land on each server connection) see the
    tenant unset and no patient row."""
    engine = make_engine(pooled_url, pool_size=4, pooler="pgbouncer")
    try:
        for _ in range(8):
            async with engine.connect() as conn:
                setting = await conn.exec_driver_sql(
                    "SELECT current_setting('app.tenant_id', true)"
                )
                assert setting.scalar() in (None, "")
                visible = await conn.exec_driver_sql("SELECT count(*) FROM patients")
                assert visible.scalar() == 0
    finally:
        await engine.dispose()


async def test_500_interleaved_requests_never_cross_tenants(
    instances: tuple[list[httpx.AsyncClient], list[World], str],
) -> None:
    clients, worlds, pooled_url = instances
    tokens = [await sign_in(clients[i % 2], w, "hq_admin") for i, w in enumerate(worlds)]
    own = [{w.gid(k) for k in w.patients} for w in worlds]
    rng = random.Random(22)
    leaks: list[str] = []
    answered = failed = 0

    async def one(n: int) -> None:
        nonlocal answered, failed
        t = rng.randrange(3)
        client = clients[n % 2]
        kind = n % 5
        if kind == 4:  # a foreign id: fails after the tenant was set
            other = worlds[(t + 1) % 3]
            result = await gql(client, ONE, {"id": other.gid("b1")}, token=tokens[t])
            assert codes(result) == ["NOT_FOUND"], result
            failed += 1
            return
        result = await gql(client, LIST, token=tokens[t])
        assert "errors" not in result, result
        ids = {e["node"]["id"] for e in result["data"]["patients"]["edges"]}
        assert ids, result
        leaks.extend(sorted(ids - own[t]))
        answered += 1

    await _at_most(12, one, 500)
    assert leaks == []
    assert answered + failed == 500
    assert failed >= 90 and answered >= 300
    # Afterwards, through the same pooler: a transaction of every client sees the tenant unset.
    for client in clients:
        result = await gql(client, LIST)
        assert codes(result) == ["UNAUTHENTICATED"]
    await _no_tenant_left(pooled_url)


ADMIT = """mutation Admit($in: CreatePatientInput!) {
  createPatient(input: $in) { patient { id } } }"""


async def _owner(db: Database) -> asyncpg.Connection:
    """The test database's owner straight to PostgreSQL, not through the pooler."""
    return await asyncpg.connect(db.owner_url.replace("+asyncpg", ""))


async def _patients_by_tenant(db: Database, worlds: list[World]) -> list[set[uuid.UUID]]:
    owner = await _owner(db)
    try:
        found = "SELECT id FROM patients WHERE tenant_id = $1"
        return [{r["id"] for r in await owner.fetch(found, w.tenant_id)} for w in worlds]
    finally:
        await owner.close()


async def test_requests_cancelled_mid_transaction_free_their_server_connection(
    instances: tuple[list[httpx.AsyncClient], list[World], str], bouncer: tuple[Database, str]
) -> None:
    """Reads and admissions cut off at random moments (the caller's task cancelled, as a
    stopping server or a client's timeout does): with 2 server connections, a cancelled request
    that kept its transaction open would pin one, and two would stall every later request. After
    200 of them: every later request of every tenant answers, no server connection is left idle
    in a transaction, none carries a tenant, and each admitted patient has its log entry."""
    clients, worlds, pooled_url = instances
    db = bouncer[0]
    tokens = [await sign_in(clients[i % 2], w, "hq_admin") for i, w in enumerate(worlds)]
    rng = random.Random(2222)
    cancelled = 0

    async def cut_short(n: int) -> None:
        nonlocal cancelled
        t = n % 3
        if n % 2:
            name = f"取消测试{worlds[t].slug}-{n}"
            SEEDED.add(name)
            call = gql(
                clients[n % 2],
                ADMIT,
                {"in": {"name": name, "homeBranchId": worlds[t].branch_gid("b1")}},
                token=tokens[t],
            )
        else:
            call = gql(clients[n % 2], LIST, token=tokens[t])
        try:
            await asyncio.wait_for(call, timeout=rng.uniform(0.001, 0.06))
        except TimeoutError:
            cancelled += 1

    await _at_most(8, cut_short, 200)
    assert cancelled >= 50, cancelled  # most were cut off in flight, not after they answered

    # Every tenant is served again at once, through both instances (a pinned connection
    # would make these wait for the pool: the bound turns that into a failure).
    own = await _patients_by_tenant(db, worlds)
    for n in range(30):
        t = n % 3
        result = await asyncio.wait_for(gql(clients[n % 2], LIST, token=tokens[t]), timeout=20)
        assert "errors" not in result, result
        ids = {parse_global_id(e["node"]["id"]) for e in result["data"]["patients"]["edges"]}
        assert ids and ids <= own[t], result

    owner = await _owner(db)
    try:
        stuck = await owner.fetch(
            "SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
        )
        assert stuck == [], stuck
    finally:
        await owner.close()
    # no half-written admission: each patient the cancelled calls left has its log entry
    for world in worlds:
        assert await half_written(db.owner_url, world) == []
    await _no_tenant_left(pooled_url)


async def test_server_connections_killed_behind_the_pooler_are_replaced(
    instances: tuple[list[httpx.AsyncClient], list[World], str], bouncer: tuple[Database, str]
) -> None:
    """PostgreSQL closes every server connection PgBouncer holds (what a restart does to the
    pooler): the app's client connections to PgBouncer stay, PgBouncer opens new server
    connections, and requests succeed again within seconds, still each tenant's own."""
    clients, worlds, _pooled_url = instances
    db = bouncer[0]
    tokens = [await sign_in(clients[i % 2], w, "hq_admin") for i, w in enumerate(worlds)]
    own = await _patients_by_tenant(db, worlds)
    for n in range(6):  # the pooler holds warm server connections
        assert "errors" not in await gql(clients[n % 2], LIST, token=tokens[n % 3])
    owner = await _owner(db)
    try:
        killed = await owner.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await owner.close()
    assert killed, "no server connection to kill"
    deadline = time.monotonic() + 10
    served = 0
    while served < 12:
        t = served % 3
        result = await gql(clients[served % 2], LIST, token=tokens[t])
        if "errors" in result:
            # a request on a connection the server just closed: coded, and only for a moment
            assert set(codes(result)) <= {"UNAVAILABLE"}, result
            assert time.monotonic() < deadline, "not served again within 10 s"
            await asyncio.sleep(0.2)
            continue
        ids = {parse_global_id(e["node"]["id"]) for e in result["data"]["patients"]["edges"]}
        assert ids and ids <= own[t], result
        served += 1
