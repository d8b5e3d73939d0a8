"""Retention of the access log: old entries move to archived segments that still verify.

A tenant with `audit_retention_days` set has its entries older than that moved, oldest first,
into segment files (gzip JSON lines, one entry per line with its hashes) under the archive
directory. Each segment is one transaction: write the file, record the segment (boundaries,
the hash it links to, its last hash, the file's SHA-256), delete the entries it holds. The
database refuses to delete an entry no recorded segment covers, so nothing leaves the chain
unarchived; an interrupted run leaves whole segments behind and the next run goes on.

`verify_log` walks the segments (each file re-hashed entry by entry) and then the live
entries, which must link to the last segment's last hash: the chain is proven whole from the
first entry ever written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.access_log import (
    GENESIS,
    HASHED_TEXT,
    AccessLogEntry,
    AccessLogSegment,
    VerifyResult,
    canonical_time,
    check_link,
    hashed_fields,
    verify_chain,
)
from domain.tenants.models import Tenant
from tenancy.orm import utcnow
from tenancy.session import current_tenant

# PIPL and the Cybersecurity Law expect logs of personal-information processing to be kept
# for at least six months; a chain may keep them longer, never shorter.
MIN_RETENTION_DAYS = 180
MAX_RETENTION_DAYS = 36_500
SEGMENT_SIZE = 50_000


class ArchiveError(Exception):
    """The chain cannot be archived as it stands (it is broken, or a file cannot be written)."""


@dataclass(frozen=True)
class ArchiveResult:
    segments: int
    entries: int


def segment_path(archive_dir: Path, tenant_id: uuid.UUID, first_seq: int, last_seq: int) -> Path:
    return archive_dir / str(tenant_id) / f"{first_seq:012d}-{last_seq:012d}.jsonl.gz"


def _line(entry: AccessLogEntry) -> dict[str, object]:
    return {
        "tenant_id": str(entry.tenant_id),
        "seq": entry.seq,
        "id": str(entry.id),
        "occurred_at": canonical_time(entry.occurred_at),
        **{k: getattr(entry, k) for k in HASHED_TEXT},
        "prev_hash": entry.prev_hash.hex(),
        "entry_hash": entry.entry_hash.hex(),
    }


def _write_segment(path: Path, entries: list[AccessLogEntry]) -> bytes:
    """Write the file atomically (temporary name, fsync, rename) and return its SHA-256."""
    body = b"".join(
        json.dumps(_line(e), sort_keys=True, ensure_ascii=False).encode() + b"\n" for e in entries
    )
    data = gzip.compress(body, mtime=0)  # no timestamp: a rerun writes the same bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).digest()


def _read_segment(path: Path) -> Iterator[dict[str, object]]:
    for raw in gzip.decompress(path.read_bytes()).splitlines():
        line = json.loads(raw)
        line["occurred_at"] = datetime.fromisoformat(line["occurred_at"])
        yield line


async def archived_segments(session: AsyncSession) -> Sequence[AccessLogSegment]:
    """The bound tenant's archived segments, oldest first."""
    stmt = select(AccessLogSegment).order_by(AccessLogSegment.number)
    return (await session.scalars(stmt)).all()


async def archive_log(
    session: AsyncSession,
    archive_dir: Path,
    *,
    now: datetime | None = None,
    segment_size: int = SEGMENT_SIZE,
    progress: Callable[[str], None] = lambda _m: None,
) -> ArchiveResult:
    """Archive the bound tenant's entries older than its retention (one transaction per
    segment; the session must not be in a transaction)."""
    tenant_id = current_tenant(session)
    async with session.begin():
        retention = await session.scalar(
            select(Tenant.audit_retention_days).where(Tenant.id == tenant_id)
        )
    if retention is None:
        return ArchiveResult(0, 0)
    cutoff = (now or utcnow()) - timedelta(days=retention)
    segments = moved = 0
    while True:
        async with session.begin():
            last = await session.scalar(
                select(AccessLogSegment).order_by(AccessLogSegment.number.desc()).limit(1)
            )
            number, seq, prev = (
                (last.number + 1, last.last_seq + 1, last.last_hash) if last else (1, 1, GENESIS)
            )
            candidates = (
                await session.scalars(
                    select(AccessLogEntry)
                    .where(AccessLogEntry.seq >= seq)
                    .order_by(AccessLogEntry.seq)
                    .limit(segment_size)
                )
            ).all()
            # A segment is a prefix of the live chain: it stops at the first entry to keep.
            entries: list[AccessLogEntry] = []
            for e in candidates:
                if e.occurred_at >= cutoff:
                    break
                reason = check_link(hashed_fields(e), seq, prev, e.prev_hash, e.entry_hash)
                if reason:
                    raise ArchiveError(f"chain broken at entry {seq} ({reason}); nothing archived")
                entries.append(e)
                seq, prev = seq + 1, e.entry_hash
            if not entries:
                break
            first, final = entries[0], entries[-1]
            path = segment_path(archive_dir, tenant_id, first.seq, final.seq)
            try:
                digest = _write_segment(path, entries)
            except OSError as exc:
                raise ArchiveError(f"cannot write {path}: {exc.strerror}") from None
            session.add(
                AccessLogSegment(
                    number=number,
                    first_seq=first.seq,
                    last_seq=final.seq,
                    first_prev_hash=first.prev_hash,
                    last_hash=final.entry_hash,
                    oldest_at=min(e.occurred_at for e in entries),
                    newest_at=max(e.occurred_at for e in entries),
                    file_name=str(path.relative_to(archive_dir)),
                    file_sha256=digest,
                )
            )
            await session.flush()
            await session.execute(
                delete(AccessLogEntry)
                .where(AccessLogEntry.seq.between(first.seq, final.seq))
                .execution_options(synchronize_session=False)
            )
        segments, moved = segments + 1, moved + len(entries)
        progress(f"segment {number}: entries {first.seq}–{final.seq} archived to {path}")
    return ArchiveResult(segments, moved)


def _verify_segment(
    segment: AccessLogSegment, archive_dir: Path, seq: int, prev: bytes
) -> tuple[str, int, bytes]:
    """Check one segment file against its record; returns (reason, next seq, last hash)."""
    path = archive_dir / segment.file_name
    if not path.is_file():
        return f"archived segment {segment.number} missing ({path})", seq, prev
    if hashlib.sha256(path.read_bytes()).digest() != segment.file_sha256:
        return f"archived segment {segment.number} altered (file digest differs)", seq, prev
    if segment.first_seq != seq or segment.first_prev_hash != prev:
        return f"archived segment {segment.number} does not link to what precedes it", seq, prev
    for line in _read_segment(path):
        stored_prev = bytes.fromhex(str(line["prev_hash"]))
        stored = bytes.fromhex(str(line["entry_hash"]))
        reason = check_link(line, seq, prev, stored_prev, stored)
        if reason:
            return f"{reason} (archived segment {segment.number})", seq, prev
        seq, prev = seq + 1, stored
    if seq - 1 != segment.last_seq or prev != segment.last_hash:
        return f"archived segment {segment.number} ends short of its record", seq, prev
    return "", seq, prev


@dataclass(frozen=True)
class LogVerifyResult:
    result: VerifyResult
    archived_entries: int
    segments: int


async def verify_log(session: AsyncSession, archive_dir: Path) -> LogVerifyResult:
    """The bound tenant's whole chain: archived segments first, then the live entries."""
    seq, prev = 1, GENESIS
    segments = (
        await session.scalars(select(AccessLogSegment).order_by(AccessLogSegment.number))
    ).all()
    for segment in segments:
        reason, next_seq, prev = _verify_segment(segment, archive_dir, seq, prev)
        if reason:
            return LogVerifyResult(VerifyResult(False, seq - 1, next_seq, reason), 0, len(segments))
        seq = next_seq
    live = await verify_chain(session, start=(seq, prev))
    total = VerifyResult(live.ok, live.entries + seq - 1, live.broken_seq, live.reason)
    return LogVerifyResult(total, seq - 1, len(segments))
