"""The chain's conversion metrics per branch and period, in SQL, within the caller's scope.

Every figure is attributed to the patient's home branch, so branch figures add up to the
chain's. The period is [since, until). Definitions (also in the README):

- leads: patients who joined in the period; visited_leads: those of them with an arrived
  visit (at any time up to now). Lead → visit conversion = visited_leads / leads.
- first_visits: patients whose first visit (初诊) arrived in the period; converted_visitors:
  those of them with a paid order at or after that visit. Visit → deal = converted / first.
- visitors: patients with an arrived visit in the period; return_visitors: those of them with
  an arrived return visit (复诊) in the period. Return-visit rate = return / visitors.
- buyers: patients with an order paid in the period; repeat_buyers: those of them whose paid
  order in the period was not their first (复购). Repurchase rate = repeat / buyers.
- referred_leads: leads of the period who came by referral. Referral rate = referred / leads.
- revenue_fen: orders paid in the period, net of their refunds; referred_revenue_fen: the
  part paid by referred patients.
- follow_ups_due: follow-ups due in the period, not cancelled; follow_ups_done: those done.
  Follow-up completion = done / due.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import ColumnElement, and_, distinct, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import Order, OrderStatus, Visit, VisitStatus
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.pool.models import FollowUp, FollowUpStatus
from domain.referrals.models import Referral

PAID = (OrderStatus.PAID, OrderStatus.REFUNDED)


@dataclass
class Figures:
    leads: int = 0
    visited_leads: int = 0
    first_visits: int = 0
    converted_visitors: int = 0
    visitors: int = 0
    return_visitors: int = 0
    buyers: int = 0
    repeat_buyers: int = 0
    referred_leads: int = 0
    revenue_fen: int = 0
    referred_revenue_fen: int = 0
    follow_ups_due: int = 0
    follow_ups_done: int = 0

    def add(self, other: Figures) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class ChainFigures:
    total: Figures
    by_branch: dict[uuid.UUID, Figures]


async def chain_figures(
    session: AsyncSession,
    scope: PatientScope,
    since: datetime,
    until: datetime,
    branch_id: uuid.UUID | None = None,
) -> ChainFigures:
    live: list[ColumnElement[bool]] = [scope.clause(), Patient.merged_into_id.is_(None)]
    if branch_id is not None:
        live.append(Patient.home_branch_id == branch_id)
    branch = Patient.home_branch_id
    by_branch: dict[uuid.UUID, Figures] = defaultdict(Figures)

    async def put(stmt: object, *names: str) -> None:
        for row in await session.execute(stmt):  # type: ignore[call-overload]
            for name, value in zip(names, row[1:], strict=True):
                setattr(by_branch[row[0]], name, int(value or 0))

    arrived = and_(Visit.patient_id == Patient.id, Visit.status == VisitStatus.ARRIVED)
    joined = and_(Patient.created_at >= since, Patient.created_at < until)
    referred = exists().where(Referral.referred_id == Patient.id)

    await put(
        select(
            branch,
            func.count(),
            func.count(distinct(Patient.id)).filter(exists().where(arrived)),
            func.count(distinct(Patient.id)).filter(referred),
        )
        .where(*live, joined)
        .group_by(branch),
        "leads",
        "visited_leads",
        "referred_leads",
    )

    first = (
        select(Visit.patient_id, Visit.arrived_at)
        .where(
            Visit.is_first.is_(True),
            Visit.arrived_at >= since,
            Visit.arrived_at < until,
            Visit.status == VisitStatus.ARRIVED,
        )
        .subquery("first_visit")
    )
    paid_after = exists().where(
        Order.patient_id == first.c.patient_id,
        Order.status.in_(PAID),
        Order.paid_at >= first.c.arrived_at,
    )
    await put(
        select(
            branch,
            func.count(distinct(first.c.patient_id)),
            func.count(distinct(first.c.patient_id)).filter(paid_after),
        )
        .join(first, first.c.patient_id == Patient.id)
        .where(*live)
        .group_by(branch),
        "first_visits",
        "converted_visitors",
    )

    in_period = and_(Visit.arrived_at >= since, Visit.arrived_at < until)
    await put(
        select(
            branch,
            func.count(distinct(Visit.patient_id)),
            func.count(distinct(Visit.patient_id)).filter(Visit.is_first.is_(False)),
        )
        .join(Patient, Patient.id == Visit.patient_id)
        .where(*live, Visit.status == VisitStatus.ARRIVED, in_period)
        .group_by(branch),
        "visitors",
        "return_visitors",
    )

    net = Order.total_fen - Order.refunded_fen
    await put(
        select(
            branch,
            func.count(distinct(Order.patient_id)),
            func.count(distinct(Order.patient_id)).filter(Order.is_first.is_(False)),
            func.sum(net),
            func.sum(net).filter(exists().where(Referral.referred_id == Order.patient_id)),
        )
        .join(Patient, Patient.id == Order.patient_id)
        .where(*live, Order.status.in_(PAID), Order.paid_at >= since, Order.paid_at < until)
        .group_by(branch),
        "buyers",
        "repeat_buyers",
        "revenue_fen",
        "referred_revenue_fen",
    )

    await put(
        select(
            branch,
            func.count(),
            func.count().filter(FollowUp.status == FollowUpStatus.DONE),
        )
        .join(Patient, Patient.id == FollowUp.patient_id)
        .where(
            *live,
            FollowUp.status != FollowUpStatus.CANCELLED,
            FollowUp.due_at >= since,
            FollowUp.due_at < until,
        )
        .group_by(branch),
        "follow_ups_due",
        "follow_ups_done",
    )

    total = Figures()
    for figures in by_branch.values():
        total.add(figures)
    return ChainFigures(total=total, by_branch=dict(by_branch))
