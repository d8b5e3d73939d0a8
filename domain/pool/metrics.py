"""Pool metrics for HQ, computed in SQL within the caller's scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    live = (scope.clause(), Patient.erased_at.is_(None), Patient.merged_into_id.is_(None))

    async def grouped(column: ColumnElement[object]) -> list[Count]:
        rows = await session.execute(
            select(column, func.count()).where(*live).group_by(column).order_by(column)
        )
        return [Count(str(k), int(n)) for k, n in rows]

    total = int(await session.scalar(select(func.count()).select_from(Patient).where(*live)) or 0)
    since = datetime.now(UTC) - timedelta(days=366)
    month = month_of(session, Patient.created_at)
    channel_rows = await session.execute(
        select(Patient.source_channel, month, func.count())
        .where(*live, Patient.created_at >= since)
        .group_by(Patient.source_channel, month)
        .order_by(month, Patient.source_channel)
    )
    bucket = (Patient.lead_score // 20) * 20
    return PoolFigures(
        total=total,
        by_tier=await grouped(Patient.pool_tier),
        by_stage=await grouped(Patient.lifecycle_stage),
        by_branch=await grouped(Patient.home_branch_id),
        new_by_channel=[Count(str(c), int(n), str(m)) for c, m, n in channel_rows],
        score_distribution=await grouped(bucket),
    )
