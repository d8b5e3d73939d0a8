"""`patientpool patients import`: the same service and job as importPatients, run in the
command's own process (a job it leaves unfinished is resumed by `--resume`, or by a served
process at start)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from api.imports.runner import run_import_job
from api.operator import owner_tenant_session, provider
from api.settings import Settings
from domain.errors import DomainError
from domain.imports.service import ImportOptions, ImportService, OnMatch, Report
from domain.pool.models import Job
from tenancy.keystore import load_cipher

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
    async with owner_tenant_session(cfg, slug) as session:
        async with session.begin():
            cipher = await load_cipher(session, provider(cfg))
            if resume is None:
                assert file is not None
                try:
                    job = await ImportService(session, cipher).start(
                        file.read_bytes(), options, ACTOR
                    )
                except DomainError as exc:
                    raise ValueError(exc.message) from None
                job_id = job.id
            else:
                job_id = resume
        progress(f"import job {job_id}")

        def report_progress(job: Job) -> None:
            progress(f"{job.done}/{job.total} rows")

        done = await run_import_job(session, job_id, ACTOR, cipher=cipher, progress=report_progress)
        if done is None:
            raise ValueError(f"no import job {job_id}")
        async with session.begin():
            service = ImportService(session, cipher)
            report = await service.report(job_id)
            if rejected_out is not None:
                # personal data: written only where the operator asked, as the file to fix
                rejected_out.write_text(await service.rejected_file(job_id) or "", "utf-8-sig")
        assert report is not None
        return ImportOutcome(job_id, done.status, report)


__all__ = ["OnMatch", "import_command", "parse_mapping_text"]
