"""The chain's conversion metrics per branch and period, within the caller's scope, counted
in SQL (`CareRepository.conversion_rows` and `follow_up_rows`).

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
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.repository import (
    CONVERSION_FIGURES,
    FOLLOW_UP_FIGURES,
    CareRepository,
)
from domain.patients.scope import PatientScope


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
    repo = CareRepository(session)
    await repo.serial_plans()
    by_branch: dict[uuid.UUID, Figures] = defaultdict(Figures)

    def put(rows: Sequence[Row[Any]], names: tuple[str, ...]) -> None:
        for row in rows:
            for name, value in zip(names, row[1:], strict=True):
                setattr(by_branch[row[0]], name, int(value or 0))

    put(await repo.conversion_rows(scope, since, until, branch_id), CONVERSION_FIGURES)
    put(await repo.follow_up_rows(scope, since, until, branch_id), FOLLOW_UP_FIGURES)

    total = Figures()
    for figures in by_branch.values():
        total.add(figures)
    return ChainFigures(total=total, by_branch=dict(by_branch))
