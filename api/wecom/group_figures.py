"""The pool figures of customer groups (PoolMetrics.groupChats): apart from the group types,
which need the patient type (that imports the pool's types)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import strawberry
from strawberry.types import Info

from auth.access_log import Action
from auth.guard import require_patient_scope
from domain.wecom.repository import GroupRepository

ACTIVITY_DAYS = 30


@strawberry.type(description="Customer groups (社群) in the pool, within your patient scope.")
class GroupChatFigures:
    groups: int = strawberry.field(description="Active groups you may see.")
    members: int = strawberry.field(
        description="Patients you may see who are in at least one group now."
    )
    active_members: int = strawberry.field(
        description="Of those, the ones with an interaction in the last 30 days."
    )
    joined: int = strawberry.field(description="Joins in your groups in the last 30 days.")
    left: int = strawberry.field(description="Departures from your groups in the last 30 days.")


async def group_chat_figures(info: Info) -> GroupChatFigures:
    """For PoolMetrics.groupChats: the caller holds metrics:read and a patient scope."""
    ctx = info.context
    scope = require_patient_scope(await ctx.principal(), ctx.trail, "read", Action.LIST)
    since = datetime.now(UTC) - timedelta(days=ACTIVITY_DAYS)
    f = await GroupRepository(ctx.session).figures(scope, since)
    return GroupChatFigures(
        groups=f.groups,
        members=f.members,
        active_members=f.active_members,
        joined=f.joined,
        left=f.left,
    )
