"""`patientpool patients import`: the same service and job as importPatients, run in the
command's own process (a job it leaves unfinished is resumed by `--resume`, or by a served
process at start)."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from domain.errors import DomainError
from domain.imports.repository import ImportRepository
from domain.imports.service import ImportOptions, ImportService, OnMatch, Report
from domain.pool.leases import Claim
from domain.pool.models import Job
from domain.pool.repository import PoolRepository
from process.import_job import run_import_job
from process.jobs import configure_job_sessions, run_leased
from process.operator import owner_sessions, provider, slug_session
from process.settings import Settings
from tenancy.keystore import load_cipher
from tenancy.session import tenant_session

ACTOR = "system:cli:patients-import"


@dataclass(frozen=True)
class ImportOutcome:
    job_id: uuid.UUID
    status: str
    report: Report


def parse_mapping_text(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        given = json.loads(text)
    except ValueError:
        raise ValueError("--mapping must be a JSON object of header to field") from None
    if not isinstance(given, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in given.items()
    ):
        raise ValueError("--mapping must be a JSON object of header to field")
    return given


async def import_command(
    cfg: Settings,
    slug: str,
    file: Path | None,
    options: ImportOptions,
    progress: Callable[[str], None],
    resume: uuid.UUID | None = None,
    rejected_out: Path | None = None,
) -> ImportOutcome:
    """Start (or name) the job, then work it under a lease, as a served process would: a job
    another live process works is waited for, and taken over if that process dies."""
    async with owner_sessions(cfg) as sessions:
        configure_job_sessions(sessions, cfg)  # the job is handed the cipher
        async with slug_session(sessions, slug) as session, session.begin():
            cipher = await load_cipher(session, provider(cfg))
            if resume is None:
                assert file is not None
                try:
                    job = await ImportService(session, cipher).start(
                        file.read_bytes(), options, ACTOR
                    )
                except DomainError as exc:
                    raise ValueError(exc.message) from None
            else:
                found = await PoolRepository(session).job(resume)
                if found is None or found.kind != "import":
                    raise ValueError(f"no import job {resume}")
                job = found
            job_id = job.id
        progress(f"import job {job_id}")

        def report_progress(at: Job) -> None:
            progress(f"{at.done}/{at.total} rows")

        claim = await run_leased(
            sessions,
            job,
            ACTOR,
            functools.partial(run_import_job, cipher=cipher, progress=report_progress),
            on_wait=lambda: progress(f"job {job_id} runs in another process: waiting"),
        )
        async with tenant_session(sessions, job.tenant_id) as session, session.begin():
            status = await ImportRepository(session).job_status(job_id)
            if claim is Claim.MISSING or status is None:
                raise ValueError(f"no import job {job_id}")
            service = ImportService(session, cipher)
            report = await service.report(job_id)
            if report is None:
                raise ValueError(f"no import job {job_id}")
            if rejected_out is not None:
                # personal data: written only where the operator asked, as the file to fix
                rejected_out.write_text(await service.rejected_file(job_id) or "", "utf-8-sig")
        return ImportOutcome(job_id, status, report)


__all__ = ["OnMatch", "import_command", "parse_mapping_text"]
