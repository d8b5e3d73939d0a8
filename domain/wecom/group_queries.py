"""What the API and the metrics ask of WeCom customer groups: which groups a scope sees, their
member counts and movement, the patients in them (for members and segment filters), and the
pool figures. All SQL of reading groups lives here (domain.wecom.groups changes them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.wecom.group_models import GroupChat, GroupChatStatus, GroupMember, WecomStaffLink


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


async def get_group(
    session: AsyncSession, scope: PatientScope, group_id: uuid.UUID
) -> GroupChat | None:
    return await session.scalar(
        select(GroupChat).where(GroupChat.id == group_id, visible_groups(scope))
    )


async def existing_groups(session: AsyncSession, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    found = await session.scalars(select(GroupChat.id).where(GroupChat.id.in_(list(ids))))
    return set(found.all())


async def member_counts(
    session: AsyncSession, group_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Current customers per group, linked to a patient or not, in anyone's scope or not."""
    rows = await session.execute(
        select(GroupMember.group_id, func.count())
        .where(GroupMember.group_id.in_(list(group_ids)), GroupMember.left_at.is_(None))
        .group_by(GroupMember.group_id)
    )
    return {g: int(n) for g, n in rows.all()}


async def movement(
    session: AsyncSession, group_ids: Sequence[uuid.UUID], since: datetime, until: datetime
) -> dict[uuid.UUID, tuple[int, int]]:
    """Per group: stays that began, and stays that ended, in [since, until)."""
    ids = list(group_ids)
    joined = await session.execute(
        select(GroupMember.group_id, func.count())
        .where(
            GroupMember.group_id.in_(ids),
            GroupMember.joined_at >= since,
            GroupMember.joined_at < until,
        )
        .group_by(GroupMember.group_id)
    )
    left = await session.execute(
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


async def owners(session: AsyncSession, userids: Sequence[str]) -> dict[str, uuid.UUID]:
    rows = await session.execute(
        select(WecomStaffLink.wecom_userid, WecomStaffLink.staff_id).where(
            WecomStaffLink.wecom_userid.in_(list(userids))
        )
    )
    return {u: s for u, s in rows.all()}


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


async def figures(session: AsyncSession, scope: PatientScope, since: datetime) -> GroupFigures:
    live = (Patient.erased_at.is_(None), Patient.merged_into_id.is_(None))
    members = select(func.count()).select_from(Patient).where(scope.clause(), in_any_group(), *live)
    active = members.where(Patient.last_interaction_at >= since)
    seen = visible_groups(scope)
    groups = (
        select(func.count())
        .select_from(GroupChat)
        .where(seen, GroupChat.status == GroupChatStatus.ACTIVE)
    )
    in_seen = GroupMember.group_id.in_(select(GroupChat.id).where(seen))
    joined = (
        select(func.count()).select_from(GroupMember).where(in_seen, GroupMember.joined_at >= since)
    )
    left = (
        select(func.count()).select_from(GroupMember).where(in_seen, GroupMember.left_at >= since)
    )
    return GroupFigures(
        *[int(await session.scalar(q) or 0) for q in (groups, members, active, joined, left)]
    )
