"""Satisfaction figures per branch and doctor of the visit, for a period, in SQL, within the
caller's patient scope.

Definitions (also in the README): the surveys of the period are the links delivered in it
(`sent_at` in [since, until)); `answered` those of them answered (at any time up to now);
response rate = answered / sent. Average rating = the mean of every 1-5 rating answer of those
answers. NPS = (promoters - detractors) / NPS answers x 100, where an answer's NPS is its first
0-10 question: promoters 9-10, passives 7-8, detractors 0-6.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.patients.scope import PatientScope
from domain.surveys.repository import SurveyRepository


@dataclass
class Figures:
    sent: int = 0
    answered: int = 0
    rating_sum: int = 0
    rating_count: int = 0
    nps_answers: int = 0
    promoters: int = 0
    detractors: int = 0

    def add(self, other: Figures) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def response_rate(self) -> float | None:
        return self.answered / self.sent if self.sent else None

    @property
    def average_rating(self) -> float | None:
        return self.rating_sum / self.rating_count if self.rating_count else None

    @property
    def nps(self) -> float | None:
        if not self.nps_answers:
            return None
        return 100 * (self.promoters - self.detractors) / self.nps_answers


@dataclass(frozen=True)
class Satisfaction:
    total: Figures
    by_branch: dict[uuid.UUID, Figures]
    by_doctor: dict[uuid.UUID, Figures]  # visits with no doctor are in no doctor's figures


async def satisfaction(
    session: AsyncSession,
    scope: PatientScope,
    since: datetime,
    until: datetime,
    branch_id: uuid.UUID | None = None,
) -> Satisfaction:
    """`branch_id`: only visits at that branch."""
    rows = await SurveyRepository(session).satisfaction(scope, since, until, branch_id)
    total = Figures()
    by_branch: dict[uuid.UUID, Figures] = defaultdict(Figures)
    by_doctor: dict[uuid.UUID, Figures] = defaultdict(Figures)
    for branch_id, doctor_id, *values in rows:
        f = Figures(*(int(v or 0) for v in values))
        total.add(f)
        by_branch[branch_id].add(f)
        if doctor_id is not None:
            by_doctor[doctor_id].add(f)
    return Satisfaction(total, dict(by_branch), dict(by_doctor))
