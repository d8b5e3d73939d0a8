"""Per-request batch loaders for branches and staff (one query per batch, never N+1)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from auth.models import StaffUser
from domain.tenants.models import Branch


def branch_loader(session: AsyncSession) -> DataLoader[uuid.UUID, Branch | None]:
    async def load(ids: Sequence[uuid.UUID]) -> list[Branch | None]:
        rows = await session.scalars(select(Branch).where(Branch.id.in_(sorted(set(ids)))))
        found = {b.id: b for b in rows}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def staff_loader(session: AsyncSession) -> DataLoader[uuid.UUID, StaffUser | None]:
    async def load(ids: Sequence[uuid.UUID]) -> list[StaffUser | None]:
        rows = await session.scalars(select(StaffUser).where(StaffUser.id.in_(sorted(set(ids)))))
        found = {s.id: s for s in rows}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)
