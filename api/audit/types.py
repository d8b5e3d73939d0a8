"""GraphQL types of the access log (访问日志) for auditors: references only, never patient data."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from enum import StrEnum

import strawberry

from api.ids import to_global_id
from api.rows import RowType
from auth import access_log
from auth.access_log import AccessLogEntry as EntryRow
from auth.access_log import AccessLogSegment as SegmentRow

AccessAction = strawberry.enum(
    access_log.Action,
    description="What was done: read, list, create, update, delete, export, decrypt_denied "
    "(a field group was refused), erase, merge; admin: an administrative change (see "
    "`change` and `target`).",
)
AccessOutcome = strawberry.enum(
    access_log.Outcome, description="allowed, masked (a masked form was shown) or denied."
)


class ExportFormatValue(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


ExportFormat = strawberry.enum(
    ExportFormatValue, description="JSONL: one JSON object per line; CSV: a header and rows."
)


@strawberry.type(
    description="One access-log entry: who did what to which patients, when, "
    "from where, and whether it was allowed. Hash-chained per tenant."
)
class AccessLogEntry(RowType):
    _row: strawberry.Private[EntryRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("AccessLogEntry", self._row.id))

    seq: int = strawberry.field(description="Position in the tenant's chain (1, 2, 3, …).")
    occurred_at: datetime = strawberry.field(description="When it happened (UTC).")
    actor_type: str = strawberry.field(description="user, service or system.")

    @strawberry.field(description="Who: a Staff id for users, the token or process id otherwise.")
    def actor_id(self) -> strawberry.ID:
        if self._row.actor_type == "user":
            return strawberry.ID(to_global_id("Staff", uuid.UUID(self._row.actor_id)))
        return strawberry.ID(self._row.actor_id)

    @strawberry.field(description="The actor's roles at the time.")
    def actor_roles(self) -> list[str]:
        return [r for r in self._row.actor_roles.split(",") if r]

    @strawberry.field(description="What was done.")
    def action(self) -> AccessAction:  # type: ignore[valid-type]
        return access_log.Action(self._row.action)

    @strawberry.field(description="Which patients (the ids actually returned or changed).")
    def patient_ids(self) -> list[strawberry.ID]:
        return [
            strawberry.ID(to_global_id("Patient", uuid.UUID(p)))
            for p in json.loads(self._row.patient_ids)
        ]

    @strawberry.field(description="Field groups touched: contact, health.")
    def field_groups(self) -> list[str]:
        return [g for g in self._row.field_groups.split(",") if g]

    operation_name: str = strawberry.field(
        description="The GraphQL operation name the client sent."
    )

    request_id: str = strawberry.field(
        description="Request id (also in error responses and server logs)."
    )

    client_addr: str = strawberry.field(description="Client address.")
    user_agent: str = strawberry.field(description="Client user agent.")

    @strawberry.field(description="allowed, masked or denied.")
    def outcome(self) -> AccessOutcome:  # type: ignore[valid-type]
        return access_log.Outcome(self._row.outcome)

    reason: str = strawberry.field(description="Why it was denied, when it was.")

    def _admin_parts(self) -> list[str]:
        if self._row.action != access_log.Action.ADMIN:
            return []
        return self._row.reason.split(" ")

    @strawberry.field(
        description="For administrative entries: what changed, e.g. branch.create, "
        "staff.invite, staff.update, staff.password_reset, patients.reassign (null otherwise)."
    )
    def change(self) -> str | None:
        parts = self._admin_parts()
        return parts[0] if parts else None

    @strawberry.field(
        description="For administrative entries: the global id of what was changed (a Branch, "
        "Region, Staff member, ServiceToken) or a role name (null otherwise)."
    )
    def target(self) -> strawberry.ID | None:
        parts = self._admin_parts()
        if len(parts) < 2 or ":" not in parts[1]:
            return None
        kind, raw = parts[1].split(":", 1)
        try:
            return strawberry.ID(to_global_id(kind, uuid.UUID(raw)))
        except ValueError:
            return strawberry.ID(raw)

    @strawberry.field(
        description="For administrative entries: what about it changed (e.g. "
        "`roles,branches roles=doctor`), ids and role names only (null otherwise)."
    )
    def change_detail(self) -> str | None:
        parts = self._admin_parts()
        return " ".join(parts[2:]) if len(parts) > 2 else None

    @strawberry.field(description="This entry's hash (hex): SHA-256 over it and the previous one.")
    def entry_hash(self) -> str:
        return self._row.entry_hash.hex()


@strawberry.input(description="Which entries: every field given must hold.")
class AccessLogFilter:
    patient_id: strawberry.ID | None = strawberry.field(
        default=None, description="Entries about this patient."
    )
    actor_id: strawberry.ID | None = strawberry.field(
        default=None, description="Entries by this staff member (Staff id) or token id."
    )
    actions: list[AccessAction] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Any of these actions."
    )
    outcomes: list[AccessOutcome] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Any of these outcomes."
    )
    field_group: str | None = strawberry.field(
        default=None, description="Entries that touched this field group (contact or health)."
    )
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="At or after this moment."
    )
    to: datetime | None = strawberry.field(default=None, description="Strictly before this.")


@strawberry.type(description="An export of access-log entries (itself logged).")
class AccessLogExport:
    format: ExportFormat = strawberry.field(description="The format.")  # type: ignore[valid-type]
    entries: int = strawberry.field(description="How many entries it holds.")
    content: str = strawberry.field(description="The export itself.")


@strawberry.type(
    description="A run of old entries moved out of the database by `patientpool audit archive` "
    "(归档段): kept in a file whose digest is recorded here; `audit verify` re-hashes it."
)
class AccessLogSegment(RowType):
    _row: strawberry.Private[SegmentRow]

    number: int = strawberry.field(description="1, 2, 3, … in chain order.")
    first_seq: int = strawberry.field(description="Sequence number of its first entry.")
    last_seq: int = strawberry.field(description="Sequence number of its last entry.")

    @strawberry.field(description="How many entries it holds.")
    def entries(self) -> int:
        return self._row.last_seq - self._row.first_seq + 1

    oldest_at: datetime = strawberry.field(description="When its oldest entry happened.")
    newest_at: datetime = strawberry.field(description="When its newest entry happened.")
    file_name: str = strawberry.field(description="Its file, relative to the archive directory.")

    @strawberry.field(description="SHA-256 of the file (hex).")
    def file_sha256(self) -> str:
        return self._row.file_sha256.hex()

    @strawberry.field(description="Hash of its last entry (hex): the next entry links to it.")
    def last_hash(self) -> str:
        return self._row.last_hash.hex()

    archived_at: datetime = strawberry.field(description="When it was archived.")


@strawberry.type(description="How long the access log stays in the database, and what has left.")
class AccessLogArchive:
    retention_days: int | None = strawberry.field(
        description="Entries older than this many days are archived; null: kept for ever."
    )
    segments: list[AccessLogSegment] = strawberry.field(
        description="The archived segments, oldest first."
    )
