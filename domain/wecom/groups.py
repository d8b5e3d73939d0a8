"""WeCom customer groups: what a `change_external_chat` callback or a resync does to a group and
its members (their SQL, and the queries the API and the metrics ask, are
domain.wecom.repository's).

Callbacks (Event = change_external_chat):
- create: the group is known (its name and owner come from the resync: WeCom's callback
  carries neither).
- update with UpdateDetail add_member / del_member: the customers in MemChangeList join or
  leave (staff members in the list are not pool members and are skipped).
- dismiss: the group is dismissed and every stay in it ends.
A customer who joins a group moves to the strong-private tier (强私域); leaving a group
changes no tier (they may still be a staff member's contact).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.wecom.group_models import GroupChat, GroupChatStatus, GroupMember, WecomStaffLink
from domain.wecom.repository import GroupRepository
from tenancy.keyring import FieldCipher

KIND = "wecom_external_id"  # the patients' blind index kind: members match on it
# WeCom's external user ids: `wm…` (WeCom users' customers) and `wo…` (WeChat users).
CUSTOMER_PREFIXES = ("wm", "wo")
MAX_ID = 64


def is_customer(userid: str) -> bool:
    return userid.startswith(CUSTOMER_PREFIXES) and 2 < len(userid) <= MAX_ID


def member_key(cipher: FieldCipher, external: str) -> bytes:
    return cipher.blind_index(external, kind=KIND)


@dataclass
class Change:
    """What an event or a resync did: stays opened and closed, patients moved to strong."""

    joined: int = 0
    left: int = 0
    strengthened: list[uuid.UUID] = field(default_factory=list)


async def known_group(session: AsyncSession, chat_id: str, branch_id: uuid.UUID) -> GroupChat:
    """The group with this ChatId, made (in `branch_id`) when first heard of."""
    group = await GroupRepository(session).group_by_chat_id(chat_id)
    if group is None:
        group = GroupChat(chat_id=chat_id[:MAX_ID], branch_id=branch_id)
        session.add(group)
        await session.flush()
    return group


async def _strengthen(session: AsyncSession, digests: Sequence[bytes]) -> list[uuid.UUID]:
    """Live patients with these WeCom ids who were not strong-private yet, now are."""
    if not digests:
        return []
    repo = GroupRepository(session)
    ids = await repo.not_strong_private(digests)
    if ids:
        await repo.make_strong_private(ids)
    return ids


async def join(
    session: AsyncSession, group: GroupChat, digests: Iterable[bytes], at: datetime
) -> Change:
    wanted = set(digests) - await GroupRepository(session).open_member_keys(group)
    session.add_all(
        GroupMember(group_id=group.id, member_bidx=d, joined_at=at) for d in sorted(wanted)
    )
    await session.flush()
    return Change(joined=len(wanted), strengthened=await _strengthen(session, sorted(wanted)))


async def leave(
    session: AsyncSession, group: GroupChat, digests: Iterable[bytes] | None, at: datetime
) -> Change:
    """Close the open stays of these members (all of them when `digests` is None)."""
    keys = None
    if digests is not None:
        keys = sorted(set(digests))
        if not keys:
            return Change()
    return Change(left=await GroupRepository(session).close_stays(group, keys, at))


async def dismiss(session: AsyncSession, group: GroupChat, at: datetime) -> Change:
    group.status = GroupChatStatus.DISMISSED
    group.dismissed_at = group.dismissed_at or at
    return await leave(session, group, None, at)


async def forget_member(session: AsyncSession, digest: bytes | None) -> None:
    """Right to erasure: the person's stays end now and lose their blind index (each gets a
    random one, so the stays still count in past figures but match nobody)."""
    if digest is None:
        return
    stays = await GroupRepository(session).stays_of(digest)
    now = datetime.now(UTC)
    for stay in stays:
        stay.member_bidx = os.urandom(16)
        stay.left_at = stay.left_at or now
    await session.flush()


def event_time(event: dict[str, str]) -> datetime:
    try:
        return datetime.fromtimestamp(int(event.get("CreateTime", "")), UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def changed_members(event: dict[str, str]) -> list[str]:
    """The customers of a member change (domain.wecom.callbacks flattens MemChangeList to
    one id per line)."""
    return [u for u in event.get("MemChangeList", "").split("\n") if is_customer(u.strip())]


async def on_chat_event(
    session: AsyncSession, cipher: FieldCipher, branch_id: uuid.UUID, event: dict[str, str]
) -> tuple[str, Change]:
    """Act on one change_external_chat event; returns what came of it and the change."""
    chat_id = (event.get("ChatId") or "").strip()
    if not chat_id or len(chat_id) > MAX_ID:
        return "ignored", Change()
    change_type = event.get("ChangeType", "")
    at = event_time(event)
    group = await known_group(session, chat_id, branch_id)
    if change_type == "create":
        return "group_created", Change()
    if change_type == "dismiss":
        return "group_dismissed", await dismiss(session, group, at)
    if change_type == "update":
        detail = event.get("UpdateDetail", "")
        keys = [member_key(cipher, u.strip()) for u in changed_members(event)]
        if detail == "add_member":
            if group.status == GroupChatStatus.DISMISSED:
                return "ignored", Change()
            return "group_joined", await join(session, group, keys, at)
        if detail == "del_member":
            return "group_left", await leave(session, group, keys, at)
        return "group_updated", Change()  # name, owner, notice: the resync brings them
    return "ignored", Change()


async def apply_detail(
    session: AsyncSession,
    cipher: FieldCipher,
    branch_id: uuid.UUID,
    detail: dict[str, object],
    now: datetime,
) -> tuple[GroupChat, Change]:
    """A group as WeCom's groupchat/get describes it: name and owner set, missing customers
    joined (at WeCom's join time), departed ones left (now)."""
    group = await known_group(session, str(detail.get("chat_id", ""))[:MAX_ID], branch_id)
    group.name = str(detail.get("name") or "")[:100]
    group.owner_userid = str(detail.get("owner") or "")[:MAX_ID]
    group.status, group.dismissed_at, group.synced_at = GroupChatStatus.ACTIVE, None, now
    members = detail.get("member_list") or []
    current: dict[bytes, datetime] = {}
    for m in members if isinstance(members, list) else []:
        userid = str(m.get("userid", "")) if isinstance(m, dict) else ""
        if not isinstance(m, dict) or int(m.get("type", 0) or 0) != 2 or not 0 < len(userid) <= 64:
            continue
        try:
            joined = datetime.fromtimestamp(int(m.get("join_time") or 0), UTC)
        except (ValueError, OverflowError, OSError):
            joined = now
        current[member_key(cipher, userid)] = joined if joined.year > 2000 else now
    stored = await GroupRepository(session).open_member_keys(group)
    gone = await leave(session, group, stored - set(current), now)
    missing = sorted(set(current) - stored)
    session.add_all(
        GroupMember(group_id=group.id, member_bidx=d, joined_at=current[d]) for d in missing
    )
    await session.flush()
    return group, Change(len(missing), gone.left, await _strengthen(session, missing))


async def dismiss_missing(session: AsyncSession, chat_ids: set[str], now: datetime) -> int:
    """Active groups WeCom no longer lists were dismissed (or left the chain's WeCom)."""
    missing = await GroupRepository(session).active_groups_not_in(chat_ids)
    for group in missing:
        await dismiss(session, group, now)
    return len(missing)


async def link_staff(session: AsyncSession, staff_id: uuid.UUID, wecom_userid: str) -> None:
    link = await GroupRepository(session).staff_link(wecom_userid)
    if link is None:
        session.add(WecomStaffLink(wecom_userid=wecom_userid, staff_id=staff_id))
    else:
        link.staff_id = staff_id
    await session.flush()
