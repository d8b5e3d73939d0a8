"""Per-request batch loader: the reach of every campaign on a page in one set of queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from domain.campaigns.reach import Reach, reach


def reach_loader(session: AsyncSession) -> DataLoader[uuid.UUID, Reach]:
    async def load(ids: Sequence[uuid.UUID]) -> list[Reach]:
        found = await reach(session, ids)
        return [found[i] for i in ids]

    return DataLoader(load_fn=load)
