"""Pool metrics for HQ, computed in SQL (`PoolRepository`) within the caller's scope."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.patients.scope import PatientScope
from domain.pool.repository import PoolRepository


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


async def pool_figures(session: AsyncSession, scope: PatientScope) -> PoolFigures:
    """Two passes over the pool, not one per breakdown: the four breakdowns come from one
    grouping by all four keys (a few hundred groups), summed here."""
    repo = PoolRepository(session)
    groups = await repo.pool_groups(scope)

    def summed(i: int) -> list[Count]:
        sums: dict[Any, int] = defaultdict(int)
        for row in groups:
            sums[row[i]] += int(row[-1])
        return [Count(str(k), n) for k, n in sorted(sums.items())]

    since = datetime.now(UTC) - timedelta(days=366)
    channel_rows = await repo.new_by_channel(scope, since)
    return PoolFigures(
        total=sum(int(row[-1]) for row in groups),
        by_tier=summed(0),
        by_stage=summed(1),
        by_branch=summed(2),
        new_by_channel=[Count(str(c), int(n), str(m)) for c, m, n in channel_rows],
        score_distribution=summed(3),
    )
