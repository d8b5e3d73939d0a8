"""The reads behind the campaigns' GraphQL fields (audience and sending keep their own SQL in
domain.campaigns.audience and domain.campaigns.sender)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns.models import Campaign


class CampaignRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def campaign(self, campaign_id: uuid.UUID) -> Campaign | None:
        return await self.session.scalar(select(Campaign).where(Campaign.id == campaign_id))

    @staticmethod
    def every_campaign() -> Select[Any]:
        """The bound tenant's campaigns, as a statement to page."""
        return select(Campaign)
