"""Bulk import of patients (issue 24) on a chain made as a customer makes one: `tenant create`,
a branch, a tag and existing patients through the API, then `patientpool patients import`.

A generated 5,000-row file with every kind of bad row: the counts and the rejected rows are
exactly what the generator says; the same file again changes nothing; a job stopped after a
random number of batches and resumed ends exactly as one run does; no plaintext value is in
any table, the SQLite file or the data dir; the access log names every imported patient and
`audit verify` holds."""

from __future__ import annotations

import csv
import io
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from api.context import AppState
from bench.import_rows import BAD_KINDS, HEADER, generate
from domain.imports.service import ImportService, run_import
from domain.patients.models import Patient
from domain.pool.leases import Claim, JobLeases
from domain.tenants.models import Tenant
from process.import_job import run_import_job
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant
from tests.chain.conftest import Operator
from tests.chain.imports import (
    chain_for_import,
    files_under,
    leaks,
    logged_import_ids,
    sqlite_files,
    start_import,
    table_bytes,
)
from tests.conftest import Database
from tests.files import read_elsewhere
from tests.support import SEEDED

ROWS = 5000
SUMMARY = re.compile(
    r"job (\S+) done: created (\d+), updated (\d+), unchanged (\d+), rejected (\d+)"
)


def _summary(output: str) -> tuple[int, int, int, int]:
    found = SUMMARY.search(output)
    assert found is not None, output
    return tuple(int(g) for g in found.groups()[1:])  # type: ignore[return-value]


def _rejections(output: str) -> list[tuple[int, str]]:
    return [(int(n), r) for n, r in re.findall(r"^row (\d+): (\w+)$", output, re.M)]


async def test_a_generated_file_imports_exactly_and_twice_changes_nothing(
    api: httpx.AsyncClient,
    operator: Operator,
    chain_state: AppState,
    db: Database,
    unique: str,
    tmp_path: Path,
):
    slug = f"imp-{unique}"
    chain = await chain_for_import(api, operator, slug)
    gen = generate(
        ROWS,
        slug,
        branches=("main", "hz1"),
        tags=("VIP",),
        existing_phones=tuple(chain.existing),
    )
    SEEDED.update(gen.values)
    assert {r for _, r in gen.rejections} == set(BAD_KINDS)
    upload = tmp_path / "patients.csv"
    upload.write_bytes(gen.data)
    rejected_out = tmp_path / "rejected.csv"

    first = await operator.run(
        "patients", "import", "--tenant", slug, str(upload), "--rejected-out", str(rejected_out)
    )
    assert _summary(first) == (gen.created, gen.updated, 0, gen.rejected)
    assert _rejections(first) == gen.rejections

    # The rejected rows come back as a file: the same header, every rejected row, a reason.
    back = list(csv.reader(io.StringIO(rejected_out.read_text("utf-8-sig"))))
    assert back[0] == [*HEADER, "reason"]
    assert [row[-1] for row in back[1:]] == [r for _, r in gen.rejections]

    # Twice: nothing changes (every good row now matches the patient it made).
    before = await _versions(chain_state, slug)
    second = await operator.run("patients", "import", "--tenant", slug, str(upload))
    assert _summary(second) == (0, 0, gen.created + gen.updated, gen.rejected)
    assert _rejections(second) == gen.rejections
    assert await _versions(chain_state, slug) == before
    assert len(before) == gen.created + len(chain.existing)

    # No plaintext anywhere: tables, the database file, the data dir (no upload left there).
    blobs = await table_bytes(db)
    blobs.update(files_under(chain_state.settings.data_dir))
    blobs.update({str(p): b for p, b in read_elsewhere(sqlite_files(db)).items()})
    assert leaks(blobs, slug) == []

    # Every imported patient is in the access log, and the chain is whole.
    logged, patients = await logged_import_ids(db, slug)
    assert patients <= logged
    verify = await operator.run("audit", "verify", "--tenant", slug)
    assert "ok" in verify.lower() or "whole" in verify.lower(), verify


async def test_a_job_stopped_anywhere_resumes_to_the_same_result(
    api: httpx.AsyncClient,
    operator: Operator,
    chain_state: AppState,
    db: Database,
    unique: str,
):
    slug = f"imr-{unique}"
    chain = await chain_for_import(api, operator, slug)
    gen = generate(
        ROWS, slug, branches=("main", "hz1"), tags=("VIP",), existing_phones=tuple(chain.existing)
    )
    SEEDED.update(gen.values)
    batch = 500
    stop_after = random.Random(unique).randint(1, ROWS // batch - 1)
    async with chain_state.sessions() as session:
        tenant_id, job, _ = await start_import(session, chain_state, slug, gen.data)
        job_id = job.id
        cut = await run_import_job(
            session, job_id, "system:t", batch=batch, stop_after_batches=stop_after
        )
        assert cut is not None and cut.status == "running" and cut.done == stop_after * batch
    # A new process (a new session, keys from its app state) picks the job up at its cursor.
    async with chain_state.sessions() as session:
        await bind_tenant(session, tenant_id)
        done = await run_import_job(session, job_id, "system:resume", batch=batch)
        assert done is not None and done.status == "done" and done.done == ROWS
        async with session.begin():
            service = ImportService(session, await load_cipher(session, chain_state.key_provider))
            report = await service.report(job_id)
            assert report is not None
            assert (report.created, report.updated, report.unchanged, report.rejected) == (
                gen.created,
                gen.updated,
                0,
                gen.rejected,
            )
            assert report.rejections == gen.rejections
            count = await session.scalar(select(func.count()).select_from(Patient))
            assert count == gen.created + len(chain.existing)
            # the upload is gone with the job
            from domain.imports.repository import ImportRepository

            assert await ImportRepository(session).chunks(job_id) == []
    logged, patients = await logged_import_ids(db, slug)
    assert patients <= logged


async def _versions(state: AppState, slug: str) -> dict[str, int]:
    async with state.sessions() as session:
        async with session.begin():
            tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == slug))
        assert tenant_id is not None
        await bind_tenant(session, tenant_id)
        async with session.begin():
            rows = await session.execute(select(Patient.id, Patient.version, Patient.updated_at))
            return {str(i): (v, str(u)) for i, v, u in rows}  # type: ignore[misc]


async def test_each_batch_renews_the_lease_the_deployment_configured(
    api: httpx.AsyncClient, operator: Operator, chain_state: AppState, unique: str
):
    """A batch renews its process's lease for the configured time
    (PATIENTPOOL_JOB_LEASE_SECONDS), not the default's 30 s."""
    slug = f"iml-{unique}"
    await chain_for_import(api, operator, slug, existing=0)
    gen = generate(600, slug, branches=("main",), tags=())
    SEEDED.update(gen.values)
    lease = timedelta(minutes=10)
    async with chain_state.sessions() as session:
        _, job, cipher = await start_import(session, chain_state, slug, gen.data)
        async with session.begin():
            assert await JobLeases(session, lease).claim(job.id, "holder-1") is Claim.CLAIMED

        async def log_batch(_ids: list[uuid.UUID]) -> None:
            return None

        began = datetime.now(UTC)
        cut = await run_import(
            session, cipher, job.id, log_batch, batch=200, stop_after_batches=1,
            holder="holder-1", lease=lease,
        )  # fmt: skip
        assert cut is not None and cut.done == 200
        assert cut.lease_until is not None and cut.lease_until >= began + lease
