"""Creating campaigns and computing their audience at send time, into the outbox.

The audience is computed when the window opens (or when an admin launches it), never at
creation: segment members within the creator's scope, with marketing consent in force on the
campaign's channel, an address on it, and room under the frequency cap that counts every
channel. Computing it and writing one delivery per patient happen in one transaction, under a
per-tenant lock, so two campaigns launched at once cannot both use a patient's last slot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns import caps
from domain.campaigns import rules as contact_rules
from domain.campaigns.models import (
    Campaign,
    CampaignChannel,
    CampaignStatus,
    DeliveryStatus,
)
from domain.campaigns.repository import AudienceQuery, CampaignRepository
from domain.errors import BadInput, Conflict, Forbidden
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.pool.repository import PoolRepository
from domain.pool.tags import TagService

MAX_CONTENT = 500
MAX_WINDOW = timedelta(days=30)
# The column that must hold an address for the channel.
ADDRESS = {
    CampaignChannel.SMS: Patient.phone_ct,
    CampaignChannel.WECOM: Patient.wecom_external_id_ct,
}
INSERT_BATCH = 5000
# A campaign reaches a chain or branches, never only the sender's own care, so a health
# condition could only be evaluated outside it: marketing is not a stated purpose.
HEALTH_AUDIENCE = (
    "a campaign's audience cannot be chosen by health tags; reach such patients through "
    "their care team's follow-ups"
)


@dataclass(frozen=True)
class NewCampaign:
    name: str
    segment_id: uuid.UUID
    channel: CampaignChannel
    content: str
    window_start: datetime
    window_end: datetime
    attribution_days: int = 7


def _check(new: NewCampaign, now: datetime) -> None:
    if not 1 <= len(new.name.strip()) <= 100:
        raise BadInput("name must be 1-100 characters", field="name")
    if not 1 <= len(new.content.strip()) <= MAX_CONTENT:
        raise BadInput(f"content must be 1-{MAX_CONTENT} characters", field="content")
    if new.window_end <= new.window_start:
        raise BadInput("windowEnd must be after windowStart", field="windowEnd")
    if new.window_end - new.window_start > MAX_WINDOW:
        raise BadInput("a send window is at most 30 days", field="windowEnd")
    if new.window_end <= now:
        raise BadInput("the send window has already closed", field="windowEnd")
    if not 1 <= new.attribution_days <= 90:
        raise BadInput("attributionDays must be 1-90", field="attributionDays")


async def create(
    session: AsyncSession, new: NewCampaign, scope: PatientScope, actor: str, now: datetime
) -> Campaign:
    _check(new, now)
    if scope.staff_id is not None and not scope.chain and not scope.branch_ids:
        raise BadInput("campaigns reach a chain or branches, not assigned patients")
    segment = await PoolRepository(session).segment(new.segment_id)
    if segment is None:
        raise BadInput("no such segment", field="segmentId")
    if await TagService(session).mentions_health(segment.filter):
        raise Forbidden(HEALTH_AUDIENCE, field="segmentId")
    campaign = Campaign(
        name=new.name.strip(),
        segment_id=new.segment_id,
        channel=str(new.channel),
        content=new.content.strip(),
        window_start=new.window_start,
        window_end=new.window_end,
        attribution_days=new.attribution_days,
        status=CampaignStatus.SCHEDULED,
        branch_ids=None if scope.chain else sorted(str(b) for b in scope.branch_ids),
        created_by=actor,
    )
    session.add(campaign)
    await session.flush()
    return campaign


class Unsendable(Conflict):
    """The campaign's audience cannot be computed, now or later: its segment is gone, or
    names a health tag (a campaign scheduled before such segments were refused)."""


async def materialize(session: AsyncSession, campaign: Campaign, now: datetime) -> list[uuid.UUID]:
    """Compute the audience now and write it to the outbox; returns the patients queued."""
    if campaign.status != CampaignStatus.SCHEDULED:
        raise Conflict(f"the campaign is {campaign.status}, not scheduled")
    if now >= campaign.window_end:
        raise Conflict("the send window has closed")
    repo = CampaignRepository(session)
    segment = await PoolRepository(session).segment(campaign.segment_id)
    if segment is None:
        raise Unsendable("the campaign's segment no longer exists")
    if await TagService(session).mentions_health(segment.filter):
        raise Unsendable(HEALTH_AUDIENCE)
    await caps.lock(session)
    rules = await contact_rules.load(session)
    channel = CampaignChannel(campaign.channel)
    audience = AudienceQuery.of(campaign, segment, ADDRESS[channel], rules, now)

    # Why members were left out, in one pass over them.
    campaign.matched, with_consent, with_address = await repo.audience_breakdown(audience)
    patient_ids = await repo.audience_ids(audience)
    campaign.excluded_no_consent = campaign.matched - with_consent
    campaign.excluded_no_address = with_consent - with_address
    campaign.excluded_by_cap = with_address - len(patient_ids)
    campaign.audience = len(patient_ids)
    campaign.status = CampaignStatus.SENDING
    campaign.launched_at = now

    start = rules.next_allowed(max(now, campaign.window_start))
    for i in range(0, len(patient_ids), INSERT_BATCH):
        rows = [
            {
                "id": uuid.uuid4(),
                "campaign_id": campaign.id,
                "patient_id": pid,
                "channel": str(channel),
                "status": str(DeliveryStatus.PENDING),
                "queued_at": now,
                "next_attempt_at": start,
                "attempts": 0,
                "last_error": "",
                "provider_ref": "",
            }
            for pid in patient_ids[i : i + INSERT_BATCH]
        ]
        await repo.insert_deliveries(rows)
    await session.flush()
    return patient_ids


async def cancel(session: AsyncSession, campaign: Campaign) -> int:
    """Stop a campaign: deliveries not yet handed to a provider are cancelled."""
    if campaign.status in (CampaignStatus.DONE, CampaignStatus.CANCELLED):
        raise Conflict(f"the campaign is already {campaign.status}")
    cancelled = await CampaignRepository(session).cancel_pending(campaign)
    campaign.status = CampaignStatus.CANCELLED
    await session.flush()
    return cancelled
