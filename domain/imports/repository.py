"""All SQL of bulk imports. The session adds the tenant to every statement and stamps rows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.imports.models import ImportChunk, ImportFile, ImportRejection
from domain.patients.models import Patient
from domain.pool.models import Job, PatientTag, Tag, TagGroup
from domain.tenants.models import Branch
from tenancy.session import stamp_rows

# Both for this transaction only. synchronous_commit: see `relax_commit`. plan_cache_mode:
# asyncpg prepares every statement, and after five runs PostgreSQL may keep a generic plan
# that does not see the batch's values; for the batch's look-ups by blind index and id that
# plan read far more than the index range (100,000 rows: 350 s with it, 54 s without).
_RELAX_COMMIT = text(
    "SELECT set_config('synchronous_commit', 'off', true), "
    "set_config('plan_cache_mode', 'force_custom_plan', true)"
)


async def _insert_rows(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Rows stamped with the bound tenant, one statement for the batch. An executemany of the
    table's INSERT, which asyncpg pipelines as one prepared statement: measured against a
    multi-row `VALUES` (compiled anew for each batch: 11,000 parameters) it cost a fifth of
    the client's CPU for the same server time."""
    if rows:
        await session.execute(insert(table), stamp_rows(session, rows))


class ImportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_job(self, job_id: uuid.UUID) -> tuple[Job, ImportFile] | None:
        """The job and its import, locked and read afresh (the session keeps its objects
        between transactions; another process may have moved the cursor or taken the lease)."""
        fresh = {"populate_existing": True}
        job = await self.session.scalar(
            select(Job).where(Job.id == job_id).with_for_update().execution_options(**fresh)
        )
        if job is None:
            return None
        found = await self.session.scalar(
            select(ImportFile)
            .where(ImportFile.job_id == job_id)
            .with_for_update()
            .execution_options(**fresh)
        )
        return None if found is None else (job, found)

    async def job_status(self, job_id: uuid.UUID) -> str | None:
        return await self.session.scalar(select(Job.status).where(Job.id == job_id))

    async def file(self, job_id: uuid.UUID) -> ImportFile | None:
        return await self.session.scalar(select(ImportFile).where(ImportFile.job_id == job_id))

    async def files(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ImportFile]:
        stmt = select(ImportFile).where(ImportFile.job_id.in_(sorted(set(job_ids))))
        return {f.job_id: f for f in await self.session.scalars(stmt)}

    async def add_chunks(self, job_id: uuid.UUID, blobs: Sequence[bytes]) -> None:
        rows = [{"job_id": job_id, "seq": n, "data_ct": b} for n, b in enumerate(blobs)]
        if rows:
            await self.session.execute(insert(ImportChunk), stamp_rows(self.session, rows))

    async def chunks(self, job_id: uuid.UUID) -> list[bytes]:
        stmt = (
            select(ImportChunk.data_ct)
            .where(ImportChunk.job_id == job_id)
            .order_by(ImportChunk.seq)
        )
        return list(await self.session.scalars(stmt))

    async def drop_chunks(self, job_id: uuid.UUID) -> None:
        await self.session.execute(delete(ImportChunk).where(ImportChunk.job_id == job_id))

    async def add_rejections(self, rows: list[dict[str, Any]]) -> None:
        await _insert_rows(self.session, ImportRejection.__table__, rows)

    async def rejections(self, job_id: uuid.UUID) -> list[ImportRejection]:
        stmt = (
            select(ImportRejection)
            .where(ImportRejection.job_id == job_id)
            .order_by(ImportRejection.row_number)
        )
        return list(await self.session.scalars(stmt))

    async def branches(self) -> dict[str, tuple[uuid.UUID, bool]]:
        stmt = select(Branch.code, Branch.id, Branch.closed_at)
        rows = await self.session.execute(stmt)
        return {code: (bid, closed is None) for code, bid, closed in rows}

    async def health_tags(self) -> frozenset[uuid.UUID]:
        """The tags of health groups (a row naming one carries health data)."""
        stmt = select(Tag.id).join(TagGroup, TagGroup.id == Tag.group_id)
        return frozenset(await self.session.scalars(stmt.where(TagGroup.is_health.is_(True))))

    async def manual_tags(self) -> dict[str, uuid.UUID | None]:
        """Manual tags by name; None for a name that several groups use (ambiguous)."""
        out: dict[str, uuid.UUID | None] = {}
        # auto_rule is JSON: a manual tag's is JSON null on some engines, SQL NULL on others
        stmt = select(Tag.name, Tag.id, Tag.auto_rule)
        for name, tag_id, rule in await self.session.execute(stmt):
            if rule is None:
                out[name] = None if name in out else tag_id
        return out

    async def patients(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Patient]:
        if not ids:
            return {}
        stmt = select(Patient).where(Patient.id.in_(sorted(set(ids))))
        return {p.id: p for p in await self.session.scalars(stmt)}

    async def relax_commit(self) -> None:
        """PostgreSQL: this transaction's commit does not wait for its WAL to reach disk, and
        its statements are planned for their values (see `_RELAX_COMMIT`). A
        crash may lose the last batches committed, never part of one: a batch's rows, its
        cursor and its access-log entry commit together, and the resume redoes what is lost."""
        if self.session.get_bind().dialect.name == "postgresql":
            await self.session.execute(_RELAX_COMMIT)

    async def insert_patients(self, rows: list[dict[str, Any]]) -> None:
        """Multi-row INSERTs of the table, not the mapper (the ORM's bulk insert sends about a
        statement per patient here: 800 for 960 rows, 8 s on PostgreSQL)."""
        await _insert_rows(self.session, Patient.__table__, rows)

    async def tags_of(self, ids: Sequence[uuid.UUID]) -> set[tuple[uuid.UUID, uuid.UUID]]:
        if not ids:
            return set()
        stmt = select(PatientTag.patient_id, PatientTag.tag_id).where(
            PatientTag.patient_id.in_(sorted(set(ids)))
        )
        return {(p, t) for p, t in await self.session.execute(stmt)}

    async def add_tags(self, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
        rows = [{"patient_id": p, "tag_id": t, "source": "manual"} for p, t in sorted(pairs)]
        await _insert_rows(self.session, PatientTag.__table__, rows)

    async def advance(self, imp: ImportFile, **values: int) -> None:
        await self.session.execute(
            update(ImportFile)
            .where(ImportFile.job_id == imp.job_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
