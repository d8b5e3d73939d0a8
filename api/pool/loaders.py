"""Per-request batch loaders for the pool: each patient's tags in one query per batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from domain.pool.models import Tag, TagGroup
from domain.pool.repository import PoolRepository


def patient_tags_loader(
    session: AsyncSession,
) -> DataLoader[uuid.UUID, list[tuple[Tag, TagGroup]]]:
    async def load(ids: Sequence[uuid.UUID]) -> list[list[tuple[Tag, TagGroup]]]:
        rows = await PoolRepository(session).tags_of_patients(ids)
        found: dict[uuid.UUID, list[tuple[Tag, TagGroup]]] = {}
        for pid, tag, group in rows:
            found.setdefault(pid, []).append((tag, group))
        return [found.get(i, []) for i in ids]

    return DataLoader(load_fn=load)
