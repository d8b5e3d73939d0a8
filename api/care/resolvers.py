"""Root fields for visits, orders, follow-ups and the chain's conversion metrics.

Every list joins patients under the caller's scope, so a row about a patient you may not see
never leaves the database; every change is logged against its patient."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo

import strawberry
from strawberry.types import Info

from api.care.types import (
    BranchFigures,
    ChainMetrics,
    ConversionFigures,
    FollowUp,
    FollowUpKind,
    FollowUpRule,
    FollowUpStatus,
    FollowUpTrigger,
    Order,
    OrderStatus,
    RegionFigures,
    Visit,
    VisitStatus,
)
from api.chain.rollup import by_region
from api.ids import parse_global_id
from api.pagination import Connection, held_connection, keyset_connection, keyset_position
from api.patients.loaders import patient_in_scope
from api.tenants.types import Branch, Region
from api.times import to_utc
from auth.access_log import Action
from auth.guard import patient_scope, require, require_patient_scope
from auth.principal import Principal
from auth.staff import StaffService
from domain.care import follow_ups
from domain.care import models as cm
from domain.care.metrics import Figures, chain_figures
from domain.care.orders import NewLine, OrderService, to_fen
from domain.care.repository import CareRepository, FollowUpCriteria, OrderCriteria, VisitCriteria
from domain.care.visits import VisitService
from domain.errors import BadInput, NotFound
from domain.patients.models import Patient as PatientRow
from domain.patients.repository import PatientRepository
from domain.patients.scope import PatientScope
from domain.pool import models as pm
from domain.tenants.branches import BranchService

# "Today" for follow-ups is a clinic's day; the chains we serve keep China time.
CLINIC_TZ = ZoneInfo("Asia/Shanghai")
MAX_METRIC_DAYS = 366


async def _patient(info: Info, patient_id: strawberry.ID, obj: str, field: str) -> PatientRow:
    """A patient the caller may change, for a write on `obj` (visits, orders, followups)."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, obj, "write")
    scope = require_patient_scope(principal, ctx.trail, "write", Action.UPDATE)
    return await patient_in_scope(info, scope, patient_id, field)


async def _owned(info: Info, model: type, id: strawberry.ID, type_name: str, obj: str) -> tuple:
    """A visit, order or follow-up whose patient the caller may change, with that patient."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, obj, "write")
    scope = require_patient_scope(principal, ctx.trail, "write", Action.UPDATE)
    row = await CareRepository(ctx.session).owned(model, parse_global_id(id, type_name), scope)
    if row is None:
        raise NotFound(f"no such {type_name[0].lower()}{type_name[1:]}")
    ctx.trail.changed(Action.UPDATE, [row[1].id])
    return row[0], row[1]


async def _listed(info: Info, obj: str) -> tuple[Principal, PatientScope]:
    """The caller and the patients whose visits, orders or follow-ups they may list; the
    caller must hold `obj` read."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, obj, "read")
    return principal, require_patient_scope(principal, ctx.trail, "read", Action.LIST)


async def _filtered_patient(info: Info, value: strawberry.ID) -> uuid.UUID:
    """The patient a list filter names; a retired (merged) id names the kept record, whose
    rows the merge moved (a record the caller cannot read matches nothing either way)."""
    pid = parse_global_id(value, "Patient", "patientId")
    scope = patient_scope(await info.context.principal(), "read")
    row = await PatientRepository(info.context.session).follow(scope, pid)
    return pid if row is None else row.id


async def _one(info: Info, obj: str, model: type, type_name: str, id: strawberry.ID) -> object:
    """One visit, order or follow-up by id, under the same rule and scope as its list (for
    `node(id:)`); another tenant's or an out-of-scope id is NOT_FOUND like a missing one."""
    _principal, scope = await _listed(info, obj)
    row = await CareRepository(info.context.session).one(
        model, parse_global_id(id, type_name), scope
    )
    if row is None:
        raise NotFound("no such node")
    info.context.trail.returned(Action.READ, [row.patient_id])
    return row


async def visit(info: Info, id: strawberry.ID) -> Visit:
    return Visit.of(await _one(info, "visits", cm.Visit, "Visit", id))  # type: ignore[arg-type]


async def order(info: Info, id: strawberry.ID) -> Order:
    return await _order(info, await _one(info, "orders", cm.Order, "Order", id))  # type: ignore[arg-type]


async def follow_up(info: Info, id: strawberry.ID) -> FollowUp:
    row = await _one(info, "followups", pm.FollowUp, "FollowUp", id)
    return FollowUp.of(row)  # type: ignore[arg-type]


async def _staff_id(info: Info, raw: strawberry.ID | None, field: str) -> uuid.UUID | None:
    if raw is None:
        return None
    staff_id = parse_global_id(raw, "Staff", field)
    await StaffService(info.context.session, info.context.trail).get(staff_id, field)
    return staff_id


# --- visits ---


@strawberry.input(description="Which visits to list; all given parts must match.")
class VisitFilter:
    patient_id: strawberry.ID | None = strawberry.field(default=None, description="One patient.")
    branch_id: strawberry.ID | None = strawberry.field(default=None, description="One branch.")
    doctor_id: strawberry.ID | None = strawberry.field(default=None, description="One doctor.")
    statuses: list[VisitStatus] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Status is one of these."
    )
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Booked at or after."
    )
    to: datetime | None = strawberry.field(default=None, description="Booked before.")


async def visits(
    info: Info,
    filter: VisitFilter | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Connection[Visit]:
    ctx = info.context
    _principal, scope = await _listed(info, "visits")
    flt = filter or VisitFilter()
    criteria = VisitCriteria(
        patient_id=await _filtered_patient(info, flt.patient_id) if flt.patient_id else None,
        branch_id=parse_global_id(flt.branch_id, "Branch") if flt.branch_id else None,
        doctor_id=parse_global_id(flt.doctor_id, "Staff") if flt.doctor_id else None,
        statuses=[str(s) for s in flt.statuses or ()],
        since=None if flt.from_ is None else to_utc(flt.from_, "from"),
        until=None if flt.to is None else to_utc(flt.to, "to"),
    )
    limit, key = keyset_position(first, after)
    page = await CareRepository(ctx.session).visit_page(scope, criteria, limit, key)
    ctx.trail.returned(Action.LIST, sorted({r.patient_id for r in page.rows}))
    return keyset_connection(page, [Visit.of(r) for r in page.rows])


async def book_visit(
    info: Info,
    patient_id: strawberry.ID,
    branch_id: strawberry.ID,
    scheduled_at: datetime,
    doctor_id: strawberry.ID | None = None,
) -> Visit:
    ctx = info.context
    patient = await _patient(info, patient_id, "visits", "patientId")
    doctor = await _staff_id(info, doctor_id, "doctorId")
    principal = await ctx.principal()
    visit = await VisitService(ctx.session, principal.subject).book(
        patient, parse_global_id(branch_id, "Branch", "branchId"), doctor, scheduled_at
    )
    ctx.trail.changed(Action.UPDATE, [patient.id])
    return Visit.of(visit)


async def _visit_change(info: Info, id: strawberry.ID) -> tuple[VisitService, cm.Visit, PatientRow]:
    visit, patient = await _owned(info, cm.Visit, id, "Visit", "visits")
    principal = await info.context.principal()
    return VisitService(info.context.session, principal.subject), visit, patient


async def reschedule_visit(info: Info, id: strawberry.ID, scheduled_at: datetime) -> Visit:
    service, visit, _patient_row = await _visit_change(info, id)
    return Visit.of(await service.reschedule(visit, scheduled_at))


async def cancel_visit(info: Info, id: strawberry.ID) -> Visit:
    service, visit, _patient_row = await _visit_change(info, id)
    return Visit.of(await service.cancel(visit))


async def mark_no_show(info: Info, id: strawberry.ID) -> Visit:
    service, visit, _patient_row = await _visit_change(info, id)
    return Visit.of(await service.no_show(visit))


async def mark_arrived(info: Info, id: strawberry.ID, arrived_at: datetime | None = None) -> Visit:
    service, visit, patient = await _visit_change(info, id)
    return Visit.of(await service.arrive(visit, patient, arrived_at))


# --- orders ---


@strawberry.input(description="One service line of a new order.")
class OrderLineInput:
    service: str = strawberry.field(description="Service or product (1-200 characters).")
    quantity: int = strawberry.field(default=1, description="Quantity, 1-10000.")
    unit_price: Decimal = strawberry.field(description='Price per unit in yuan, e.g. "1280.50".')


@strawberry.input(description="Which orders to list; all given parts must match.")
class OrderFilter:
    patient_id: strawberry.ID | None = strawberry.field(default=None, description="One patient.")
    branch_id: strawberry.ID | None = strawberry.field(default=None, description="One branch.")
    statuses: list[OrderStatus] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Status is one of these."
    )


async def _order(info: Info, row: cm.Order) -> Order:
    return (await _orders(info, [row]))[0]


async def _orders(info: Info, rows: list[cm.Order]) -> list[Order]:
    """Lines and refunds of a page of orders: two queries for the whole page."""
    if not rows:
        return []
    lines, refunds = await CareRepository(info.context.session).order_details([r.id for r in rows])
    return [Order.of(r, _lines=lines[r.id], _refunds=refunds[r.id]) for r in rows]


async def orders(
    info: Info,
    filter: OrderFilter | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Connection[Order]:
    ctx = info.context
    _principal, scope = await _listed(info, "orders")
    flt = filter or OrderFilter()
    criteria = OrderCriteria(
        patient_id=await _filtered_patient(info, flt.patient_id) if flt.patient_id else None,
        branch_id=parse_global_id(flt.branch_id, "Branch") if flt.branch_id else None,
        statuses=[str(s) for s in flt.statuses or ()],
    )
    limit, key = keyset_position(first, after)
    page = await CareRepository(ctx.session).order_page(scope, criteria, limit, key)
    ctx.trail.returned(Action.LIST, sorted({r.patient_id for r in page.rows}))
    return keyset_connection(page, await _orders(info, page.rows))


async def create_order(
    info: Info, patient_id: strawberry.ID, branch_id: strawberry.ID, lines: list[OrderLineInput]
) -> Order:
    ctx = info.context
    patient = await _patient(info, patient_id, "orders", "patientId")
    principal = await ctx.principal()
    row = await OrderService(ctx.session, principal.subject).create(
        patient,
        parse_global_id(branch_id, "Branch", "branchId"),
        [NewLine(x.service, x.quantity, to_fen(x.unit_price, "unitPrice")) for x in lines],
    )
    ctx.trail.changed(Action.UPDATE, [patient.id])
    return await _order(info, row)


async def pay_order(info: Info, id: strawberry.ID) -> Order:
    order, patient = await _owned(info, cm.Order, id, "Order", "orders")
    principal = await info.context.principal()
    await OrderService(info.context.session, principal.subject).pay(order, patient)
    return await _order(info, order)


async def cancel_order(info: Info, id: strawberry.ID) -> Order:
    order, _patient_row = await _owned(info, cm.Order, id, "Order", "orders")
    principal = await info.context.principal()
    await OrderService(info.context.session, principal.subject).cancel(order)
    return await _order(info, order)


async def refund_order(info: Info, id: strawberry.ID, amount: Decimal, reason: str = "") -> Order:
    order, patient = await _owned(info, cm.Order, id, "Order", "orders")
    principal = await info.context.principal()
    await OrderService(info.context.session, principal.subject).refund(
        order, patient, to_fen(amount, "amount"), reason
    )
    return await _order(info, order)


# --- follow-ups ---


@strawberry.input(description="Which follow-ups to list; all given parts must match.")
class FollowUpFilter:
    mine: bool = strawberry.field(default=False, description="Only those assigned to me.")
    due_today: bool = strawberry.field(
        default=False,
        description="Only those due by the end of today (China time), overdue included.",
    )
    statuses: list[FollowUpStatus] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Status is one of these (default: OPEN)."
    )
    kinds: list[FollowUpKind] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Kind is one of these."
    )
    patient_id: strawberry.ID | None = strawberry.field(default=None, description="One patient.")
    due_before: datetime | None = strawberry.field(default=None, description="Due before.")


def end_of_today(now: datetime | None = None) -> datetime:
    local = (now or datetime.now(UTC)).astimezone(CLINIC_TZ).date()
    return datetime.combine(local + timedelta(days=1), time.min, CLINIC_TZ).astimezone(UTC)


async def follow_ups_list(
    info: Info,
    filter: FollowUpFilter | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Connection[FollowUp]:
    ctx = info.context
    principal, scope = await _listed(info, "followups")
    flt = filter or FollowUpFilter()
    due_before = [end_of_today()] if flt.due_today else []
    if flt.due_before is not None:
        due_before.append(to_utc(flt.due_before, "dueBefore"))
    criteria = FollowUpCriteria(
        statuses=[str(s) for s in flt.statuses or [pm.FollowUpStatus.OPEN]],
        assignee_id=principal.id if flt.mine else None,
        due_before=due_before,
        kinds=[str(k) for k in flt.kinds or ()],
        patient_id=await _filtered_patient(info, flt.patient_id) if flt.patient_id else None,
    )
    limit, key = keyset_position(first, after)
    page = await CareRepository(ctx.session).follow_up_page(scope, criteria, limit, key)
    ctx.trail.returned(Action.LIST, sorted({r.patient_id for r in page.rows}))
    return keyset_connection(page, [FollowUp.of(r) for r in page.rows])


async def create_follow_up(
    info: Info,
    patient_id: strawberry.ID,
    kind: FollowUpKind,  # type: ignore[valid-type]
    due_at: datetime,
    assignee_id: strawberry.ID | None = None,
) -> FollowUp:
    ctx = info.context
    patient = await _patient(info, patient_id, "followups", "patientId")
    assignee = await _staff_id(info, assignee_id, "assigneeId")
    task = follow_ups.create(ctx.session, patient, str(kind), to_utc(due_at, "dueAt"), assignee)
    await ctx.session.flush()
    ctx.trail.changed(Action.UPDATE, [patient.id])
    return FollowUp.of(task)


async def complete_follow_up(info: Info, id: strawberry.ID, outcome: str) -> FollowUp:
    task, _patient_row = await _owned(info, pm.FollowUp, id, "FollowUp", "followups")
    follow_ups.close(task, pm.FollowUpStatus.DONE, outcome)
    await info.context.session.flush()
    return FollowUp.of(task)


async def cancel_follow_up(info: Info, id: strawberry.ID, reason: str = "") -> FollowUp:
    task, _patient_row = await _owned(info, pm.FollowUp, id, "FollowUp", "followups")
    follow_ups.close(task, pm.FollowUpStatus.CANCELLED, reason)
    await info.context.session.flush()
    return FollowUp.of(task)


async def follow_up_rules(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[FollowUpRule]:
    ctx = info.context
    require(await ctx.principal(), "followups", "read")
    found = [
        (
            (str(s.trigger),),
            FollowUpRule(trigger=s.trigger, delay_days=s.delay_days, active=s.active),
        )
        for s in await follow_ups.rule_settings(ctx.session)
    ]
    return held_connection(found, 1, first, after)


async def set_follow_up_rule(
    info: Info,
    trigger: FollowUpTrigger,  # type: ignore[valid-type]
    delay_days: int,
    active: bool = True,
) -> FollowUpRule:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "followups", "write")
    require(
        principal, "patients:chain", "write", "follow-up rules are set for the whole chain, by HQ"
    )
    s = await follow_ups.set_rule(ctx.session, cm.FollowUpTrigger(trigger), delay_days, active)
    return FollowUpRule(trigger=s.trigger, delay_days=s.delay_days, active=s.active)


# --- metrics ---


async def metrics(
    info: Info,
    from_: Annotated[datetime, strawberry.argument(name="from", description="Start (inclusive).")],
    to: Annotated[
        datetime, strawberry.argument(description="End (exclusive); at most 366 days on.")
    ],
    branch_id: strawberry.ID | None = None,
) -> ChainMetrics:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "metrics", "read")
    scope = require_patient_scope(principal, ctx.trail, "read", Action.LIST)
    since, until = to_utc(from_, "from"), to_utc(to, "to")
    if not since < until <= since + timedelta(days=MAX_METRIC_DAYS):
        raise BadInput("the period runs forward, at most 366 days", field="to")
    branch = parse_global_id(branch_id, "Branch", "branchId") if branch_id else None
    figures = await chain_figures(ctx.session, scope, since, until, branch)
    branches = {b.id: b for b in await BranchService(ctx.session).by_ids(list(figures.by_branch))}
    regions = await by_region(ctx.session, figures.by_branch.items(), Figures, Figures.add)
    return ChainMetrics(
        since=since,
        until=until,
        branch_id=branch,
        total=ConversionFigures(_f=figures.total),
        by_region=[
            RegionFigures(region=Region.of(r), figures=ConversionFigures(_f=f)) for r, f in regions
        ],
        by_branch=[
            BranchFigures(branch=Branch.of(branches[b]), figures=ConversionFigures(_f=f))
            for b, f in sorted(figures.by_branch.items(), key=lambda kv: branches[kv[0]].name)
        ],
    )
