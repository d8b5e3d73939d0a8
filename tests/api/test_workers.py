"""Several real server processes on one PostgreSQL deployment: `serve --workers 2` and a
second `serve` beside it. Start-up work runs once, a role change through one process is
enforced by the other on its next request, sign-in attempts are counted across processes, and
SIGTERM lets a request in flight finish."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from auth.signing_keys import SigningKeys
from process.serve import app_state
from process.settings import Settings
from tenancy.keyring import LocalKeyProvider, generate_master_key_text
from tenancy.session import make_engine, session_factory
from tests.api.test_served import _free_port, _wait_ready
from tests.conftest import Database, create_pg_database, drop_pg_database
from tests.support import PASSWORD, SIGN_IN, World, build_world, codes, gql, sign_in

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "process.cli"]
HEALTH = "query($id: ID!) { patient(id: $id) { medicalHistory } }"


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    log: Path

    def text(self) -> str:
        return self.log.read_text()


@dataclass
class Deployment:
    db: Database
    env: dict[str, str]
    world: World
    job_id: uuid.UUID
    tmp: Path

    def serve(self, name: str, workers: int) -> Server:
        port = _free_port()
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), "--workers", str(workers)],
            env=self.env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        server = Server(f"http://127.0.0.1:{port}", proc, log)
        _wait_ready(server.url, proc)
        return server


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        server.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def deployment(postgres_db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("workers")
    name = f"pp_wk_{os.getpid()}"
    db = asyncio.run(create_pg_database(name))
    db.migrate()
    master = generate_master_key_text()
    (tmp / "master.key").write_text(master)
    (tmp / "signing-keys.json").write_text(SigningKeys.generate_jwks_json())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENTPOOL_")}
    env.update(
        PATIENTPOOL_DATA_DIR=str(tmp),
        PATIENTPOOL_DATABASE_URL=db.app_url,
        PATIENTPOOL_MIGRATION_DATABASE_URL=db.owner_url,
    )

    async def setup() -> tuple[World, uuid.UUID]:
        engine = make_engine(db.owner_url, pool_size=1)
        owner = app_state(
            Settings(data_dir=tmp),
            session_factory(engine),
            LocalKeyProvider.from_text(master),
            SigningKeys.from_jwks_json((tmp / "signing-keys.json").read_text()),
        )
        world = await build_world(owner, f"wk-{uuid.uuid4().hex[:8]}")
        job_id = uuid.uuid4()
        async with engine.begin() as conn:  # a rescore cut off by a crash: left `running`
            await conn.execute(
                text(
                    "INSERT INTO jobs (tenant_id, id, kind, status, total, done, created_at) "
                    "VALUES (:t, :j, 'rescore', 'running', 4, 0, now())"
                ),
                {"t": world.tenant_id, "j": job_id},
            )
        await engine.dispose()
        return world, job_id

    world, job_id = asyncio.run(setup())
    yield Deployment(db, env, world, job_id, tmp)
    asyncio.run(drop_pg_database(name))


@pytest.fixture(scope="module")
def servers(deployment: Deployment) -> Iterator[tuple[Server, Server]]:
    """`serve --workers 2` and a one-process `serve` beside it, on one database."""
    a = deployment.serve("a", 2)
    b = deployment.serve("b", 1)
    yield a, b
    _stop(a)
    _stop(b)


async def _job_status(db: Database, job_id: uuid.UUID) -> str:
    engine = create_async_engine(db.owner_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT status FROM jobs WHERE id = :j"), {"j": job_id}
            )
            return str(result.scalar())
    finally:
        await engine.dispose()


def _wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def test_start_up_work_runs_once_across_processes(
    deployment: Deployment, servers: tuple[Server, Server]
) -> None:
    a, b = servers

    def lines(marker: str) -> int:
        return a.text().count(marker) + b.text().count(marker)

    # Three processes started (two workers of a, one of b): each says which it was.
    _wait_for(lambda: lines("start-up work:") == 3, "three processes' start-up")
    assert lines("start-up work: this process resumes background jobs") == 1
    assert lines("start-up work: left to the process holding the start-up lock") == 2
    assert lines(f"resuming job {deployment.job_id}") == 1
    _wait_for(
        lambda: asyncio.run(_job_status(deployment.db, deployment.job_id)) == "done",
        "the resumed job to finish",
    )


async def _client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=60)


async def test_role_revoked_through_one_process_is_denied_through_the_other(
    deployment: Deployment, servers: tuple[Server, Server]
) -> None:
    """The bound: the next request after the change commits (each request reads the tenant's
    policy version; a process reloads its cached enforcer when the version moved)."""
    a, b = servers
    world = deployment.world
    async with await _client(a) as via_a, await _client(b) as via_b:
        doctor = await sign_in(via_b, world, "doctor")
        seen = await gql(via_b, HEALTH, {"id": world.gid("assigned")}, token=doctor)
        assert seen["data"]["patient"]["medicalHistory"], seen  # cached in b's enforcer now
        admin = await sign_in(via_a, world, "hq_admin")
        changed = await gql(
            via_a,
            'mutation($s: ID!) { setStaffRoles(staffId: $s, roles: ["operator"]) { roles } }',
            {"s": world.staff_gid("doctor")},
            token=admin,
        )
        assert changed["data"]["setStaffRoles"]["roles"] == ["operator"], changed
        denied = await gql(via_b, HEALTH, {"id": world.gid("assigned")}, token=doctor)
        assert codes(denied) == ["FORBIDDEN"], denied


async def test_sign_in_attempts_are_limited_across_processes(
    deployment: Deployment, servers: tuple[Server, Server]
) -> None:
    """10 attempts per account in 5 minutes, in all processes together (not 10 in each)."""
    world = deployment.world
    variables = {"t": world.slug, "e": world.email("marketing"), "p": "wrong " + PASSWORD}
    async with await _client(servers[0]) as via_a, await _client(servers[1]) as via_b:
        answers = []
        for i in range(12):
            answers.append(codes(await gql(via_a if i % 2 else via_b, SIGN_IN, variables)))
    assert answers[:10] == [["UNAUTHENTICATED"]] * 10
    assert answers[10:] == [["RATE_LIMITED"]] * 2


async def _waiting_on_lock(db: Database) -> int:
    engine = create_async_engine(db.owner_url)
    try:
        async with engine.connect() as conn:
            result = await conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND usename = '" + str(db.app_login) + "'"
            )
            return int(result.scalar() or 0)
    finally:
        await engine.dispose()


async def test_sigterm_finishes_the_request_in_flight(deployment: Deployment) -> None:
    server = deployment.serve("c", 1)
    world = deployment.world
    try:
        # Hold a lock that sign-in's read of the tenants table waits for.
        conn = await asyncpg.connect(deployment.db.owner_url.replace("+asyncpg", ""))
        await conn.execute("BEGIN; LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        async with await _client(server) as client:
            variables = {"t": world.slug, "e": world.email("auditor"), "p": PASSWORD}
            in_flight = asyncio.create_task(gql(client, SIGN_IN, variables))
            while await _waiting_on_lock(deployment.db) == 0:  # the request reached the database
                assert not in_flight.done(), in_flight.result()
                await asyncio.sleep(0.1)
            server.proc.send_signal(signal.SIGTERM)
            while "Waiting for connections to close" not in server.text():
                assert server.proc.poll() is None
                await asyncio.sleep(0.1)
            await conn.execute("COMMIT")  # the request may go on now
            answer = await in_flight
        assert answer["data"]["signIn"]["accessToken"], answer
        # uvicorn re-raises the signal once it has shut down: a clean SIGTERM exit.
        assert await asyncio.to_thread(server.proc.wait, 60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.text()
        await conn.close()
    finally:
        _stop(server)
