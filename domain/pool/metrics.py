"""Pool metrics for HQ, computed in SQL within the caller's scope."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.patients.models import Patient
from domain.patients.scope import PatientScope


@dataclass(frozen=True)
class Count:
    key: str
    count: int
    period: str | None = None


@dataclass(frozen=True)
class PoolFigures:
    total: int
    by_tier: list[Count]
    by_stage: list[Count]
    by_branch: list[Count]
    new_by_channel: list[Count]
    score_distribution: list[Count]


def month_of(session: AsyncSession, column: ColumnElement[datetime]) -> ColumnElement[str]:
    """YYYY-MM of a timestamp, in each database's own words."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


async def pool_figures(session: AsyncSession, scope: PatientScope) -> PoolFigures:
    """Two passes over the pool, not one per breakdown: the four breakdowns come from one
    grouping by all four keys (a few hundred groups), summed here."""
    live = (scope.clause(), Patient.erased_at.is_(None), Patient.merged_into_id.is_(None))
    bucket = (Patient.lead_score // 20) * 20
    keys = (Patient.pool_tier, Patient.lifecycle_stage, Patient.home_branch_id, bucket)
    groups = (await session.execute(select(*keys, func.count()).where(*live).group_by(*keys))).all()

    def summed(i: int) -> list[Count]:
        sums: dict[Any, int] = defaultdict(int)
        for row in groups:
            sums[row[i]] += int(row[-1])
        return [Count(str(k), n) for k, n in sorted(sums.items())]

    since = datetime.now(UTC) - timedelta(days=366)
    month = month_of(session, Patient.created_at)
    channel_rows = await session.execute(
        select(Patient.source_channel, month, func.count())
        .where(*live, Patient.created_at >= since)
        .group_by(Patient.source_channel, month)
        .order_by(month, Patient.source_channel)
    )
    return PoolFigures(
        total=sum(int(row[-1]) for row in groups),
        by_tier=summed(0),
        by_stage=summed(1),
        by_branch=summed(2),
        new_by_channel=[Count(str(c), int(n), str(m)) for c, m, n in channel_rows],
        score_distribution=summed(3),
    )
