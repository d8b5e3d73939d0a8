"""GraphQL types of WeCom customer groups (客户群 / 社群)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api.ids import to_global_id
from api.node import Node
from api.pagination import Connection
from api.patients.resolvers import page_patients
from api.patients.types import Patient
from api.rows import RowType
from api.tenants.loaders import branch_loader, staff_loader
from api.tenants.types import Branch, Staff
from api.times import to_utc
from auth.access_log import Action
from auth.guard import require_patient_scope
from domain.errors import BadInput
from domain.patients.repository import PatientFilter
from domain.wecom import group_campaigns
from domain.wecom.group_models import GroupCampaign as GroupCampaignRow
from domain.wecom.group_models import GroupCampaignStatus, GroupChatStatus
from domain.wecom.group_models import GroupChat as GroupChatRow
from domain.wecom.repository import GroupRepository, in_groups

GroupChatStatusEnum = strawberry.enum(
    GroupChatStatus, name="GroupChatStatus", description="Whether the group still exists."
)
GroupCampaignStatusEnum = strawberry.enum(
    GroupCampaignStatus,
    name="GroupChatCampaignStatus",
    description="SCHEDULED until the sender creates the WeCom task; AWAITING_STAFF once the "
    "owner has it to confirm; FAILED (WeCom refused it, or the group was dismissed); EXPIRED "
    "(the window closed first).",
)


Since = Annotated[
    datetime | None,
    strawberry.argument(description="Start (inclusive, with an offset); default this month's."),
]
Until = Annotated[
    datetime | None,
    strawberry.argument(description="End (exclusive, with an offset); default now."),
]


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _period(
    info: Info, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime]:
    # One "now" per request, so every group on a page shares one batched count.
    now = info.context.loader("group_period_now", lambda: datetime.now(UTC))
    start = to_utc(since, "since") if since is not None else month_start(now)
    end = to_utc(until, "until") if until is not None else now
    if end <= start:
        raise BadInput("until must be after since", field="until")
    return start, end


def _counts_loader(info: Info) -> DataLoader[uuid.UUID, int]:
    ctx = info.context

    async def load(ids: Sequence[uuid.UUID]) -> list[int]:
        found = await GroupRepository(ctx.session).member_counts(ids)
        return [found.get(i, 0) for i in ids]

    return ctx.loader("group_member_counts", lambda: DataLoader(load_fn=load))


def _movement_loader(info: Info, start: datetime, end: datetime) -> DataLoader:
    ctx = info.context

    async def load(ids: Sequence[uuid.UUID]) -> list[tuple[int, int]]:
        found = await GroupRepository(ctx.session).movement(ids, start, end)
        return [found[i] for i in ids]

    key = f"group_movement:{start.isoformat()}:{end.isoformat()}"
    return ctx.loader(key, lambda: DataLoader(load_fn=load))


def _owner_loader(info: Info) -> DataLoader[str, uuid.UUID | None]:
    ctx = info.context

    async def load(userids: Sequence[str]) -> list[uuid.UUID | None]:
        found = await GroupRepository(ctx.session).owners(userids)
        return [found.get(u) for u in userids]

    return ctx.loader("group_owners", lambda: DataLoader(load_fn=load))


def _campaigns_loader(info: Info) -> DataLoader[uuid.UUID, list[GroupCampaignRow]]:
    ctx = info.context

    async def load(ids: Sequence[uuid.UUID]) -> list[list[GroupCampaignRow]]:
        found = await group_campaigns.of_groups(ctx.session, list(ids))
        return [found[i] for i in ids]

    return ctx.loader("group_campaigns", lambda: DataLoader(load_fn=load))


@strawberry.type(
    description="A campaign to one customer group: one WeCom group-message task (客户群群发) "
    "for the group's owner, who confirms it in WeCom."
)
class GroupChatCampaign(RowType, Node):
    _row: strawberry.Private[GroupCampaignRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("GroupChatCampaign", self._row.id))

    name: str = strawberry.field(description="The campaign's name.")
    content: str = strawberry.field(description="The message sent to the group.")
    window_start: datetime = strawberry.field(description="Sent no earlier than this.")
    window_end: datetime = strawberry.field(description="Not sent after this.")

    @strawberry.field(description="Where it stands.")
    def status(self) -> GroupCampaignStatusEnum:  # type: ignore[valid-type]
        return GroupCampaignStatus(self._row.status)

    sent_at: datetime | None = strawberry.field(description="When the WeCom task was created.")


@strawberry.type(description="A WeCom customer group (客户群 / 社群) of the chain's staff.")
class GroupChat(RowType, Node):
    _row: strawberry.Private[GroupChatRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("GroupChat", self._row.id))

    name: str = strawberry.field(
        description="The group's name in WeCom (empty until `patientpool wecom sync-groups` "
        "has read it: WeCom's callbacks do not carry it)."
    )

    @strawberry.field(description="The owner's WeCom UserID (群主), empty until synced.")
    def owner_wecom_user_id(self) -> str:
        return self._row.owner_userid

    @strawberry.field(
        description="The staff member who owns the group, when their WeCom UserID is linked "
        "(`linkWecomStaff`)."
    )
    async def owner(self, info: Info) -> Staff | None:
        if not self._row.owner_userid:
            return None
        staff_id = await _owner_loader(info).load(self._row.owner_userid)
        if staff_id is None:
            return None
        row = await info.context.loader("staff", lambda: staff_loader(info.context.session)).load(
            staff_id
        )
        return None if row is None else Staff.of(row)

    @strawberry.field(description="The branch the group belongs to.")
    async def branch(self, info: Info) -> Branch:
        row = await info.context.loader("branch", lambda: branch_loader(info.context.session)).load(
            self._row.branch_id
        )
        return Branch.of(row)

    @strawberry.field(description="ACTIVE, or DISMISSED (解散).")
    def status(self) -> GroupChatStatusEnum:  # type: ignore[valid-type]
        return GroupChatStatus(self._row.status)

    created_at: datetime = strawberry.field(description="When the pool first heard of the group.")
    dismissed_at: datetime | None = strawberry.field(description="When the group was dismissed.")
    synced_at: datetime | None = strawberry.field(
        description="When `patientpool wecom sync-groups` last read it."
    )

    @strawberry.field(
        description="Customers in the group now: all of them, whether or not they are "
        "patients and whether or not you may see them (`members` lists only those you may)."
    )
    async def member_count(self, info: Info) -> int:
        return await _counts_loader(info).load(self._row.id)

    @strawberry.field(
        description="Customers who joined in [since, until) (default: this month, UTC, to now)."
    )
    async def joined(self, info: Info, since: Since = None, until: Until = None) -> int:
        start, end = _period(info, since, until)
        return (await _movement_loader(info, start, end).load(self._row.id))[0]

    @strawberry.field(
        description="Customers who left in [since, until) (default: this month, UTC, to now)."
    )
    async def left(self, info: Info, since: Since = None, until: Until = None) -> int:
        start, end = _period(info, since, until)
        return (await _movement_loader(info, start, end).load(self._row.id))[1]

    @strawberry.field(
        description="The patients in the group now, within your patient scope (customers "
        "who are not patients, or whom you may not see, are not listed; `memberCount` counts "
        "them). Newest first; on the access log."
    )
    async def members(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Patient]:
        ctx = info.context
        scope = require_patient_scope(await ctx.principal(), ctx.trail, "read", Action.LIST)
        row_filter = PatientFilter(extra=(in_groups([self._row.id]),))
        return await page_patients(info, scope, row_filter, first, after)

    @strawberry.field(description="Campaigns sent to this group, newest first.")
    async def campaigns(self, info: Info) -> list[GroupChatCampaign]:
        rows = await _campaigns_loader(info).load(self._row.id)
        return [GroupChatCampaign.of(r) for r in rows]


@strawberry.input(description="Narrow the customer groups.")
class GroupChatFilter:
    branch_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only this branch's groups."
    )
    status: GroupChatStatusEnum | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Only ACTIVE or only DISMISSED groups."
    )


@strawberry.input(description="A campaign to one customer group.")
class GroupChatCampaignInput:
    group_chat_id: strawberry.ID = strawberry.field(description="The group.")
    name: str = strawberry.field(description="A name for the campaign (1-100 characters).")
    content: str = strawberry.field(description="The message (1-2000 characters).")
    window_start: datetime = strawberry.field(description="Not sent before this.")
    window_end: datetime = strawberry.field(description="Not sent after this.")
