"""Figures per branch rolled up per region (`byRegion` beside `byBranch`). Every figure
belongs to a patient's home branch, and a branch to at most one region, so a region's
figures are the sum of its branches'; branches in no region are in no region's sum."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from domain.tenants.branches import BranchService
from domain.tenants.models import Region

T = TypeVar("T")


async def by_region(
    session: AsyncSession,
    by_branch: Iterable[tuple[uuid.UUID, T]],
    empty: Callable[[], T],
    add: Callable[[T, T], None],
) -> list[tuple[Region, T]]:
    """(region, summed figures) for each region with a branch in `by_branch`, by name."""
    items = list(by_branch)
    service = BranchService(session)
    region_of = await service.regions_of([b for b, _ in items])
    sums: dict[uuid.UUID, T] = {}
    for branch_id, figures in items:
        region_id = region_of.get(branch_id)
        if region_id is not None:
            add(sums.setdefault(region_id, empty()), figures)
    regions = await service.regions(list(sums))
    return [(r, sums[r.id]) for r in regions]
