"""Root fields of WeCom customer groups: `groupChats`, `groupChat(id)`, `linkWecomStaff`,
`createGroupChatCampaign`; the pool figures of groups.

Which groups a caller sees follows their patient scope (auth builds it): the chain's, their
branches' groups, or the groups they own. A group's `members` are the patients in it within
the caller's patient scope, logged as a list read; the others are counted, never listed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from api.ids import parse_global_id
from api.pagination import Connection, keyset_connection, keyset_position
from api.tenants.types import Staff
from api.times import to_utc
from api.wecom.group_types import (
    GroupChat,
    GroupChatCampaign,
    GroupChatCampaignInput,
    GroupChatFilter,
)
from auth.access_log import Action
from auth.guard import require, require_patient_scope
from auth.staff import StaffService
from domain.errors import BadInput, NotFound
from domain.pool.segments import group_chat_ids
from domain.wecom import group_campaigns, groups
from domain.wecom.group_models import GroupChat as GroupChatRow
from domain.wecom.group_models import GroupChatStatus
from domain.wecom.repository import GroupQuery, GroupRepository

USERID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")  # WeCom's rule for a member's UserID (账号)


async def _group_scope(info: Info):  # type: ignore[no-untyped-def]
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "groupchats", "read")
    return require_patient_scope(principal, ctx.trail, "read", Action.LIST)


async def group_chats(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    filter: GroupChatFilter | None = None,
) -> Connection[GroupChat]:
    scope = await _group_scope(info)
    q = GroupQuery()
    if filter is not None:
        q = GroupQuery(
            branch_id=None
            if filter.branch_id is None
            else parse_global_id(filter.branch_id, "Branch", "branchId"),
            status=None if filter.status is None else str(filter.status),
        )
    limit, key = keyset_position(first, after)
    page = await GroupRepository(info.context.session).group_page(scope, q, limit, key)
    return keyset_connection(page, [GroupChat.of(r) for r in page.rows])


async def _group(info: Info, id: strawberry.ID, field: str = "id") -> GroupChatRow:
    scope = await _group_scope(info)
    row = await GroupRepository(info.context.session).group(
        scope, parse_global_id(id, "GroupChat", field)
    )
    if row is None:
        raise NotFound("no such group chat", field=field)
    return row


async def group_chat(info: Info, id: strawberry.ID) -> GroupChat:
    return GroupChat.of(await _group(info, id))


async def link_wecom_staff(
    info: Info,
    staff_id: strawberry.ID,
    wecom_user_id: Annotated[
        str, strawberry.argument(description="Their WeCom UserID (成员账号), 1-64 characters.")
    ],
) -> Staff:
    ctx = info.context
    require(await ctx.principal(), "groupchats", "write")
    userid = wecom_user_id.strip()
    if not USERID.fullmatch(userid):
        raise BadInput(
            "wecomUserId must be 1-64 letters, digits or _ - . @ (a WeCom UserID)",
            field="wecomUserId",
        )
    raw = parse_global_id(staff_id, "Staff", "staffId")
    staff = await StaffService(ctx.session, ctx.trail).get(raw)
    await groups.link_staff(ctx.session, staff.id, userid)
    return Staff.of(staff)


async def create_group_chat_campaign(
    info: Info, input: GroupChatCampaignInput
) -> GroupChatCampaign:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "campaigns", "write")
    group = await _group(info, input.group_chat_id, "groupChatId")
    if group.status != GroupChatStatus.ACTIVE:
        raise BadInput("the group chat is dismissed", field="groupChatId")
    row = group_campaigns.new_campaign(
        group,
        input.name,
        input.content,
        to_utc(input.window_start, "windowStart"),
        to_utc(input.window_end, "windowEnd"),
        principal.subject,
    )
    if row.window_end <= datetime.now(UTC):
        raise BadInput("windowEnd is in the past", field="windowEnd")
    ctx.session.add(row)
    await ctx.session.flush()
    return GroupChatCampaign.of(row)


async def check_group_filter(session: AsyncSession, flt: dict[str, Any]) -> None:
    """A segment filter naming a group that does not exist (another chain's included) is
    refused as NOT_FOUND, as one naming an unknown tag is."""
    mentioned = sorted(set(group_chat_ids(flt)))
    if not mentioned:
        return
    if len(await GroupRepository(session).existing_groups(mentioned)) != len(mentioned):
        raise NotFound("a group chat in the filter does not exist", field="filter")
