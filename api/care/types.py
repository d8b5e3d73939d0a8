"""GraphQL types of visits, orders, follow-ups and the chain's conversion metrics.

Money is `Decimal` (yuan, two places, sent as a string): exact, never a float."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.types import Info

from api.ids import to_global_id
from api.node import Node
from api.patients.loaders import scoped_patient
from api.patients.types import Patient
from api.rows import RowType
from api.surveys.metrics import satisfaction_metrics
from api.surveys.types import SatisfactionMetrics
from api.tenants.loaders import branch_loader, staff_loader
from api.tenants.types import Branch, Region, Staff
from domain.care import models as cm
from domain.care.metrics import Figures
from domain.care.orders import to_yuan
from domain.errors import NotFound
from domain.pool import models as pm

VisitStatus = strawberry.enum(
    cm.VisitStatus, description="BOOKED (预约), ARRIVED (到诊), NO_SHOW (爽约) or CANCELLED."
)
OrderStatus = strawberry.enum(
    cm.OrderStatus,
    description="PENDING, PAID (possibly partly refunded), REFUNDED (in full) or CANCELLED.",
)
FollowUpKind = strawberry.enum(
    pm.FollowUpKind,
    description="QUALIFIED_LEAD_CALL, RETURN_VISIT_REMINDER (复诊提醒), POST_VISIT (诊后回访) "
    "or HEALTH_EDUCATION (健康宣教).",
)
FollowUpStatus = strawberry.enum(pm.FollowUpStatus, description="OPEN, DONE or CANCELLED.")
FollowUpTrigger = strawberry.enum(
    cm.FollowUpTrigger,
    description="VISIT_ARRIVED makes a POST_VISIT task; LEAD_QUALIFIED a QUALIFIED_LEAD_CALL.",
)


async def _branch(info: Info, branch_id: object) -> Branch:
    """A visit's, order's or follow-up's branch: a foreign key every row has, and branches
    are closed, never deleted."""
    row = await info.context.loader("branch", lambda: branch_loader(info.context.session)).load(
        branch_id
    )
    if row is None:
        raise NotFound("no such branch")
    return Branch.of(row)


async def _staff(info: Info, staff_id: object) -> Staff | None:
    if staff_id is None:
        return None
    row = await info.context.loader("staff", lambda: staff_loader(info.context.session)).load(
        staff_id
    )
    return None if row is None else Staff.of(row)


async def _own_patient(info: Info, patient_id: uuid.UUID) -> Patient:
    found = await scoped_patient(info, patient_id)
    if found is None:  # reached by a path that does not scope its rows: a bug of ours
        raise NotFound("no such patient")
    return found


@strawberry.type(description="An appointment (预约) and, once the patient came, the visit.")
class Visit(RowType, Node):
    _row: strawberry.Private[cm.Visit]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Visit", self._row.id))

    @strawberry.field(
        description="The patient (always within your scope: the lists and fields that lead "
        "here show only rows of patients you may read)."
    )
    async def patient(self, info: Info) -> Patient:
        return await _own_patient(info, self._row.patient_id)

    @strawberry.field(description="Branch of the visit.")
    async def branch(self, info: Info) -> Branch:
        return await _branch(info, self._row.branch_id)

    @strawberry.field(description="Doctor seeing the patient.")
    async def doctor(self, info: Info) -> Staff | None:
        return await _staff(info, self._row.doctor_id)

    scheduled_at: datetime = strawberry.field(description="Booked time.")

    @strawberry.field(description="Status.")
    def status(self) -> VisitStatus:  # type: ignore[valid-type]
        return cm.VisitStatus(self._row.status)

    arrived_at: datetime | None = strawberry.field(description="When the patient arrived.")

    @strawberry.field(
        description="True for the patient's first visit (初诊), false for a return visit (复诊); "
        "null until arrival."
    )
    def is_first_visit(self) -> bool | None:
        return self._row.is_first


@strawberry.type(description="One service line of an order.")
class OrderLine:
    service: str = strawberry.field(description="Service or product.")
    quantity: int = strawberry.field(description="Quantity.")
    unit_price: Decimal = strawberry.field(description="Price per unit, yuan.")


@strawberry.type(description="A refund of part or all of an order.")
class Refund:
    amount: Decimal = strawberry.field(description="Amount refunded, yuan.")
    reason: str = strawberry.field(description="Why.")
    refunded_at: datetime = strawberry.field(description="When.")


@strawberry.type(description="An order (成交): service lines, payment, refunds.")
class Order(RowType, Node):
    _row: strawberry.Private[cm.Order]
    _lines: strawberry.Private[list[cm.OrderLine]]
    _refunds: strawberry.Private[list[cm.Refund]]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Order", self._row.id))

    @strawberry.field(
        description="The patient (always within your scope: the lists and fields that lead "
        "here show only rows of patients you may read)."
    )
    async def patient(self, info: Info) -> Patient:
        return await _own_patient(info, self._row.patient_id)

    @strawberry.field(description="Branch that made the sale.")
    async def branch(self, info: Info) -> Branch:
        return await _branch(info, self._row.branch_id)

    @strawberry.field(description="Status.")
    def status(self) -> OrderStatus:  # type: ignore[valid-type]
        return cm.OrderStatus(self._row.status)

    @strawberry.field(description="Sum of the lines, yuan.")
    def total(self) -> Decimal:
        return to_yuan(self._row.total_fen)

    @strawberry.field(description="Refunded so far, yuan.")
    def refunded(self) -> Decimal:
        return to_yuan(self._row.refunded_fen)

    @strawberry.field(description="Total less refunds, yuan: what the order brought in.")
    def net(self) -> Decimal:
        return to_yuan(self._row.net_fen)

    paid_at: datetime | None = strawberry.field(description="When it was paid.")

    @strawberry.field(
        description="True for the patient's first paid order (conversion), false for a "
        "repurchase (复购); null until paid."
    )
    def is_first_order(self) -> bool | None:
        return self._row.is_first

    @strawberry.field(description="Service lines.")
    def lines(self) -> list[OrderLine]:
        return [
            OrderLine(service=x.service, quantity=x.quantity, unit_price=to_yuan(x.unit_price_fen))
            for x in self._lines
        ]

    @strawberry.field(description="Refunds, oldest first.")
    def refunds(self) -> list[Refund]:
        return [
            Refund(amount=to_yuan(r.amount_fen), reason=r.reason, refunded_at=r.refunded_at)
            for r in self._refunds
        ]


@strawberry.type(description="A follow-up task for staff (回访 / 随访).")
class FollowUp(RowType, Node):
    _row: strawberry.Private[pm.FollowUp]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("FollowUp", self._row.id))

    @strawberry.field(
        description="The patient (always within your scope: the lists and fields that lead "
        "here show only rows of patients you may read)."
    )
    async def patient(self, info: Info) -> Patient:
        return await _own_patient(info, self._row.patient_id)

    @strawberry.field(description="Branch responsible.")
    async def branch(self, info: Info) -> Branch:
        return await _branch(info, self._row.branch_id)

    @strawberry.field(description="Staff member who should do it.")
    async def assignee(self, info: Info) -> Staff | None:
        return await _staff(info, self._row.assignee_id)

    @strawberry.field(description="Kind of task.")
    def kind(self) -> FollowUpKind:  # type: ignore[valid-type]
        return pm.FollowUpKind(self._row.kind)

    @strawberry.field(description="Status.")
    def status(self) -> FollowUpStatus:  # type: ignore[valid-type]
        return pm.FollowUpStatus(self._row.status)

    due_at: datetime = strawberry.field(description="When it is due.")
    outcome: str = strawberry.field(description="What came of it (set when done or cancelled).")

    @strawberry.field(description="True when a rule made it (a visit, a qualified lead).")
    def automatic(self) -> bool:
        return self._row.dedupe_key is not None


@strawberry.type(description="A follow-up rule: the delay after its trigger.")
class FollowUpRule:
    trigger: FollowUpTrigger = strawberry.field(description="What makes the task.")  # type: ignore[valid-type]
    delay_days: int = strawberry.field(description="Days from the trigger to the due date.")
    active: bool = strawberry.field(description="Whether the rule makes tasks.")


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


@strawberry.type(
    description="Conversion figures for a period. Rates are fractions (0.5 = 50%), null when "
    "their base is zero; the README defines each number."
)
class ConversionFigures:
    _f: strawberry.Private[Figures]

    @strawberry.field(description="Patients who joined in the period.")
    def leads(self) -> int:
        return self._f.leads

    @strawberry.field(description="Of those leads, how many have arrived for a visit.")
    def visited_leads(self) -> int:
        return self._f.visited_leads

    @strawberry.field(description="visitedLeads / leads.")
    def lead_to_visit_rate(self) -> float | None:
        return _rate(self._f.visited_leads, self._f.leads)

    @strawberry.field(description="Patients whose first visit (初诊) was in the period.")
    def first_visits(self) -> int:
        return self._f.first_visits

    @strawberry.field(description="Of those, how many paid an order at or after that visit.")
    def converted_visitors(self) -> int:
        return self._f.converted_visitors

    @strawberry.field(description="convertedVisitors / firstVisits.")
    def visit_to_deal_rate(self) -> float | None:
        return _rate(self._f.converted_visitors, self._f.first_visits)

    @strawberry.field(description="Patients with an arrived visit in the period.")
    def visitors(self) -> int:
        return self._f.visitors

    @strawberry.field(description="Of those, how many had a return visit (复诊) in the period.")
    def return_visitors(self) -> int:
        return self._f.return_visitors

    @strawberry.field(description="returnVisitors / visitors.")
    def return_visit_rate(self) -> float | None:
        return _rate(self._f.return_visitors, self._f.visitors)

    @strawberry.field(description="Patients with an order paid in the period.")
    def buyers(self) -> int:
        return self._f.buyers

    @strawberry.field(description="Of those, how many paid a repurchase (复购) in the period.")
    def repeat_buyers(self) -> int:
        return self._f.repeat_buyers

    @strawberry.field(description="repeatBuyers / buyers.")
    def repurchase_rate(self) -> float | None:
        return _rate(self._f.repeat_buyers, self._f.buyers)

    @strawberry.field(description="Leads of the period who came by referral.")
    def referred_leads(self) -> int:
        return self._f.referred_leads

    @strawberry.field(description="referredLeads / leads.")
    def referral_rate(self) -> float | None:
        return _rate(self._f.referred_leads, self._f.leads)

    @strawberry.field(description="Orders paid in the period, net of refunds, yuan.")
    def revenue(self) -> Decimal:
        return to_yuan(self._f.revenue_fen)

    @strawberry.field(description="The part of revenue paid by referred patients, yuan.")
    def referred_revenue(self) -> Decimal:
        return to_yuan(self._f.referred_revenue_fen)

    @strawberry.field(description="Follow-ups due in the period (cancelled ones left out).")
    def follow_ups_due(self) -> int:
        return self._f.follow_ups_due

    @strawberry.field(description="Of those, how many are done.")
    def follow_ups_done(self) -> int:
        return self._f.follow_ups_done

    @strawberry.field(description="followUpsDone / followUpsDue.")
    def follow_up_completion_rate(self) -> float | None:
        return _rate(self._f.follow_ups_done, self._f.follow_ups_due)


@strawberry.type(description="One branch's figures.")
class BranchFigures:
    branch: Branch = strawberry.field(description="The branch (patients' home branch).")
    figures: ConversionFigures = strawberry.field(description="Its figures.")


@strawberry.type(description="One region's figures: the sum of its branches'.")
class RegionFigures:
    region: Region = strawberry.field(description="The region (大区 / 片区).")
    figures: ConversionFigures = strawberry.field(description="Its figures.")


@strawberry.type(description="The chain's conversion metrics for a period, in total and by branch.")
class ChainMetrics:
    since: datetime = strawberry.field(description="Start of the period (inclusive).")
    until: datetime = strawberry.field(description="End of the period (exclusive).")
    total: ConversionFigures = strawberry.field(description="All branches in your scope.")
    # The metrics' branchId, for the fields that resolve later (satisfaction).
    branch_id: strawberry.Private[uuid.UUID | None] = None
    by_branch: list[BranchFigures] = strawberry.field(description="Per branch, by name.")
    by_region: list[RegionFigures] = strawberry.field(
        description="Per region, by name: each the sum of its branches in your scope "
        "(branches in no region are in none)."
    )
    satisfaction: SatisfactionMetrics = strawberry.field(
        resolver=satisfaction_metrics,
        description="Satisfaction surveys of the period: response rate, average rating, NPS, "
        "per branch and doctor of the visit.",
    )
