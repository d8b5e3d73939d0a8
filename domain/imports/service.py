"""Bulk import of patients: one service for the CLI and the API.

`ImportService.start` checks the file's header, seals the uploaded bytes into chunks under the
tenant's key and creates the job; `run_import` works the rows in batches, one transaction each
(rows checked, matched by blind index, patients created in one bulk insert, matches updated as
the option says, rejected rows sealed for the file offered back, the cursor and counts moved),
so a run stopped anywhere resumes after the last committed batch with the same result.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import BadInput
from domain.imports.batch import (
    Batch,
    BatchLogger,
    HealthGate,
    OnMatch,
    chunk_row_id,
    rejection_row_id,
)
from domain.imports.columns import ImportField, columns, parse_mapping
from domain.imports.models import ImportChunk, ImportFile, ImportRejection
from domain.imports.reader import FileFormat, Row, UnreadableFile, detect_format, read_rows
from domain.imports.repository import ImportRepository
from domain.imports.rows import Checked, Lookups, Reason, check_row
from domain.pool.leases import LEASE, holds
from domain.pool.models import Job, JobStatus
from tenancy.keyring import FieldCipher
from tenancy.session import let_other_writers_in

KIND = "import"
CHUNK_BYTES = 1 << 20
BATCH_ROWS = 2000
REASON_HEADER = "reason"


@dataclass(frozen=True)
class ImportOptions:
    mapping: Mapping[str, str] = field(default_factory=dict)
    on_match: OnMatch = OnMatch.FILL_EMPTY
    branch: str = "main"  # the branch code of rows without one
    format: FileFormat | None = None


@dataclass(frozen=True)
class Report:
    created: int
    updated: int
    unchanged: int
    rejected: int
    rejections: list[tuple[int, str]]


class ImportService:
    def __init__(self, session: AsyncSession, cipher: FieldCipher) -> None:
        self.session = session
        self.cipher = cipher
        self.repo = ImportRepository(session)

    async def start(self, data: bytes, options: ImportOptions, actor: str) -> Job:
        """A new import job over `data` (checked for a readable header with a name column)."""
        mapping = parse_mapping(options.mapping)
        fmt = options.format or detect_format(data)
        try:
            header, rows = read_rows(data, fmt)
            columns(header, mapping)
            total = sum(1 for _ in rows)
        except UnreadableFile as exc:
            raise BadInput(str(exc), field="file") from None
        job = Job(kind=KIND, total=total)
        self.session.add(job)
        await self.session.flush()
        blobs = [
            self.cipher.encrypt(
                base64.b64encode(data[at : at + CHUNK_BYTES]).decode(),
                table=ImportChunk.__tablename__,
                column="data_ct",
                row_id=chunk_row_id(job.id, seq),
            )
            for seq, at in enumerate(range(0, len(data), CHUNK_BYTES))
        ]
        self.session.add(
            ImportFile(
                job_id=job.id,
                options={
                    "mapping": mapping,
                    "on_match": str(options.on_match),
                    "branch": options.branch,
                    "format": str(fmt),
                    "actor": actor,
                    # header names only (no values): the rejected-rows file repeats them
                    "header": list(header),
                },
                row_cursor=1,
                created=0,
                updated=0,
                unchanged=0,
                rejected=0,
                chunks=len(blobs),
            )
        )
        await self.session.flush()
        await self.repo.add_chunks(job.id, blobs)
        return job

    async def report(self, job_id: uuid.UUID) -> Report | None:
        imp = await self.repo.file(job_id)
        if imp is None:
            return None
        rejections = [(r.row_number, r.reason) for r in await self.repo.rejections(job_id)]
        return Report(imp.created, imp.updated, imp.unchanged, imp.rejected, rejections)

    async def rejected_file(self, job_id: uuid.UUID) -> str | None:
        """The rejected rows as CSV (the file's own header plus a reason column), opened from
        their sealed cells: personal data, so made on request and never stored in the clear."""
        imp = await self.repo.file(job_id)
        if imp is None:
            return None
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*imp.options.get("header", []), REASON_HEADER])
        for r in await self.repo.rejections(job_id):
            cells = json.loads(
                self.cipher.decrypt(
                    r.row_ct,
                    table=ImportRejection.__tablename__,
                    column="row_ct",
                    row_id=rejection_row_id(job_id, r.row_number),
                )
            )
            writer.writerow([*cells, r.reason])
        return out.getvalue()


async def run_import(
    session: AsyncSession,
    cipher: FieldCipher,
    job_id: uuid.UUID,
    log_batch: BatchLogger,
    batch: int = BATCH_ROWS,
    stop_after_batches: int | None = None,
    progress: Callable[[Job], None] = lambda _j: None,
    holder: str | None = None,
    lease: timedelta = LEASE,
    health_gate: HealthGate | None = None,
) -> Job | None:
    """Work an import job from its cursor to the end. Rows before the cursor are read again
    (not written): the duplicate-in-file check needs the identifiers of every earlier row.
    `holder`: the lease this run works under (domain/pool/leases.py); a batch that finds the
    job no longer held by it stops the run (None). `health_gate`: see `batch.HealthGate`."""
    repo = ImportRepository(session)
    async with session.begin():
        locked = await repo.lock_job(job_id)
        if locked is None or locked[0].status != JobStatus.RUNNING:
            return None if locked is None else locked[0]
        if not holds(locked[0], holder):
            return None
        job, imp = locked
        blobs = await repo.chunks(job_id)
        data = b"".join(
            base64.b64decode(
                cipher.decrypt(
                    blob,
                    table=ImportChunk.__tablename__,
                    column="data_ct",
                    row_id=chunk_row_id(job_id, seq),
                )
            )
            for seq, blob in enumerate(blobs)
        )
        options = dict(imp.options)
        lookups = Lookups(
            branches=await repo.branches(),
            tags=await repo.manual_tags(),
            default_branch=str(options.get("branch") or ""),
        )
        health_tags = await repo.health_tags()
        cursor = imp.row_cursor
    header, rows = read_rows(data, FileFormat(str(options["format"])))
    cols = columns(header, options.get("mapping") or {})  # type: ignore[arg-type]
    batcher = Batch(
        session,
        cipher,
        job_id,
        OnMatch(str(options["on_match"])),
        log_batch,
        holder,
        lease,
        health_gate=health_gate,
        health_tags=health_tags,
    )
    seen: set[tuple[str, bytes]] = set()
    pending: list[tuple[Row, Checked | Reason]] = []
    batches = 0
    for row in rows:
        checked = check_row(row, cols, lookups, cipher)
        if isinstance(checked, Checked):
            keys = set(checked.identity.items())
            if keys & seen:
                checked = Reason.DUPLICATE_IN_FILE
            seen |= keys
        if row.number <= cursor:
            continue
        pending.append((row, checked))
        if len(pending) >= batch:
            job = await batcher.commit(pending)
            pending = []
            if job is None:
                return None
            progress(job)
            await let_other_writers_in(session)
            batches += 1
            if stop_after_batches is not None and batches >= stop_after_batches:
                return job
    if pending:
        job = await batcher.commit(pending)
        if job is None:
            return None
        progress(job)
    async with session.begin():
        locked = await repo.lock_job(job_id)
        if locked is None:
            return None
        job = locked[0]
        if not holds(job, holder):
            return None
        if job.status == JobStatus.RUNNING:
            job.status = JobStatus.DONE
            job.finished_at = datetime.now(UTC)
        # The uploaded file is gone once the job ends; the report and sealed rejections stay.
        await repo.drop_chunks(job_id)
    progress(job)
    return job


__all__ = ["ImportField", "ImportOptions", "ImportService", "OnMatch", "Report", "run_import"]
