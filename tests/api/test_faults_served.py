"""Faults under load, served for real: `serve --workers 2` on a PostgreSQL deployment of its
own, 8 concurrent clients admitting patients, and the database connections of the app cut
under them, at least twice.

Twice over: `pg_terminate_backend` on every backend of this test's database that the app's
login role holds, run as the superuser on the shared cluster (every connection, idle or in the
middle of a statement, closed by the server); and a real `pg_ctl restart -m fast` of a cluster
the test starts for itself (tests/api/pg_cluster.py), which adds the seconds in which no
connection is accepted and a server that has forgotten every session. What must hold:
requests in flight answer a coded error (UNAVAILABLE, never INTERNAL and never a hang), no
mutation is half-written (each patient row has its access-log entry), the
access-log chain verifies (`patientpool audit verify`), and the same processes serve again
within seconds (the pool pings a connection before handing it out and replaces dead ones).

The same servers show the signals of several processes: every line they log is JSON, and
/metrics of either worker counts the requests of both (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.ids import parse_global_id
from auth.signing_keys import SigningKeys
from process.serve import app_state
from process.settings import Settings
from tenancy.keyring import LocalKeyProvider, generate_master_key_text
from tenancy.session import make_engine, session_factory
from tests.api.pg_cluster import Cluster
from tests.api.test_served import _free_port, _wait_ready
from tests.api.test_workers import CLI, ROOT, Deployment, Server
from tests.conftest import Database, create_pg_database, drop_pg_database
from tests.support import SEEDED, build_world, half_written, sign_in

pytestmark = pytest.mark.postgres

ADMIT = """mutation Admit($in: CreatePatientInput!) {
  createPatient(input: $in) { patient { id } } }"""
CLIENTS = 8
ALLOWED_FAULTS = {"UNAVAILABLE", "TIMEOUT"}


def _deploy(db: Database, tmp: Path) -> Deployment:
    """Migrated, with keys, a served environment and a world, on the database given."""
    db.migrate()
    master = generate_master_key_text()
    (tmp / "master.key").write_text(master)
    (tmp / "signing-keys.json").write_text(SigningKeys.generate_jwks_json())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATIENTPOOL_", "PROMETHEUS"))}
    env.update(
        PATIENTPOOL_DATA_DIR=str(tmp),
        PATIENTPOOL_DATABASE_URL=db.app_url,
        PATIENTPOOL_MIGRATION_DATABASE_URL=db.owner_url,
        PATIENTPOOL_POOL_SIZE="2",
        PATIENTPOOL_POOL_TIMEOUT_S="3",
        PATIENTPOOL_LOG_FORMAT="json",
    )

    async def setup() -> Any:
        engine = make_engine(db.owner_url, pool_size=1)
        owner = app_state(
            Settings(data_dir=tmp),
            session_factory(engine),
            LocalKeyProvider.from_text(master),
            SigningKeys.from_jwks_json((tmp / "signing-keys.json").read_text()),
        )
        world = await build_world(owner, f"flt-{uuid.uuid4().hex[:8]}")
        await engine.dispose()
        return world

    return Deployment(db, env, asyncio.run(setup()), uuid.uuid4(), tmp)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    name = f"pp_flt_{os.getpid()}"
    db = asyncio.run(create_pg_database(name))
    yield _deploy(db, tmp_path_factory.mktemp("faults"))
    asyncio.run(drop_pg_database(name))


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Cluster]]:
    """A deployment on a PostgreSQL cluster of the test's own, which it may really restart."""
    cluster = Cluster.start()
    try:
        db = asyncio.run(cluster.database("pp_rst"))
        yield _deploy(db, tmp_path_factory.mktemp("restart")), cluster
    finally:
        cluster.stop()


def _serve(deployment: Deployment, workers: int) -> Server:
    """As Deployment.serve, with more time to start: three processes import the app at once
    on a machine whose two cores other test runs share."""
    port = _free_port()
    log = deployment.tmp / "faults.log"
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--workers", str(workers)],
        env=deployment.env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 400
    try:
        _wait_ready(server.url, proc, timeout=400)
        while log.read_text().count("Application startup complete.") < workers:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.5)
    except AssertionError:
        _end(server)
        raise AssertionError(f"server did not become ready: {log.read_text()[-2000:]}") from None
    return server


def _end(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=30)


async def _kill_app_connections(deployment: Deployment) -> int:
    conn = await asyncpg.connect(deployment.db.owner_url.replace("+asyncpg", ""))
    try:
        killed = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND usename = $1 AND pid <> pg_backend_pid()",
            deployment.db.app_login,
        )
        return len(killed)
    finally:
        await conn.close()


async def _app_connections(deployment: Deployment) -> int:
    conn = await asyncpg.connect(deployment.db.owner_url.replace("+asyncpg", ""))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND usename = $1",
                deployment.db.app_login,
            )
        )
    finally:
        await conn.close()


async def _patient_exists(deployment: Deployment, patient_id: uuid.UUID) -> bool:
    conn = await asyncpg.connect(deployment.db.owner_url.replace("+asyncpg", ""))
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM patients WHERE id = $1", patient_id))
    finally:
        await conn.close()


def _json_lines_only(path: Path) -> list[str]:
    bad = []
    for line in path.read_text().splitlines():
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    return bad


def _requests_counted(metrics_text: str, operation: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (
                sample.name == "patientpool_requests_total"
                and sample.labels["operation"] == operation
            ):
                total += sample.value
    return total


async def test_killed_connections_under_load_answer_coded_and_recover(
    deployment: Deployment,
) -> None:
    await _disrupted_under_load(deployment, _kill_app_connections)


async def test_postgresql_restarted_under_load_answers_coded_and_recovers(
    own_cluster: tuple[Deployment, Cluster],
) -> None:
    """A real restart (`pg_ctl restart -m fast`): every connection closed by the server, then
    a second or two in which none is accepted, then a cluster that knows nothing of the app's
    pool. Same promises as for killed connections."""
    deployment, cluster = own_cluster

    async def restart(d: Deployment) -> int:
        connected = await _app_connections(d)
        await asyncio.to_thread(cluster.restart)
        return connected

    await _disrupted_under_load(deployment, restart)


async def _disrupted_under_load(
    deployment: Deployment, disrupt: Callable[[Deployment], Awaitable[int]]
) -> None:
    """8 clients admit patients through `serve --workers 2` while `disrupt` cuts the database
    off (at least twice; it answers how many connections it cut)."""
    server = _serve(deployment, workers=2)
    world = deployment.world
    answers: list[tuple[float, list[str], str | None]] = []  # (when, codes, created id)
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as setup:
            token = await sign_in(setup, world, "hq_admin")
        branch = world.branch_gid("b1")

        async def admit_until_stopped(n: int) -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                i = 0
                while not stop.is_set():
                    name = f"测试患者压测{world.slug}{n}-{i}"
                    SEEDED.add(name)
                    response = await client.post(
                        "/graphql",
                        json={
                            "query": ADMIT,
                            "variables": {"in": {"name": name, "homeBranchId": branch}},
                        },
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert response.status_code == 200, response.text
                    body = response.json()
                    made = (body.get("data") or {}).get("createPatient")
                    codes = [e["extensions"]["code"] for e in body.get("errors", [])]
                    answers.append(
                        (time.monotonic(), codes, made["patient"]["id"] if made else None)
                    )
                    i += 1

        clients = [asyncio.create_task(admit_until_stopped(n)) for n in range(CLIENTS)]
        await asyncio.sleep(2)
        kills = []
        # Twice at least, and until a request was cut off in flight (a kill that finds every
        # connection idle in the pool is absorbed by the ping on checkout), five times at most.
        while len(kills) < 2 or (len(kills) < 5 and not any(c for _, c, _ in answers)):
            cut = await disrupt(deployment)
            kills.append((time.monotonic(), cut))  # when the database was back
            await asyncio.sleep(2.5)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), timeout=40)

        last_kill = kills[-1][0]
        assert all(n > 0 for _, n in kills), kills  # connections were there to kill
        faults = [codes for _, codes, _ in answers if codes]
        assert faults, "no request was cut off: the kills came at a quiet moment"
        assert all(set(codes) <= ALLOWED_FAULTS for codes in faults), faults
        made = [pid for _, codes, pid in answers if pid is not None]
        assert all(not codes for _, codes, pid in answers if pid is not None)
        recovered = [t for t, codes, _ in answers if not codes and t > last_kill]
        assert recovered, "no request succeeded after the last kill"
        assert recovered[0] - last_kill < 5, recovered[0] - last_kill

        for gid in made[:: max(1, len(made) // 20)]:  # every success is stored
            assert await _patient_exists(deployment, parse_global_id(gid))
        assert await half_written(deployment.db.owner_url, deployment.world) == []
        verified = subprocess.run(
            [*CLI, "audit", "verify", "--tenant", world.slug],
            env=deployment.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr

        # Either worker's /metrics counts what both served (scraped a few times, so both answer).
        counted = []
        for _ in range(4):  # a new connection each time: the kernel hands it to either worker
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as scraper:
                counted.append(_requests_counted((await scraper.get("/metrics")).text, "Admit"))
        assert counted == [len(answers)] * 4, (counted, len(answers))
    finally:
        _end(server)
    assert _json_lines_only(server.log) == []
