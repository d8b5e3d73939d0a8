"""All SQL over patient exports, and the plan an export job runs (ids and codes only)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.exports.models import ExportFormat, PatientExport
from domain.patients.repository import PatientFilter
from domain.pool.models import Job, JobStatus

KIND = "export"


def filter_to_json(flt: PatientFilter) -> dict[str, Any]:
    """A patient filter as plain data (the phone as its blind index, never the number)."""
    return {
        "phone_bidx": None if flt.phone_bidx is None else flt.phone_bidx.hex(),
        "branch_ids": sorted(str(b) for b in flt.branch_ids),
        "stages": sorted(flt.stages),
        "tiers": sorted(flt.tiers),
        "channels": sorted(flt.channels),
    }


def filter_from_json(data: dict[str, Any]) -> PatientFilter:
    digest = data.get("phone_bidx")
    return PatientFilter(
        phone_bidx=None if digest is None else bytes.fromhex(digest),
        branch_ids=frozenset(uuid.UUID(b) for b in data.get("branch_ids", [])),
        stages=frozenset(data.get("stages", [])),
        tiers=frozenset(data.get("tiers", [])),
        channels=frozenset(data.get("channels", [])),
    )


class ExportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def start(
        self,
        requested_by: str,
        fmt: ExportFormat,
        plan: dict[str, Any],
        total: int,
        ttl: timedelta,
    ) -> tuple[Job, PatientExport]:
        """A running export job and its export row (one id for both)."""
        job = Job(id=uuid.uuid4(), kind=KIND, total=total)
        export = PatientExport(
            id=job.id,
            requested_by=requested_by,
            format=str(fmt),
            filter=json.dumps(plan, sort_keys=True),
            expires_at=datetime.now(UTC) + ttl,
            patient_ids="",
            rows=0,
        )
        self.session.add_all([job, export])
        await self.session.flush()
        return job, export

    async def get(self, export_id: uuid.UUID) -> PatientExport | None:
        return await self.session.scalar(select(PatientExport).where(PatientExport.id == export_id))

    async def job(self, export_id: uuid.UUID, lock: bool = False) -> Job | None:
        stmt = select(Job).where(Job.id == export_id, Job.kind == KIND)
        if lock:  # serialises batches when two processes resume the same job
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    @staticmethod
    def add_ids(export: PatientExport, job: Job, ids: list[uuid.UUID]) -> None:
        """One batch found: kept on the row, the job's cursor moved past it."""
        if ids:
            joined = " ".join(str(i) for i in ids)
            export.patient_ids = f"{export.patient_ids} {joined}".strip()
            job.cursor = ids[-1]
            job.done += len(ids)
            return
        export.rows = job.done
        job.status = JobStatus.DONE
        job.finished_at = datetime.now(UTC)

    @staticmethod
    def ids_of(export: PatientExport) -> list[uuid.UUID]:
        return [uuid.UUID(i) for i in export.patient_ids.split()]
