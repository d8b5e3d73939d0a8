"""All SQL of care (visits, orders, follow-ups and the chain's conversion metrics): the reads
behind its GraphQL fields, each row joined to its patient and kept to the caller's
`PatientScope`, lists paged by (time, id), an order page's lines and refunds; the counts and
sums the services decide by; the follow-up rules; and the metrics' per-branch figures."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, case, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import (
    FollowUpRule,
    FollowUpTrigger,
    Order,
    OrderLine,
    OrderStatus,
    Refund,
    Visit,
    VisitStatus,
)
from domain.paging import Keyset, KeysetPage, keyset_rows
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.pool.models import FollowUp, FollowUpStatus
from domain.referrals.models import Referral
from domain.tenants.models import Branch

# The orders that count as paid: paid, and refunded (a refund keeps the deal, net of it).
PAID_STATES = (OrderStatus.PAID, OrderStatus.REFUNDED)

# The figures `conversion_rows` and `follow_up_rows` give per branch, in their columns' order
# (after the branch id); see domain.care.metrics for their definitions.
CONVERSION_FIGURES = (
    "leads",
    "visited_leads",
    "referred_leads",
    "first_visits",
    "converted_visitors",
    "visitors",
    "return_visitors",
    "buyers",
    "repeat_buyers",
    "revenue_fen",
    "referred_revenue_fen",
)
FOLLOW_UP_FIGURES = ("follow_ups_due", "follow_ups_done")


@dataclass(frozen=True)
class VisitCriteria:
    patient_id: uuid.UUID | None = None
    branch_id: uuid.UUID | None = None
    doctor_id: uuid.UUID | None = None
    statuses: Sequence[str] = ()
    since: datetime | None = None  # booked at or after
    until: datetime | None = None  # booked before


@dataclass(frozen=True)
class OrderCriteria:
    patient_id: uuid.UUID | None = None
    branch_id: uuid.UUID | None = None
    statuses: Sequence[str] = ()


@dataclass(frozen=True)
class FollowUpCriteria:
    statuses: Sequence[str]
    assignee_id: uuid.UUID | None = None
    due_before: Sequence[datetime] = ()  # each bound applies
    kinds: Sequence[str] = ()
    patient_id: uuid.UUID | None = None


class CareRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- scope ---

    @staticmethod
    def _listed(model: Any, scope: PatientScope) -> Select[Any]:
        return select(model).join(Patient, Patient.id == model.patient_id).where(scope.clause())

    async def owned(
        self, model: Any, row_id: uuid.UUID, scope: PatientScope
    ) -> tuple[Any, Patient] | None:
        """A visit, order or follow-up with its patient, if the patient is within `scope`."""
        row = (
            await self.session.execute(
                select(model, Patient)
                .join(Patient, Patient.id == model.patient_id)
                .where(model.id == row_id, scope.clause())
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def one(self, model: Any, row_id: uuid.UUID, scope: PatientScope) -> Any:
        """One visit, order or follow-up by id, under the same scope as its list."""
        return await self.session.scalar(self._listed(model, scope).where(model.id == row_id))

    # --- lists and single rows (GraphQL) ---

    def _visits(self, scope: PatientScope, c: VisitCriteria) -> Select[Any]:
        """The visits `c` asks for within `scope`, as a statement to page."""
        stmt = self._listed(Visit, scope)
        if c.patient_id is not None:
            stmt = stmt.where(Visit.patient_id == c.patient_id)
        if c.branch_id is not None:
            stmt = stmt.where(Visit.branch_id == c.branch_id)
        if c.doctor_id is not None:
            stmt = stmt.where(Visit.doctor_id == c.doctor_id)
        if c.statuses:
            stmt = stmt.where(Visit.status.in_(list(c.statuses)))
        if c.since is not None:
            stmt = stmt.where(Visit.scheduled_at >= c.since)
        if c.until is not None:
            stmt = stmt.where(Visit.scheduled_at < c.until)
        return stmt

    def _orders(self, scope: PatientScope, c: OrderCriteria) -> Select[Any]:
        """The orders `c` asks for within `scope`, as a statement to page."""
        stmt = self._listed(Order, scope)
        if c.patient_id is not None:
            stmt = stmt.where(Order.patient_id == c.patient_id)
        if c.branch_id is not None:
            stmt = stmt.where(Order.branch_id == c.branch_id)
        if c.statuses:
            stmt = stmt.where(Order.status.in_(list(c.statuses)))
        return stmt

    def _follow_ups(self, scope: PatientScope, c: FollowUpCriteria) -> Select[Any]:
        """The follow-ups `c` asks for within `scope`, as a statement to page."""
        stmt = self._listed(FollowUp, scope).where(FollowUp.status.in_(list(c.statuses)))
        if c.assignee_id is not None:
            stmt = stmt.where(FollowUp.assignee_id == c.assignee_id)
        for bound in c.due_before:
            stmt = stmt.where(FollowUp.due_at < bound)
        if c.kinds:
            stmt = stmt.where(FollowUp.kind.in_(list(c.kinds)))
        if c.patient_id is not None:
            stmt = stmt.where(FollowUp.patient_id == c.patient_id)
        return stmt

    async def visit_page(
        self, scope: PatientScope, c: VisitCriteria, limit: int, after: Keyset | None
    ) -> KeysetPage[Visit]:
        """A page of `visits` by booked time."""
        stmt = self._visits(scope, c)
        return await keyset_rows(self.session, stmt, Visit, Visit.scheduled_at, limit, after)

    async def order_page(
        self, scope: PatientScope, c: OrderCriteria, limit: int, after: Keyset | None
    ) -> KeysetPage[Order]:
        """A page of `orders` by creation time."""
        stmt = self._orders(scope, c)
        return await keyset_rows(self.session, stmt, Order, Order.created_at, limit, after)

    async def follow_up_page(
        self, scope: PatientScope, c: FollowUpCriteria, limit: int, after: Keyset | None
    ) -> KeysetPage[FollowUp]:
        """A page of `follow_ups` by due time."""
        stmt = self._follow_ups(scope, c)
        return await keyset_rows(self.session, stmt, FollowUp, FollowUp.due_at, limit, after)

    async def order_details(
        self, order_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, list[OrderLine]], dict[uuid.UUID, list[Refund]]]:
        """Lines (by line number) and refunds (by time) of the orders: two queries."""
        lines: dict[uuid.UUID, list[OrderLine]] = {i: [] for i in order_ids}
        refunds: dict[uuid.UUID, list[Refund]] = {i: [] for i in order_ids}
        if not order_ids:
            return lines, refunds
        ids = list(order_ids)
        for line in await self.session.scalars(
            select(OrderLine).where(OrderLine.order_id.in_(ids)).order_by(OrderLine.line_no)
        ):
            lines[line.order_id].append(line)
        for refund in await self.session.scalars(
            select(Refund).where(Refund.order_id.in_(ids)).order_by(Refund.refunded_at)
        ):
            refunds[refund.order_id].append(refund)
        return lines, refunds

    # --- visits ---

    async def arrived_visit_count(self, patient: Patient) -> int:
        """How many of the patient's visits arrived (none: the next arrival is the first)."""
        stmt = (
            select(func.count())
            .select_from(Visit)
            .where(Visit.patient_id == patient.id, Visit.status == VisitStatus.ARRIVED)
        )
        return int(await self.session.scalar(stmt) or 0)

    # --- orders ---

    async def branch_exists(self, branch_id: uuid.UUID) -> bool:
        stmt = select(Branch.id).where(Branch.id == branch_id)
        return await self.session.scalar(stmt) is not None

    async def paid_order_count(self, patient: Patient) -> int:
        """How many of the patient's orders were paid (none: the next payment is the first)."""
        stmt = (
            select(func.count())
            .select_from(Order)
            .where(Order.patient_id == patient.id, Order.status.in_(PAID_STATES))
        )
        return int(await self.session.scalar(stmt) or 0)

    async def paid_net_fen(self, patient: Patient) -> int:
        """The patient's paid orders net of their refunds, summed in SQL (see OrderService)."""
        stmt = select(func.coalesce(func.sum(Order.total_fen - Order.refunded_fen), 0)).where(
            Order.patient_id == patient.id, Order.status.in_(PAID_STATES)
        )
        return int(await self.session.scalar(stmt) or 0)

    # --- follow-ups ---

    async def follow_up_rules(self) -> Sequence[FollowUpRule]:
        """The rules stored (a trigger without a row keeps its default)."""
        return (await self.session.scalars(select(FollowUpRule))).all()

    async def follow_up_rule(self, trigger: FollowUpTrigger) -> FollowUpRule | None:
        stmt = select(FollowUpRule).where(FollowUpRule.trigger == trigger)
        return await self.session.scalar(stmt)

    async def follow_up_made(self, dedupe_key: str) -> bool:
        """Whether a task with this dedupe key exists (rules and callbacks make theirs once)."""
        stmt = select(FollowUp.id).where(FollowUp.dedupe_key == dedupe_key)
        return await self.session.scalar(stmt) is not None

    # --- metrics ---

    async def serial_plans(self) -> None:
        """No parallel plans for the rest of this transaction, on PostgreSQL."""
        if self.session.get_bind().dialect.name == "postgresql":
            # A parallel plan has every worker rebuild the whole per-patient visit and order
            # figures below: no faster, three times the CPU (measured at concurrency 8: 4
            # requests/s parallel, 6 serial). For this transaction only.
            await self.session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))

    @staticmethod
    def _live(scope: PatientScope, branch_id: uuid.UUID | None) -> list[ColumnElement[bool]]:
        """The patients the metrics count: in `scope`, not merged, of one home branch if given."""
        live: list[ColumnElement[bool]] = [scope.clause(), Patient.merged_into_id.is_(None)]
        if branch_id is not None:
            live.append(Patient.home_branch_id == branch_id)
        return live

    async def conversion_rows(
        self,
        scope: PatientScope,
        since: datetime,
        until: datetime,
        branch_id: uuid.UUID | None,
    ) -> Sequence[Row[Any]]:
        """(home branch, *CONVERSION_FIGURES) per branch for the period [since, until)."""
        branch = Patient.home_branch_id
        # One statement for every figure but the follow-ups: visits and orders are each read
        # once and counted per patient (GROUP BY patient, from covering indexes), then joined to
        # the patients once and counted per branch. Cheaper than COUNT(DISTINCT …) and no
        # per-row subquery. A patient has at most one referrer, so joining the referrals adds
        # no rows.
        joined = and_(Patient.created_at >= since, Patient.created_at < until)
        referred = Referral.referred_id.is_not(None)
        visit_in_period = and_(Visit.arrived_at >= since, Visit.arrived_at < until)
        seen = (  # every arrived visit (a lead counts as visited whenever it came)
            select(
                Visit.patient_id,
                func.min(Visit.arrived_at)
                .filter(visit_in_period, Visit.is_first.is_(True))
                .label("first_at"),
                func.max(case((visit_in_period, 1), else_=0)).label("came"),
                func.max(
                    case((and_(visit_in_period, Visit.is_first.is_(False)), 1), else_=0)
                ).label("returned"),
            )
            .where(Visit.status == VisitStatus.ARRIVED)
            .group_by(Visit.patient_id)
            .subquery("seen")
        )
        paid_in_period = and_(Order.paid_at >= since, Order.paid_at < until)
        paid = (
            select(
                Order.patient_id,
                func.max(Order.paid_at).label("last_paid_at"),  # any time: a deal after the visit
                func.count().filter(paid_in_period).label("orders"),
                func.max(case((Order.is_first.is_(False), 1), else_=0))
                .filter(paid_in_period)
                .label("repeat"),
                func.sum(Order.total_fen - Order.refunded_fen).filter(paid_in_period).label("fen"),
            )
            .where(Order.status.in_(PAID_STATES))
            .group_by(Order.patient_id)
            .subquery("paid")
        )
        came = seen.c.came == 1
        bought = paid.c.orders > 0
        stmt = (
            select(
                branch,
                func.count().filter(joined),
                func.count().filter(joined, seen.c.patient_id.is_not(None)),
                func.count().filter(joined, referred),
                func.count().filter(seen.c.first_at.is_not(None)),
                func.count().filter(paid.c.last_paid_at >= seen.c.first_at),
                func.count().filter(came),
                func.sum(seen.c.returned),
                func.count().filter(bought),
                func.sum(paid.c.repeat),
                func.sum(paid.c.fen),
                func.sum(paid.c.fen).filter(referred),
            )
            .outerjoin(seen, seen.c.patient_id == Patient.id)
            .outerjoin(paid, paid.c.patient_id == Patient.id)
            .outerjoin(Referral, Referral.referred_id == Patient.id)
            .where(*self._live(scope, branch_id), or_(joined, came, bought))
            .group_by(branch)
        )
        return (await self.session.execute(stmt)).all()

    async def follow_up_rows(
        self,
        scope: PatientScope,
        since: datetime,
        until: datetime,
        branch_id: uuid.UUID | None,
    ) -> Sequence[Row[Any]]:
        """(home branch, *FOLLOW_UP_FIGURES) per branch: follow-ups due in [since, until), not
        cancelled, and those of them done."""
        branch = Patient.home_branch_id
        stmt = (
            select(
                branch,
                func.count(),
                func.count().filter(FollowUp.status == FollowUpStatus.DONE),
            )
            .join(Patient, Patient.id == FollowUp.patient_id)
            .where(
                *self._live(scope, branch_id),
                FollowUp.status != FollowUpStatus.CANCELLED,
                FollowUp.due_at >= since,
                FollowUp.due_at < until,
            )
            .group_by(branch)
        )
        return (await self.session.execute(stmt)).all()
