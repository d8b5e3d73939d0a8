"""Campaigns to a customer group (客户群群发): one WeCom group-message task (`chat_type: group`)
for the group's owner, created by the campaign sender once the window opens and outside quiet
hours; the owner confirms it in WeCom. Nothing is addressed to a patient (the message goes to
the group), so no per-patient consent or cap applies; the chain's quiet hours do.

The row is claimed (`sending` is not a state: the row stays locked while the task is
created) and gets the task's msgid in the same transaction; WeCom's task creation is not
idempotent, so a sender that dies between WeCom's answer and the commit may leave one more
task for the owner to ignore (they confirm each task by hand)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns import rules as contact_rules
from domain.campaigns.backends import SendError
from domain.errors import BadInput
from domain.wecom.group_models import (
    GroupCampaign,
    GroupCampaignStatus,
    GroupChat,
    GroupChatStatus,
)
from domain.wecom.groups_api import WecomGroupChats
from domain.wecom.repository import GroupRepository

MAX_CONTENT = 2000


def new_campaign(
    group: GroupChat,
    name: str,
    content: str,
    window_start: datetime,
    window_end: datetime,
    created_by: str,
) -> GroupCampaign:
    name, content = name.strip(), content.strip()
    if not 1 <= len(name) <= 100:
        raise BadInput("name must be 1-100 characters", field="name")
    if not 1 <= len(content) <= MAX_CONTENT:
        raise BadInput(f"content must be 1-{MAX_CONTENT} characters", field="content")
    if window_end <= window_start:
        raise BadInput("windowEnd must be after windowStart", field="windowEnd")
    if group.status != GroupChatStatus.ACTIVE:
        raise BadInput("the group chat is dismissed", field="groupChatId")
    if not group.owner_userid:
        raise BadInput(
            "the group chat's owner is not known yet: run `patientpool wecom sync-groups`",
            field="groupChatId",
        )
    return GroupCampaign(
        group_id=group.id,
        name=name,
        content=content,
        window_start=window_start,
        window_end=window_end,
        created_by=created_by[:64],
    )


async def send_due(session: AsyncSession, client: WecomGroupChats, now: datetime) -> dict[str, int]:
    """Create the task of every group campaign whose window is open; expire closed ones."""
    out = {"sent": 0, "failed": 0, "expired": 0}
    rows = await GroupRepository(session).claim_due_campaigns(now)
    quiet = (await contact_rules.load(session)).is_quiet(now)
    for campaign, group in rows:
        if campaign.window_end <= now:
            campaign.status = GroupCampaignStatus.EXPIRED
            out["expired"] += 1
            continue
        if quiet:
            continue
        if group.status != GroupChatStatus.ACTIVE:
            campaign.status, campaign.last_error = GroupCampaignStatus.FAILED, "group_dismissed"
            out["failed"] += 1
            continue
        try:
            msgid = await client.create_group_task(
                group.owner_userid, group.chat_id, campaign.content
            )
        except SendError as exc:
            if not exc.transient:
                campaign.status = GroupCampaignStatus.FAILED
                out["failed"] += 1
            campaign.last_error = exc.code[:40]
            continue
        campaign.status, campaign.msgid, campaign.sent_at = (
            GroupCampaignStatus.AWAITING_STAFF,
            msgid[:64],
            now,
        )
        campaign.last_error = ""
        out["sent"] += 1
    await session.flush()
    return out


async def of_groups(
    session: AsyncSession, group_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[GroupCampaign]]:
    rows = await GroupRepository(session).campaigns_of_groups(group_ids)
    out: dict[uuid.UUID, list[GroupCampaign]] = {g: [] for g in group_ids}
    for row in rows:
        out[row.group_id].append(row)
    return out
