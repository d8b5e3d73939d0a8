"""Patient root fields: thin resolvers. auth decides and builds the scope, the domain service
does the work, the trail records what the caller saw or changed."""

from __future__ import annotations

import uuid
from typing import Any

import strawberry
from strawberry.types import Info
from strawberry.utils.str_converters import to_camel_case

from api.ids import parse_global_id, to_global_id
from api.pagination import Connection, keyset_position, make_connection
from api.patients.inputs import CreatePatientInput, PatientFilter, UpdatePatientInput
from api.patients.types import Patient
from api.pool.loaders import patient_tags_loader
from api.referrals.resolvers import make_link
from api.selection import asks
from auth.access_log import Action
from auth.guard import (
    patient_scope,
    require,
    require_patient_scope,
    require_unmasked,
    writable_groups,
)
from auth.reasons import check_health
from auth.staff import StaffService
from domain.errors import Forbidden, Merged, NotFound
from domain.patients.models import SEALED_FIELDS, FieldGroup, TouchVia
from domain.patients.models import Patient as PatientRow
from domain.patients.repository import PatientFilter as RowFilter
from domain.patients.repository import PatientRepository
from domain.patients.scope import PatientScope
from domain.patients.service import PatientService, phone_digest
from domain.rights.erasure import erase


@strawberry.type(description="Result of createPatient.")
class CreatePatientPayload:
    patient: Patient = strawberry.field(
        description="The new patient or, when `existing`, the known person."
    )
    existing: bool = strawberry.field(
        description="True when a phone, WeChat id, WeCom external id or national id given is "
        "already a patient you can see (OneID): that patient is returned as they are (the "
        "identifiers they lacked filled in, the rest of the input not applied) and this "
        "channel is recorded as a touch in their channelHistory. False for a new record."
    )


@strawberry.type(description="Result of updatePatient.")
class UpdatePatientPayload:
    patient: Patient = strawberry.field(description="The patient as changed.")


def _ids(values: list[strawberry.ID] | None, type_name: str, field: str) -> frozenset[uuid.UUID]:
    return frozenset(parse_global_id(v, type_name, field) for v in values or [])


async def live_patient(session: Any, scope: PatientScope, id: str) -> PatientRow:
    """The record a patient id names, to read or change as itself. A retired (merged) id
    answers NOT_FOUND with `mergedInto`, the kept record's id, when the caller may see that
    record, and exactly like a missing id otherwise."""
    repo = PatientRepository(session)
    row = await repo.get(scope, parse_global_id(id, "Patient"))
    if row is None:
        raise NotFound("no such patient")
    if row.merged_into_id is not None:
        kept = await repo.get(scope, row.merged_into_id)
        if kept is None:  # nothing more than for a missing id
            raise NotFound("no such patient")
        raise Merged("this record was merged into another", to_global_id("Patient", kept.id))
    return row


async def patient(info: Info, id: strawberry.ID) -> Patient | None:
    ctx = info.context
    principal = await ctx.principal()
    scope = require_patient_scope(principal, ctx.trail, "read", Action.READ)
    row = await live_patient(ctx.session, scope, id)
    if asks(info.selected_fields, SEALED_NAMES):
        await ctx.cipher()  # now, so the sealed fields resolve without an await (see types.py)
    ctx.trail.returned(Action.READ, [row.id])
    return Patient.of(row, _ctx=ctx)


async def patients(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    filter: PatientFilter | None = None,
) -> Connection[Patient]:
    ctx = info.context
    principal = await ctx.principal()
    scope = require_patient_scope(principal, ctx.trail, "read", Action.LIST)
    return await page_patients(info, scope, await row_filter_of(info, filter), first, after)


TAGS = frozenset({"tags"})
SEALED_NAMES = frozenset(to_camel_case(n) for n in SEALED_FIELDS)


async def page_patients(
    info: Info, scope: PatientScope, row_filter: RowFilter, first: int | None, after: str | None
) -> Connection[Patient]:
    """One page of patients, newest first, logged as a list of exactly the ids returned."""
    ctx = info.context
    limit, page_key = keyset_position(first, after)  # newest first: (created_at, id) before
    repo = PatientRepository(ctx.session)
    rows = await repo.page(scope, row_filter, limit + 1, page_key)
    has_next = len(rows) > limit
    rows = rows[:limit]
    # Load now, once, what the page's fields need (the cipher, the tags), so each field of
    # each patient resolves without an await (see api.patients.types); cached either way.
    if rows and asks(info.selected_fields, SEALED_NAMES):
        await ctx.cipher()
    tags: list[Any] = [None] * len(rows)
    if rows and asks(info.selected_fields, TAGS):
        loader = ctx.loader("patient_tags", lambda: patient_tags_loader(ctx.session))
        tags = list(await loader.load_many([r.id for r in rows]))
    ctx.trail.returned(Action.LIST, [r.id for r in rows])
    return make_connection(
        [Patient.of(r, _ctx=ctx, _tags=t) for r, t in zip(rows, tags, strict=True)],
        [[r.created_at.isoformat(), str(r.id)] for r in rows],
        has_next,
        lambda: repo.count(scope, row_filter),
    )


async def row_filter_of(info: Info, flt: PatientFilter | None) -> RowFilter:
    if flt is None:
        return RowFilter()
    digest = None
    if flt.phone is not None:
        require_unmasked(await info.context.principal(), FieldGroup.CONTACT, "phone")
        digest = phone_digest(await info.context.cipher(), flt.phone)
    return RowFilter(
        phone_bidx=digest,
        branch_ids=_ids(flt.branch_ids, "Branch", "branchIds"),
        stages=frozenset(str(s) for s in flt.stages or []),
        tiers=frozenset(str(t) for t in flt.tiers or []),
        channels=frozenset(flt.channels or []),
    )


async def _values(info: Info, data: Any, creating: bool = False) -> dict[str, Any]:
    """Input → service values: ids resolved to objects; unset fields (and on create, nulls)
    dropped, so only what the caller gave is applied."""
    values = {
        k: v
        for k, v in vars(data).items()
        if v is not strawberry.UNSET and not k.startswith("_") and not (creating and v is None)
    }
    if values.get("home_branch_id") is not None:
        values["home_branch_id"] = parse_global_id(
            values["home_branch_id"], "Branch", "homeBranchId"
        )
    if "assigned_staff_id" in values:
        raw = values.pop("assigned_staff_id")
        staff = None
        if raw is not None:
            staff_id = parse_global_id(raw, "Staff", "assignedStaffId")
            staff = await StaffService(info.context.session, info.context.trail).get(
                staff_id, "assignedStaffId"
            )
        values["assigned_staff"] = staff
    for name in ("gender", "pool_tier", "lifecycle_stage", "trust_level"):
        if values.get(name) is not None:
            values[name] = str(values[name])
    return values


def _check_field_groups(info: Info, principal: Any, values: dict[str, Any]) -> set[str]:
    touched = {str(SEALED_FIELDS[k]) for k in values if k in SEALED_FIELDS}
    if touched - {str(g) for g in writable_groups(principal)}:
        raise Forbidden("not allowed to write these field groups")
    return touched


async def create_patient(info: Info, input: CreatePatientInput) -> CreatePatientPayload:
    ctx = info.context
    principal = await ctx.principal()
    scope = require_patient_scope(principal, ctx.trail, "write", Action.CREATE)
    values = await _values(info, input, creating=True)
    code = values.pop("referral_code", None)
    channel = values.pop("referral_channel", None) or ""
    groups = _check_field_groups(info, principal, values)
    service = PatientService(ctx.session, await ctx.cipher())
    assignee = values.get("assigned_staff")
    if not scope.admits(values["home_branch_id"], getattr(assignee, "id", assignee)):
        raise Forbidden("not allowed to create patients outside your scope")
    visible = patient_scope(principal, "read")
    admitted = await service.admit(values, visible, principal.subject, TouchVia.CREATE)
    row = admitted.patient
    if admitted.existing:
        ctx.trail.returned(Action.READ, [row.id])
        ctx.trail.changed(Action.UPDATE, [row.id], groups)
        return CreatePatientPayload(patient=Patient.of(row, _ctx=ctx), existing=True)
    ctx.trail.changed(Action.CREATE, [row.id], groups)
    if code:
        require(principal, "referrals", "write")
        await make_link(info, scope, row, code, channel)
    return CreatePatientPayload(patient=Patient.of(row, _ctx=ctx), existing=False)


async def update_patient(
    info: Info, id: strawberry.ID, input: UpdatePatientInput
) -> UpdatePatientPayload:
    ctx = info.context
    principal = await ctx.principal()
    scope = require_patient_scope(principal, ctx.trail, "write", Action.UPDATE)
    row = await live_patient(ctx.session, scope, id)
    values = await _values(info, input)
    groups = _check_field_groups(info, principal, values)
    if str(FieldGroup.HEALTH) in groups:  # as the record stands: before any reassignment
        await check_health(ctx.session, principal, ctx.trail, [row], Action.UPDATE)
    visible = patient_scope(principal, "read")
    await PatientService(ctx.session, await ctx.cipher()).update(row, values, visible)
    if not await PatientRepository(ctx.session).holds(scope, row.id):
        raise Forbidden("not allowed to move a patient outside your scope")
    ctx.trail.changed(Action.UPDATE, [row.id], groups)
    return UpdatePatientPayload(patient=Patient.of(row, _ctx=ctx))


@strawberry.type(description="Result of erasePatient.")
class ErasePatientPayload:
    patient: Patient = strawberry.field(
        description="The patient as kept: id, branch, stage and dates; every sealed field gone."
    )


async def erase_patient(info: Info, id: strawberry.ID) -> ErasePatientPayload:
    """Right to erasure: the sealed fields and blind indexes are destroyed for good."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "patients", "erase")
    scope = require_patient_scope(principal, ctx.trail, "write", Action.ERASE)
    row = await live_patient(ctx.session, scope, id)
    await erase(ctx.session, await ctx.cipher(), row)
    ctx.trail.changed(Action.ERASE, [row.id], {str(g) for g in set(SEALED_FIELDS.values())})
    return ErasePatientPayload(patient=Patient.of(row, _ctx=ctx))
