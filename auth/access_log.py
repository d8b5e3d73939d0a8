"""The access log: append-only, hash-chained per tenant, holding references and never data.

Each entry's hash covers every field of the entry and the previous entry's hash, so changing,
deleting or reordering any entry breaks the chain from that point. Appends lock the tenant's
chain head row (`UPDATE … RETURNING`), so concurrent requests extend one linear chain.
UPDATE and DELETE are refused by triggers on both databases, by privileges on PostgreSQL and
by the session below on SQLite.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache

from sqlalchemy import (
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Uuid,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql import Executable

from tenancy.orm import Base, TenantScoped, UtcDateTime, utcnow
from tenancy.session import TenantSession, current_tenant, stamp_rows

GENESIS = b"\x00" * 32


class Action(StrEnum):
    READ = "read"
    LIST = "list"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"
    DECRYPT_DENIED = "decrypt_denied"
    # A stored value failed to authenticate (tampered, or moved from another row): a security
    # event for the auditors, with the patient and the field group.
    INTEGRITY_FAILED = "integrity_failed"
    ERASE = "erase"
    MERGE = "merge"
    # A bulk import's batch: the patients it created, updated or matched.
    IMPORT = "import"
    # An administrative change (branches, regions, staff, roles, resets): `reason` holds what
    # changed and its target as "<change> <Kind>:<id>[ <detail>]", never personal data.
    ADMIN = "admin"
    # A stated purpose (break the glass) and an auditor's flag on one: `reason` holds
    # "<purpose> StatedPurpose:<id>" (the note itself is sealed in its own table).
    STATE_PURPOSE = "state_purpose"
    FLAG_PURPOSE = "flag_purpose"


class Outcome(StrEnum):
    ALLOWED = "allowed"
    MASKED = "masked"
    DENIED = "denied"


class AccessLogEntry(TenantScoped, Base):
    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_time", "tenant_id", "occurred_at"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    id: Mapped[uuid.UUID] = mapped_column(Uuid)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor_type: Mapped[str] = mapped_column(String(10))
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_roles: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))
    # JSON list of patient ids (references only: no names, no health data).
    patient_ids: Mapped[str] = mapped_column(Text)
    field_groups: Mapped[str] = mapped_column(String(50))
    operation_name: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str] = mapped_column(String(64))
    client_addr: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(300))
    outcome: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(100))
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AccessLogPatient(TenantScoped, Base):
    """Which patients each entry touched, one row per (patient, entry), written with the entry:
    a patient's history (theirs, or an auditor's view of it) is an index range, not a scan of
    the entries' JSON. Not hashed: the entry's own `patient_ids` is the truth it is built from
    (and rebuilt from, see the migration that made it)."""

    __tablename__ = "access_log_patients"

    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class AccessLogHead(TenantScoped, Base):
    """The chain head per tenant: the last sequence number and hash (locked on append)."""

    __tablename__ = "access_log_heads"

    seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32), default=GENESIS)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class AccessLogSegment(TenantScoped, Base):
    """An archived run of entries (`auth.access_log_archive`): the entries live in a file, this
    row holds their boundaries and the file's digest, and the chain goes on through it."""

    __tablename__ = "access_log_segments"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    first_seq: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer)
    first_prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    oldest_at: Mapped[datetime] = mapped_column(UtcDateTime())
    newest_at: Mapped[datetime] = mapped_column(UtcDateTime())
    file_name: Mapped[str] = mapped_column(String(200))
    file_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    archived_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


@event.listens_for(TenantSession, "before_flush")
def _append_only(session: Session, _ctx: object, _instances: object) -> None:
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, AccessLogEntry | AccessLogSegment | AccessLogPatient):
            raise PermissionError("the access log is append-only")


@dataclass(frozen=True)
class Actor:
    kind: str  # "user", "service" or "system"
    id: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestInfo:
    request_id: str = ""
    operation_name: str = ""
    client_addr: str = ""
    user_agent: str = ""


@dataclass
class AccessEvent:
    action: Action
    patient_ids: Sequence[uuid.UUID]
    field_groups: Iterable[str] = ()
    outcome: Outcome = Outcome.ALLOWED
    reason: str = ""
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def canonical_time(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds")


def entry_hash(row: dict[str, object], prev_hash: bytes) -> bytes:
    """SHA-256 over a canonical JSON of every field of the entry and the previous hash."""
    body = {
        "tenant_id": str(row["tenant_id"]),
        "seq": row["seq"],
        "id": str(row["id"]),
        "occurred_at": canonical_time(row["occurred_at"]),  # type: ignore[arg-type]
        **{k: row[k] for k in HASHED_TEXT},
        "prev_hash": prev_hash.hex(),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).digest()


HASHED_TEXT = (
    "actor_type",
    "actor_id",
    "actor_roles",
    "action",
    "patient_ids",
    "field_groups",
    "operation_name",
    "request_id",
    "client_addr",
    "user_agent",
    "outcome",
    "reason",
)


async def start_chain(session: AsyncSession) -> None:
    """Create the bound tenant's chain head (done once, when the tenant is created)."""
    session.add(AccessLogHead())
    await session.flush()


async def append(
    session: AsyncSession, actor: Actor, info: RequestInfo, events: Sequence[AccessEvent]
) -> None:
    """Append events to the bound tenant's chain inside the session's transaction."""
    if not events:
        return
    head = (
        await session.execute(
            update(AccessLogHead)
            .values(seq=AccessLogHead.seq + len(events), updated_at=utcnow())
            .returning(AccessLogHead.seq, AccessLogHead.last_hash)
            .execution_options(synchronize_session=False)
        )
    ).one()
    seq, prev = head.seq - len(events), head.last_hash
    rows: list[dict[str, object]] = stamp_rows(session, [{} for _ in events])
    for row, ev in zip(rows, events, strict=True):
        seq += 1
        row.update(
            seq=seq,
            id=uuid.uuid4(),
            occurred_at=ev.occurred_at,
            actor_type=actor.kind,
            actor_id=actor.id,
            actor_roles=",".join(sorted(actor.roles)),
            action=str(ev.action),
            patient_ids=json.dumps(sorted(str(p) for p in ev.patient_ids)),
            field_groups=",".join(sorted(set(ev.field_groups))),
            operation_name=info.operation_name[:100],
            request_id=info.request_id[:64],
            client_addr=info.client_addr[:64],
            user_agent=info.user_agent[:300],
            outcome=str(ev.outcome),
            reason=ev.reason[:100],
        )
        row["prev_hash"] = prev
        row["entry_hash"] = prev = entry_hash(row, prev)
    touched = stamp_rows(
        session,
        [
            {"patient_id": pid, "seq": row["seq"]}
            for row, ev in zip(rows, events, strict=True)
            for pid in sorted(set(ev.patient_ids))
        ],
    )
    await _write(session, prev, rows, touched)


async def _write(
    session: AsyncSession,
    last_hash: bytes,
    rows: list[dict[str, object]],
    touched: list[dict[str, object]],
) -> None:
    """The chain head's new hash, the entries and their index rows: on PostgreSQL one
    statement (data-modifying CTEs, each run once and to completion, in the transaction that
    holds the head's row lock), elsewhere three."""
    if session.get_bind().dialect.name != "postgresql":
        heads = AccessLogHead.__table__
        head = update(heads).where(heads.c.tenant_id == current_tenant(session))
        await session.execute(head.values(last_hash=last_hash))
        await session.execute(AccessLogEntry.__table__.insert(), rows)
        if touched:
            await session.execute(AccessLogPatient.__table__.insert(), touched)
        return
    params: dict[str, object] = {"tenant": current_tenant(session), "last_hash": last_hash}
    for i, row in enumerate(rows):
        params.update((f"{name}_{i}", value) for name, value in row.items())
    if touched:
        params["patients"] = [t["patient_id"] for t in touched]
        params["seqs"] = [t["seq"] for t in touched]
    await session.execute(_pg_write(len(rows), bool(touched)), params)


@lru_cache(maxsize=16)
def _pg_write(entries: int, indexed: bool) -> Executable:
    """The PostgreSQL write for `entries` entries (with their index rows when `indexed`), built
    once per shape with every value a bound parameter: a request then only binds its values
    (a request appends one entry per event, mostly one; SQLAlchemy compiles each shape once)."""
    heads, log, patients = (
        AccessLogHead.__table__,
        AccessLogEntry.__table__,
        AccessLogPatient.__table__,
    )
    head = (
        update(heads)
        .where(heads.c.tenant_id == bindparam("tenant"))
        .values(last_hash=bindparam("last_hash"))
        .returning(heads.c.seq)
        .cte("head")
    )
    ctes = (
        head,
        *(
            insert(log)
            .values({c.name: bindparam(f"{c.name}_{i}", type_=c.type) for c in log.columns})
            .returning(log.c.seq)
            .cte(f"entry_{i}")
            for i in range(entries)
        ),
    )
    if not indexed:
        return select(func.count()).select_from(ctes[1]).add_cte(*ctes)
    # The index rows as two arrays unnested side by side: one shape whatever the page's size.
    index = select(
        bindparam("tenant", type_=Uuid),
        func.unnest(bindparam("patients", type_=ARRAY(Uuid))),
        func.unnest(bindparam("seqs", type_=ARRAY(Integer))),
    )
    columns = ("tenant_id", "patient_id", "seq")
    return insert(patients).from_select(columns, index).add_cte(*ctes)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    broken_seq: int | None = None
    reason: str = ""


def hashed_fields(entry: AccessLogEntry) -> dict[str, object]:
    """The fields `entry_hash` covers, read off a stored entry."""
    names = ("tenant_id", "seq", "id", "occurred_at", *HASHED_TEXT)
    return {name: getattr(entry, name) for name in names}


def check_link(
    row: dict[str, object], expected_seq: int, prev: bytes, stored_prev: bytes, stored: bytes
) -> str:
    """Why one entry breaks the chain ("" when it does not)."""
    if row["seq"] != expected_seq:
        return "entry missing"
    if stored_prev != prev:
        return "link to previous entry broken"
    if entry_hash(row, prev) != stored:
        return "entry altered"
    return ""


async def verify_chain(
    session: AsyncSession, batch: int = 5000, start: tuple[int, bytes] = (1, GENESIS)
) -> VerifyResult:
    """Walk the bound tenant's live entries from `start` (the first live sequence number and
    the hash it must link to): every hash, every link, no gap, and the head at the end.
    `auth.access_log_archive.verify_log` checks the archived segments before them."""
    expected_seq, prev = start
    count = 0
    while True:
        stmt = (
            select(AccessLogEntry)
            .where(AccessLogEntry.seq >= expected_seq)
            .order_by(AccessLogEntry.seq)
            .limit(batch)
        )
        entries = (await session.scalars(stmt)).all()
        for e in entries:
            reason = check_link(hashed_fields(e), expected_seq, prev, e.prev_hash, e.entry_hash)
            if reason:
                return VerifyResult(False, count, expected_seq, reason)
            prev, expected_seq, count = e.entry_hash, expected_seq + 1, count + 1
        if len(entries) < batch:
            break
    head = await session.scalar(select(AccessLogHead))
    if head is None or head.seq != expected_seq - 1 or head.last_hash != prev:
        return VerifyResult(False, count, expected_seq, "entries missing at the end of the chain")
    return VerifyResult(True, count)
