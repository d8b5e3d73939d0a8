"""The reads behind the referral GraphQL fields that domain.referrals.tree and .service do not
already hold: reward rules and the rewards recorded on a referrer."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.patients.models import Patient
from domain.referrals.models import Reward, RewardRule


class ReferralRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def reward_rules(self) -> Sequence[RewardRule]:
        return (await self.session.scalars(select(RewardRule))).all()

    async def reward_rule(self, rule_id: uuid.UUID) -> RewardRule | None:
        return await self.session.scalar(select(RewardRule).where(RewardRule.id == rule_id))

    @staticmethod
    def rewards_of(referrer: Patient) -> Select[Any]:
        """The rewards recorded on `referrer`, as a statement to page."""
        return select(Reward).where(Reward.referrer_id == referrer.id)
