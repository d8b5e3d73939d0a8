"""All SQL of the WeCom integration: the tenant's one app row and what its settings show (the
tenant's slug for the callback path, the default branch), the callbacks already handled, and
the customer groups (客户群): their members, the staff links of their owners, the campaigns
sent to them, and what the API and the metrics ask of them (which groups a scope sees, member
counts and movement, the patients in them for members and segment filters, the pool figures).
The services (domain.wecom.callbacks, .groups, .group_campaigns) call these methods."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Row, Select, and_, false, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.paging import Keyset, KeysetPage, keyset_rows
from domain.patients.models import Patient, PoolTier
from domain.patients.scope import PatientScope
from domain.tenants.models import Branch, Tenant
from domain.wecom.group_models import (
    GroupCampaign,
    GroupCampaignStatus,
    GroupChat,
    GroupChatStatus,
    GroupMember,
    WecomStaffLink,
)
from domain.wecom.models import WecomApp, WecomCallback


class WecomRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- the app ---

    async def app(self) -> WecomApp | None:
        """The bound tenant's WeCom app, if one is configured."""
        return await self.session.scalar(select(WecomApp))

    async def slug_of(self, app: WecomApp) -> str | None:
        return await self.session.scalar(select(Tenant.slug).where(Tenant.id == app.tenant_id))

    async def branch(self, branch_id: uuid.UUID | None) -> Branch | None:
        return await self.session.scalar(select(Branch).where(Branch.id == branch_id))

    # --- callbacks ---

    async def callback_by_signature(self, signature: str) -> WecomCallback | None:
        """A delivery with this signature (WeCom's resend of the very same request)."""
        return await self.session.scalar(
            select(WecomCallback).where(WecomCallback.signature == signature)
        )

    async def callback_by_event_key(self, key: str) -> WecomCallback | None:
        """A delivery of the same event (domain.wecom.callbacks.event_key)."""
        return await self.session.scalar(
            select(WecomCallback).where(WecomCallback.event_key == key)
        )


# --- which groups and patients a clause reaches ---


def visible_groups(scope: PatientScope) -> ColumnElement[bool]:
    """The groups a patient scope reaches: the whole chain's, its branches' groups, or the
    groups a staff member owns (through their linked WeCom user)."""
    if scope.chain:
        return true()
    parts: list[ColumnElement[bool]] = []
    if scope.branch_ids:
        parts.append(GroupChat.branch_id.in_(sorted(scope.branch_ids)))
    if scope.staff_id is not None:
        owned = select(WecomStaffLink.wecom_userid).where(WecomStaffLink.staff_id == scope.staff_id)
        parts.append(GroupChat.owner_userid.in_(owned))
    return or_(*parts) if parts else false()


@dataclass(frozen=True)
class GroupQuery:
    branch_id: uuid.UUID | None = None
    status: str | None = None


def _where(scope: PatientScope, q: GroupQuery) -> list[ColumnElement[bool]]:
    conds = [visible_groups(scope)]
    if q.branch_id is not None:
        conds.append(GroupChat.branch_id == q.branch_id)
    if q.status is not None:
        conds.append(GroupChat.status == q.status)
    return conds


def groups_select(scope: PatientScope, q: GroupQuery) -> Select[tuple[GroupChat]]:
    """The groups a scope sees, narrowed by `q` (the API pages it)."""
    return select(GroupChat).where(*_where(scope, q))


def in_groups(group_ids: Sequence[uuid.UUID]) -> ColumnElement[bool]:
    """Patients who are now in any of these groups (for members and segment filters)."""
    current = select(GroupMember.member_bidx).where(
        GroupMember.group_id.in_(sorted(set(group_ids))), GroupMember.left_at.is_(None)
    )
    return and_(
        Patient.wecom_external_id_bidx.is_not(None), Patient.wecom_external_id_bidx.in_(current)
    )


def in_any_group() -> ColumnElement[bool]:
    current = select(GroupMember.member_bidx).where(GroupMember.left_at.is_(None))
    return Patient.wecom_external_id_bidx.in_(current)


@dataclass(frozen=True)
class GroupFigures:
    groups: int  # active groups in scope
    members: int  # patients in scope in at least one group now
    active_members: int  # of those, with an interaction since `since`
    joined: int  # stays begun since `since`, in the groups in scope
    left: int  # stays ended since `since`


class GroupRepository:
    """The customer groups' SQL: what callbacks and resyncs change, and what the API reads."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- groups ---

    async def group(self, scope: PatientScope, group_id: uuid.UUID) -> GroupChat | None:
        """The group with this id, if the scope sees it."""
        return await self.session.scalar(
            select(GroupChat).where(GroupChat.id == group_id, visible_groups(scope))
        )

    async def group_by_chat_id(self, chat_id: str) -> GroupChat | None:
        return await self.session.scalar(select(GroupChat).where(GroupChat.chat_id == chat_id))

    async def existing_groups(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        found = await self.session.scalars(select(GroupChat.id).where(GroupChat.id.in_(list(ids))))
        return set(found.all())

    async def active_groups_not_in(self, chat_ids: set[str]) -> Sequence[GroupChat]:
        """Active groups WeCom no longer lists (a resync dismisses them)."""
        return (
            await self.session.scalars(
                select(GroupChat).where(
                    GroupChat.status == GroupChatStatus.ACTIVE, GroupChat.chat_id.not_in(chat_ids)
                )
            )
        ).all()

    # --- members ---

    async def open_member_keys(self, group: GroupChat) -> set[bytes]:
        """The blind indexes of the group's members now (their stays not ended)."""
        return set(
            (
                await self.session.scalars(
                    select(GroupMember.member_bidx).where(
                        GroupMember.group_id == group.id, GroupMember.left_at.is_(None)
                    )
                )
            ).all()
        )

    async def close_stays(self, group: GroupChat, keys: list[bytes] | None, at: datetime) -> int:
        """End the open stays of these members (all of them when `keys` is None); how many."""
        stmt = (
            update(GroupMember)
            .where(GroupMember.group_id == group.id, GroupMember.left_at.is_(None))
            .values(left_at=at)
            .execution_options(synchronize_session=False)
        )
        if keys is not None:
            stmt = stmt.where(GroupMember.member_bidx.in_(keys))
        result = await self.session.execute(stmt)
        return int(result.rowcount or 0)

    async def stays_of(self, digest: bytes) -> Sequence[GroupMember]:
        """Every stay, in any group, of the member with this blind index."""
        return (
            await self.session.scalars(select(GroupMember).where(GroupMember.member_bidx == digest))
        ).all()

    async def member_counts(self, group_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Current customers per group, linked to a patient or not, in anyone's scope or not."""
        rows = await self.session.execute(
            select(GroupMember.group_id, func.count())
            .where(GroupMember.group_id.in_(list(group_ids)), GroupMember.left_at.is_(None))
            .group_by(GroupMember.group_id)
        )
        return {g: int(n) for g, n in rows.all()}

    async def movement(
        self, group_ids: Sequence[uuid.UUID], since: datetime, until: datetime
    ) -> dict[uuid.UUID, tuple[int, int]]:
        """Per group: stays that began, and stays that ended, in [since, until)."""
        ids = list(group_ids)
        joined = await self.session.execute(
            select(GroupMember.group_id, func.count())
            .where(
                GroupMember.group_id.in_(ids),
                GroupMember.joined_at >= since,
                GroupMember.joined_at < until,
            )
            .group_by(GroupMember.group_id)
        )
        left = await self.session.execute(
            select(GroupMember.group_id, func.count())
            .where(
                GroupMember.group_id.in_(ids),
                GroupMember.left_at >= since,
                GroupMember.left_at < until,
            )
            .group_by(GroupMember.group_id)
        )
        out = {g: (0, 0) for g in ids}
        for g, n in joined.all():
            out[g] = (int(n), out[g][1])
        for g, n in left.all():
            out[g] = (out[g][0], int(n))
        return out

    # --- patients in groups ---

    async def not_strong_private(self, digests: Sequence[bytes]) -> list[uuid.UUID]:
        """Live patients with these WeCom ids who are not in the strong-private tier yet."""
        return list(
            (
                await self.session.scalars(
                    select(Patient.id).where(
                        Patient.wecom_external_id_bidx.in_(list(digests)),
                        Patient.pool_tier != str(PoolTier.STRONG_PRIVATE),
                        Patient.erased_at.is_(None),
                        Patient.merged_into_id.is_(None),
                    )
                )
            ).all()
        )

    async def make_strong_private(self, patient_ids: Sequence[uuid.UUID]) -> None:
        await self.session.execute(
            update(Patient)
            .where(Patient.id.in_(patient_ids))
            .values(pool_tier=str(PoolTier.STRONG_PRIVATE))
            .execution_options(synchronize_session=False)
        )

    async def figures(self, scope: PatientScope, since: datetime) -> GroupFigures:
        """The pool figures of the groups a scope sees (five counts, one statement each)."""
        live = (Patient.erased_at.is_(None), Patient.merged_into_id.is_(None))
        members = (
            select(func.count()).select_from(Patient).where(scope.clause(), in_any_group(), *live)
        )
        active = members.where(Patient.last_interaction_at >= since)
        seen = visible_groups(scope)
        groups = (
            select(func.count())
            .select_from(GroupChat)
            .where(seen, GroupChat.status == GroupChatStatus.ACTIVE)
        )
        in_seen = GroupMember.group_id.in_(select(GroupChat.id).where(seen))
        joined = (
            select(func.count())
            .select_from(GroupMember)
            .where(in_seen, GroupMember.joined_at >= since)
        )
        left = (
            select(func.count())
            .select_from(GroupMember)
            .where(in_seen, GroupMember.left_at >= since)
        )
        return GroupFigures(
            *[
                int(await self.session.scalar(q) or 0)
                for q in (groups, members, active, joined, left)
            ]
        )

    # --- staff links ---

    async def staff_link(self, wecom_userid: str) -> WecomStaffLink | None:
        return await self.session.scalar(
            select(WecomStaffLink).where(WecomStaffLink.wecom_userid == wecom_userid)
        )

    async def owners(self, userids: Sequence[str]) -> dict[str, uuid.UUID]:
        """The staff member each of these WeCom UserIDs is linked to."""
        rows = await self.session.execute(
            select(WecomStaffLink.wecom_userid, WecomStaffLink.staff_id).where(
                WecomStaffLink.wecom_userid.in_(list(userids))
            )
        )
        return {u: s for u, s in rows.all()}

    # --- campaigns ---

    async def claim_due_campaigns(
        self, now: datetime
    ) -> Sequence[Row[tuple[GroupCampaign, GroupChat]]]:
        """Scheduled campaigns whose window has opened, with their groups, locked for the
        sender (rows another sender holds are skipped)."""
        return (
            await self.session.execute(
                select(GroupCampaign, GroupChat)
                .join(GroupChat, GroupChat.id == GroupCampaign.group_id)
                .where(
                    GroupCampaign.status == GroupCampaignStatus.SCHEDULED,
                    GroupCampaign.window_start <= now,
                )
                .order_by(GroupCampaign.window_start, GroupCampaign.id)
                .with_for_update(of=GroupCampaign, skip_locked=True)
            )
        ).all()

    async def campaigns_of_groups(self, group_ids: list[uuid.UUID]) -> Sequence[GroupCampaign]:
        """The campaigns of these groups, newest first."""
        return (
            await self.session.scalars(
                select(GroupCampaign)
                .where(GroupCampaign.group_id.in_(group_ids))
                .order_by(GroupCampaign.created_at.desc(), GroupCampaign.id)
            )
        ).all()

    # --- pages (GraphQL) ---

    async def group_page(
        self, scope: PatientScope, q: GroupQuery, limit: int, after: Keyset | None
    ) -> KeysetPage[GroupChat]:
        """A page of the groups `groups_select` names, by creation time."""
        stmt = groups_select(scope, q)
        return await keyset_rows(self.session, stmt, GroupChat, GroupChat.created_at, limit, after)
