"""Per-request batch loaders for branches and staff (one query per batch, never N+1)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from auth.models import StaffUser
from auth.policy import roles_of_users
from auth.staff import StaffService
from auth.trail import AccessTrail
from domain.tenants.branches import BranchService
from domain.tenants.models import Branch, Region


def branch_loader(session: AsyncSession) -> DataLoader[uuid.UUID, Branch | None]:
    async def load(ids: Sequence[uuid.UUID]) -> list[Branch | None]:
        rows = await BranchService(session).by_ids(ids)
        found = {b.id: b for b in rows}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def staff_loader(session: AsyncSession) -> DataLoader[uuid.UUID, StaffUser | None]:
    async def load(ids: Sequence[uuid.UUID]) -> list[StaffUser | None]:
        rows = await StaffService(session, AccessTrail()).by_ids(ids)
        found = {s.id: s for s in rows}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def region_loader(session: AsyncSession) -> DataLoader[uuid.UUID, Region | None]:
    async def load(ids: Sequence[uuid.UUID]) -> list[Region | None]:
        found = {r.id: r for r in await BranchService(session).regions(ids)}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def branch_region_loader(session: AsyncSession) -> DataLoader[uuid.UUID, Region | None]:
    """A branch's region (or None)."""

    async def load(ids: Sequence[uuid.UUID]) -> list[Region | None]:
        service = BranchService(session)
        region_of = await service.regions_of(ids)
        found = {r.id: r for r in await service.regions(list(set(region_of.values())))}
        return [found.get(region_of[i]) if i in region_of else None for i in ids]

    return DataLoader(load_fn=load)


Places = tuple[set[uuid.UUID], set[uuid.UUID]]


def places_loader(session: AsyncSession) -> DataLoader[uuid.UUID, Places]:
    """A staff member's branch ids and region ids."""

    async def load(ids: Sequence[uuid.UUID]) -> list[Places]:
        branches, regions = await StaffService(session, AccessTrail()).places_of(ids)
        return [(branches[i], regions[i]) for i in ids]

    return DataLoader(load_fn=load)


def pending_loader(session: AsyncSession) -> DataLoader[uuid.UUID, bool]:
    async def load(ids: Sequence[uuid.UUID]) -> list[bool]:
        pending = await StaffService(session, AccessTrail()).pending_ids(ids)
        return [i in pending for i in ids]

    return DataLoader(load_fn=load)


def roles_loader(session: AsyncSession) -> DataLoader[uuid.UUID, list[str]]:
    async def load(ids: Sequence[uuid.UUID]) -> list[list[str]]:
        found = await roles_of_users(session, ids)
        return [found[i] for i in ids]

    return DataLoader(load_fn=load)
