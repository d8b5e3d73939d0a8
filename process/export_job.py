"""The `export` job: finds the patients an export holds, in batches that resume from the
job's cursor (ids only; the file is made on download, see api/exports/routes.py)."""

from __future__ import annotations

import json
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from auth.guard import scope_from_json
from domain.exports.repository import ExportRepository, filter_from_json
from domain.patients.repository import PatientRepository
from domain.pool.models import Job, JobStatus

BATCH = 2000


async def run_export(
    session: AsyncSession,
    job_id: uuid.UUID,
    actor: str,
    batch: int = BATCH,
    stop_after_batches: int | None = None,
) -> Job | None:
    exports = ExportRepository(session)
    batches = 0
    while True:
        async with session.begin():
            job = await exports.job(job_id, lock=True)
            export = await exports.get(job_id)
            if job is None or export is None or job.status != JobStatus.RUNNING:
                return job
            plan = json.loads(export.filter)
            ids = await PatientRepository(session).ids_after(
                scope_from_json(plan["scope"]), filter_from_json(plan["filter"]), job.cursor, batch
            )
            exports.add_ids(export, job, ids)
        batches += 1
        if job.status == JobStatus.DONE or (
            stop_after_batches is not None and batches >= stop_after_batches
        ):
            return job
