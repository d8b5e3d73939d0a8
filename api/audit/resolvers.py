"""Auditors' root fields: the access log, a patient's access history, and exports."""

from __future__ import annotations

import csv
import io
import json
import uuid

import strawberry
from strawberry.types import Info

from api.audit.types import (
    AccessLogArchive,
    AccessLogEntry,
    AccessLogExport,
    AccessLogFilter,
    AccessLogSegment,
    ExportFormat,
    ExportFormatValue,
)
from api.ids import parse_global_id, type_of_global_id
from api.pagination import Connection, check_first, decode_cursor, make_connection
from auth import access_log_queries as queries
from auth.access_log_archive import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, archived_segments
from auth.guard import require
from domain.errors import BadInput
from domain.tenants.repository import TenantRepository

MAX_EXPORT = 10_000


def _filter(flt: AccessLogFilter | None, patient: strawberry.ID | None = None) -> queries.LogFilter:
    flt = flt or AccessLogFilter()
    patient = patient or flt.patient_id
    actor = None
    if flt.actor_id is not None:
        actor = str(
            parse_global_id(flt.actor_id, "Staff", "actorId")
            if type_of_global_id(flt.actor_id) == "Staff"
            else flt.actor_id
        )
    return queries.LogFilter(
        patient_id=parse_global_id(patient, "Patient", "patientId") if patient else None,
        actor_id=actor,
        actions=frozenset(str(a) for a in flt.actions or []),
        outcomes=frozenset(str(o) for o in flt.outcomes or []),
        field_group=flt.field_group,
        since=flt.from_,
        until=flt.to,
    )


async def _page(
    info: Info, flt: queries.LogFilter, first: int | None, after: str | None
) -> Connection[AccessLogEntry]:
    ctx = info.context
    require(await ctx.principal(), "accesslog", "read")
    limit = check_first(first)
    cursor = decode_cursor(after, 1)
    before = None
    if cursor is not None:
        if not cursor[0].isdigit():
            raise BadInput("after is not a valid cursor", field="after")
        before = int(cursor[0])
    rows = list(await queries.page(ctx.session, flt, limit + 1, before))
    has_next = len(rows) > limit
    rows = rows[:limit]
    return make_connection(
        [AccessLogEntry.of(r) for r in rows],
        [[str(r.seq)] for r in rows],
        has_next,
        lambda: queries.count(ctx.session, flt),
    )


async def access_log(
    info: Info,
    filter: AccessLogFilter | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Connection[AccessLogEntry]:
    return await _page(info, _filter(filter), first, after)


async def patient_access_history(
    info: Info, patient_id: strawberry.ID, first: int | None = None, after: str | None = None
) -> Connection[AccessLogEntry]:
    return await _page(info, _filter(None, patient_id), first, after)


async def export_access_log(
    info: Info,
    filter: AccessLogFilter | None = None,
    format: ExportFormat = ExportFormatValue.JSONL,  # type: ignore[valid-type,assignment]
) -> AccessLogExport:
    ctx = info.context
    require(await ctx.principal(), "accesslog", "export")
    flt = _filter(filter)
    total = await queries.count(ctx.session, flt)
    if total > MAX_EXPORT:
        raise BadInput(
            f"{total} entries match; narrow the filter to at most {MAX_EXPORT}", field="filter"
        )
    rows = await queries.page(ctx.session, flt, MAX_EXPORT, None)
    records = [
        {
            "seq": r.seq,
            "occurred_at": r.occurred_at.isoformat(),
            "actor_type": r.actor_type,
            "actor_id": r.actor_id,
            "actor_roles": r.actor_roles,
            "action": r.action,
            "patient_ids": json.loads(r.patient_ids),
            "field_groups": r.field_groups,
            "operation_name": r.operation_name,
            "request_id": r.request_id,
            "client_addr": r.client_addr,
            "user_agent": r.user_agent,
            "outcome": r.outcome,
            "reason": r.reason,
            "entry_hash": r.entry_hash.hex(),
        }
        for r in rows
    ]
    if format == ExportFormatValue.CSV:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(records[0]) if records else ["seq"])
        writer.writeheader()
        for rec in records:
            writer.writerow({**rec, "patient_ids": " ".join(rec["patient_ids"])})
        content = out.getvalue()
    else:
        content = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
    covered = sorted({uuid.UUID(p) for rec in records for p in rec["patient_ids"]})
    ctx.trail.exported(covered)
    return AccessLogExport(format=format, entries=len(records), content=content)


async def _archive(info: Info) -> AccessLogArchive:
    ctx = info.context
    await ctx.principal()  # the principal binds the session to its tenant
    tenant = await TenantRepository(ctx.session).bound()
    days = None if tenant is None else tenant.audit_retention_days
    rows = await archived_segments(ctx.session)
    return AccessLogArchive(retention_days=days, segments=[AccessLogSegment.of(r) for r in rows])


async def access_log_archive(info: Info) -> AccessLogArchive:
    require(await info.context.principal(), "accesslog", "read")
    return await _archive(info)


async def set_access_log_retention(info: Info, days: int | None) -> AccessLogArchive:
    principal = await info.context.principal()
    require(principal, "policies", "write")
    if days is not None and not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise BadInput(
            f"days must be between {MIN_RETENTION_DAYS} (six months, the legal minimum) "
            f"and {MAX_RETENTION_DAYS}, or null to keep the log for ever",
            field="days",
        )
    await TenantRepository(info.context.session).set_audit_retention(days)
    return await _archive(info)
