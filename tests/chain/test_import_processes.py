"""Imports in real processes (issue 24): `patientpool patients import` killed with SIGKILL at a
random batch and resumed ends exactly as one uninterrupted run of the same file into another
chain; two processes started on one job never both work it: the second sees it held and
waits, and when the first is killed its lease lapses and the second finishes the job.

Small files and small batches (a setting), so each test takes seconds; SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from api.context import AppState
from auth.access_log import AccessLogEntry
from bench.import_rows import generate
from domain.imports.service import ImportService
from domain.patients.models import Patient
from domain.patients.service import unseal
from domain.pool.models import PatientTag, Tag
from domain.tenants.models import Branch
from tenancy.keystore import load_cipher
from tenancy.session import make_engine, session_factory
from tests.chain.conftest import Operator
from tests.chain.imports import bind_to_chain, chain_for_import, start_import
from tests.conftest import Database
from tests.support import SEEDED

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "process.cli", "patients", "import"]
ROWS = 1200
SUMMARY = re.compile(
    r"job (\S+) done: created (\d+), updated (\d+), unchanged (\d+), rejected (\d+)"
)
TEXT = ("name", "phone", "wechat_id", "medical_history", "allergies", "diagnoses", "notes")


def _spawn(operator: Operator, args: list[str], out: Path, batch: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENTPOOL_")}
    env.update(operator.env)
    # small batches, so there is a batch to kill the process after; a short lease, so the
    # process that goes on does not wait long for the dead one's to lapse
    env.update(PATIENTPOOL_IMPORT_BATCH_ROWS=str(batch), PATIENTPOOL_JOB_LEASE_SECONDS="3")
    return subprocess.Popen(
        [*CLI, *args], env=env, cwd=ROOT, stdout=out.open("w"), stderr=subprocess.STDOUT, text=True
    )


class Jobs:
    """The chain's import job as stored, read as the owner (no tenant binding needed), on one
    engine for the test, polled every few milliseconds. A plain engine: on SQLite the app's
    takes the write lock at BEGIN, which a poll must not hold against the import."""

    def __init__(self, db: Database) -> None:
        self.engine = create_async_engine(db.owner_url)

    async def row(self, slug: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT j.id, j.status, j.done, j.total, j.claimed_by FROM jobs j "
                        "JOIN tenants t ON t.id = j.tenant_id "
                        "WHERE t.slug = :s AND j.kind = 'import'"
                    ),
                    {"s": slug},
                )
            ).first()
        return None if row is None else dict(row._mapping)

    async def wait(self, slug: str, what: str, until: Any, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.row(slug)
            if job is not None and until(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}: {job}")
            await asyncio.sleep(0.01)


@pytest.fixture
async def jobs(db: Database) -> AsyncIterator[Jobs]:
    found = Jobs(db)
    yield found
    await found.engine.dispose()


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


async def _snapshot(state: AppState, db: Database, jobs: Jobs, slug: str) -> dict[str, Any]:
    """What the import left in a chain, in terms that do not depend on ids: each patient's
    opened fields, plain fields, branch code and tags; the report; the import access-log
    entries' patients, counted (a batch done twice would name its patients twice)."""
    engine = make_engine(db.owner_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            await bind_to_chain(session, slug)
            async with session.begin():
                cipher = await load_cipher(session, state.key_provider)
                codes = dict((await session.execute(select(Branch.id, Branch.code))).all())
                tags: dict[uuid.UUID, list[str]] = {}
                stmt = select(PatientTag.patient_id, Tag.name).join(
                    Tag, Tag.id == PatientTag.tag_id
                )
                for pid, name in await session.execute(stmt):
                    tags.setdefault(pid, []).append(name)
                key: dict[uuid.UUID, tuple[Any, ...]] = {}
                for p in await session.scalars(select(Patient)):
                    key[p.id] = (
                        *(unseal(cipher, p, f) for f in TEXT),
                        p.gender,
                        p.birth_year,
                        p.source_channel,
                        codes[p.home_branch_id],
                        tuple(sorted(tags.get(p.id, []))),
                    )
                entries = await session.scalars(
                    select(AccessLogEntry.patient_ids).where(AccessLogEntry.action == "import")
                )
                logged = Counter(key[uuid.UUID(pid)] for e in entries for pid in json.loads(e))
                job = await jobs.row(slug)
                assert job is not None
                report = await ImportService(session, cipher).report(uuid.UUID(str(job["id"])))
                assert report is not None
    finally:
        await engine.dispose()
    return {
        "patients": sorted(key.values(), key=repr),
        "logged": sorted(logged.items(), key=repr),
        "report": report,
        "job": (job["status"], job["done"], job["total"], job["claimed_by"]),
    }


async def test_killed_at_a_random_batch_and_resumed_equals_one_run(
    api: httpx.AsyncClient,
    operator: Operator,
    chain_state: AppState,
    db: Database,
    jobs: Jobs,
    unique: str,
    tmp_path: Path,
):
    killed, single = f"imk-{unique}", f"ims-{unique}"
    for slug in (killed, single):
        await chain_for_import(api, operator, slug, existing=0)
    gen = generate(ROWS, unique, branches=("main", "hz1"), tags=("VIP",))
    SEEDED.update(gen.values)
    upload = tmp_path / "patients.csv"
    upload.write_bytes(gen.data)
    batch = 20
    after = random.Random(unique).randint(1, 30) * batch

    proc = _spawn(operator, ["--tenant", killed, str(upload)], tmp_path / "killed.log", batch)
    try:
        cut = await jobs.wait(killed, f"{after} rows committed", lambda j: j["done"] >= after)
    finally:
        _kill(proc)
    cut = await jobs.row(killed)
    assert cut is not None and cut["status"] == "running" and 0 < cut["done"] < ROWS, cut
    assert cut["done"] % batch == 0  # whole batches only: the one in flight rolled back

    resumed = await operator.run(
        "patients", "import", "--tenant", killed, "--resume", str(cut["id"])
    )
    one_run = await operator.run("patients", "import", "--tenant", single, str(upload))
    for out in (resumed, one_run):
        found = SUMMARY.search(out)
        assert found is not None, out
        assert tuple(int(g) for g in found.groups()[1:]) == (gen.created, 0, 0, gen.rejected)

    a = await _snapshot(chain_state, db, jobs, killed)
    b = await _snapshot(chain_state, db, jobs, single)
    assert a == b
    assert len(a["patients"]) == gen.created
    assert a["report"].rejections == gen.rejections
    assert all(n == 1 for _, n in a["logged"]) and len(a["logged"]) == gen.created
    assert a["job"] == ("done", ROWS, ROWS, None)
    logs = (tmp_path / "killed.log").read_text()
    assert not [v for v in gen.values if v in logs]


async def test_two_processes_on_one_job_take_turns_by_lease(
    api: httpx.AsyncClient,
    operator: Operator,
    chain_state: AppState,
    db: Database,
    jobs: Jobs,
    unique: str,
    tmp_path: Path,
):
    slug = f"iml-{unique}"
    await chain_for_import(api, operator, slug, existing=0)
    gen = generate(ROWS, unique, branches=("main", "hz1"), tags=("VIP",))
    SEEDED.update(gen.values)
    async with chain_state.sessions() as session:
        _, job, _ = await start_import(session, chain_state, slug, gen.data)
    job_id = str(job.id)

    # Both started on the job at once: one claims it, the other is told it is held.
    args = ["--tenant", slug, "--resume", job_id]
    procs = [_spawn(operator, args, tmp_path / f"p{n}.log", 20) for n in (1, 2)]
    try:
        working = await jobs.wait(
            slug, "a process at work", lambda j: j["claimed_by"] and j["done"] >= 20
        )
        holder = next(p for p in procs if f":{p.pid}:" in working["claimed_by"])
        waiter = next(p for p in procs if p is not holder)
        waiting = tmp_path / ("p1.log" if waiter is procs[0] else "p2.log")
        deadline = time.monotonic() + 60
        while "runs in another process: waiting" not in waiting.read_text():
            assert time.monotonic() < deadline, waiting.read_text()
            await asyncio.sleep(0.02)
        # the waiter does no batch while the holder lives: the claim stays the holder's
        again = await jobs.row(slug)
        assert again is not None and f":{holder.pid}:" in (again["claimed_by"] or "")
        _kill(holder)
        cut = await jobs.row(slug)
        assert cut is not None and cut["status"] == "running" and cut["done"] < ROWS, cut
        assert waiter.wait(timeout=120) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                _kill(p)
    out = waiting.read_text()
    found = SUMMARY.search(out)
    assert found is not None, out
    assert tuple(int(g) for g in found.groups()[1:]) == (gen.created, 0, 0, gen.rejected)
    snap = await _snapshot(chain_state, db, jobs, slug)
    assert len(snap["patients"]) == gen.created
    assert snap["report"].rejections == gen.rejections
    assert all(n == 1 for _, n in snap["logged"]) and len(snap["logged"]) == gen.created
    assert snap["job"] == ("done", ROWS, ROWS, None)
    assert not [v for v in gen.values if v in out]
