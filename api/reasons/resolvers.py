"""Break the glass: `statePurpose` for staff, `reasonedAccess` and `flagReasonedAccess` for
auditors, `setReasonWindow` for HQ. The gate itself lives in `auth.reasons`."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from api.ids import parse_global_id
from api.pagination import Connection, keyset_connection, keyset_position
from api.reasons.types import Purpose, ReasonedAccess, ReasonedAccessFilter
from auth import reasons
from auth.access_log import Action
from auth.guard import require, require_patient_scope
from domain.errors import BadInput, Conflict, NotFound
from domain.patients.repository import PatientRepository
from domain.reasons import models as m
from domain.reasons.models import MAX_WINDOW_MINUTES
from domain.reasons.repository import ReasonFilter, ReasonRepository


async def state_purpose(
    info: Info,
    patient_id: strawberry.ID,
    purpose: Annotated[
        Purpose,  # type: ignore[valid-type]
        strawberry.argument(description="Why you need the patient's health fields."),
    ],
    note: Annotated[
        str,
        strawberry.argument(
            description="In a few words (at most 500 characters); stored sealed, shown to "
            "auditors, never logged."
        ),
    ],
) -> ReasonedAccess:
    ctx = info.context
    principal = await ctx.principal()
    # Casbin decides who may read health fields at all; a purpose never widens that.
    require(principal, "fields:health", "read")
    scope = require_patient_scope(principal, ctx.trail, "read", Action.READ)
    row = await PatientRepository(ctx.session).get(scope, parse_global_id(patient_id, "Patient"))
    if row is None or row.merged_into_id is not None:
        raise NotFound("no such patient")
    stated = await reasons.state_purpose(
        ctx.session, principal, ctx.trail, await ctx.cipher(), row, m.Purpose(purpose), note
    )
    return ReasonedAccess.of(stated)


def _filter(flt: ReasonedAccessFilter | None) -> ReasonFilter:
    flt = flt or ReasonedAccessFilter()
    return ReasonFilter(
        staff_id=parse_global_id(flt.staff_id, "Staff", "staffId") if flt.staff_id else None,
        branch_id=parse_global_id(flt.branch_id, "Branch", "branchId") if flt.branch_id else None,
        purpose=str(flt.purpose) if flt.purpose is not None else None,
        since=flt.from_,
        until=flt.to,
    )


async def reasoned_access(
    info: Info,
    filter: ReasonedAccessFilter | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Connection[ReasonedAccess]:
    ctx = info.context
    require(await ctx.principal(), "accesslog", "read")
    flt = _filter(filter)
    limit, key = keyset_position(first, after)
    page = await ReasonRepository(ctx.session).review_page(flt, limit, key)
    return keyset_connection(page, [ReasonedAccess.of(r) for r in page.rows])


async def flag_reasoned_access(
    info: Info,
    id: strawberry.ID,
    note: Annotated[
        str, strawberry.argument(description="What to follow up (at most 500 characters).")
    ],
) -> ReasonedAccess:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "accesslog", "read")
    row = await ReasonRepository(ctx.session).get(parse_global_id(id, "ReasonedAccess"))
    if row is None:
        raise NotFound("no such reasoned access")
    if row.flagged_at is not None:
        raise Conflict("already flagged")
    await reasons.flag(ctx.session, principal, ctx.trail, await ctx.cipher(), row, note)
    return ReasonedAccess.of(row)


async def set_reason_window_mutation(
    info: Info,
    minutes: Annotated[int, strawberry.argument(description="Minutes (1-480); default 30.")],
) -> int:
    principal = await info.context.principal()
    require(principal, "policies", "write")
    if not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise BadInput(f"minutes must be between 1 and {MAX_WINDOW_MINUTES}", field="minutes")
    await ReasonRepository(info.context.session).set_window_minutes(minutes)
    info.context.trail.admin("tenant.reason_window", "Tenant", principal.tenant_id, str(minutes))
    return minutes
