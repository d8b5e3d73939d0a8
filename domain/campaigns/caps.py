"""The frequency cap every contact counts against: campaign messages and survey links, on all
channels together, over the tenant's `frequencyDays`. Whoever queues a contact takes `lock`
first, so two writers (a campaign launch, the survey pass) cannot both use a patient's last
slot. The contacts are counted in SQL by domain.campaigns.repository."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns.repository import CampaignRepository
from domain.campaigns.rules import Rules
from tenancy.session import lock_tenant


async def lock(session: AsyncSession) -> None:
    await lock_tenant(session, "campaign-audience")


async def contact_counts(session: AsyncSession, rules: Rules, now: datetime) -> Counter[uuid.UUID]:
    """Contacts per patient within the window (patients with none are absent)."""
    return await CampaignRepository(session).contact_counts(rules, now)
