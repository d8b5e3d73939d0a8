"""WeCom customer groups (客户群 / 社群): the groups a chain's staff own, their customer members,
which staff member a WeCom user id is, and campaigns sent to a group.

Members are kept by the blind index of their WeCom external user id (the same index, kind
`wecom_external_id`, that patients carry), never the id itself: a member is linked to a
patient by that index when it is read, so a customer who becomes a patient later is linked
without a rewrite. Only customers (external members) are kept; staff in a group are not pool
members. A member's stay is one row (joined_at .. left_at); a return is a new row, so joins and
departures per period are counted from the rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.care.models import staff_fk
from domain.tenants.models import branch_fk
from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, new_id, utcnow


class GroupChatStatus(StrEnum):
    ACTIVE = "active"
    DISMISSED = "dismissed"  # 解散


class GroupChat(TenantScoped, Timestamped, Base):
    __tablename__ = "wecom_group_chats"
    __table_args__ = (
        branch_fk("branch_id"),
        UniqueConstraint("tenant_id", "chat_id", name="uq_wecom_group_chats_chat_id"),
        Index("ix_wecom_group_chats_branch", "tenant_id", "branch_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    chat_id: Mapped[str] = mapped_column(String(64))  # WeCom's ChatId
    # Empty until WeCom's groupchat/get has told it (the callbacks carry no name or owner).
    name: Mapped[str] = mapped_column(String(100), default="")
    owner_userid: Mapped[str] = mapped_column(String(64), default="")  # the owner's WeCom UserID
    branch_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(20), default=GroupChatStatus.ACTIVE)
    dismissed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    synced_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class GroupMember(TenantScoped, Base):
    __tablename__ = "wecom_group_members"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "group_id"],
            ["wecom_group_chats.tenant_id", "wecom_group_chats.id"],
            ondelete="CASCADE",
        ),
        # One open stay per customer per group, whatever races.
        Index(
            "uq_wecom_group_members_open",
            "tenant_id",
            "group_id",
            "member_bidx",
            unique=True,
            sqlite_where=text("left_at IS NULL"),
            postgresql_where=text("left_at IS NULL"),
        ),
        Index("ix_wecom_group_members_member", "tenant_id", "member_bidx"),
        Index("ix_wecom_group_members_group", "tenant_id", "group_id", "joined_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    group_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    member_bidx: Mapped[bytes] = mapped_column(LargeBinary(16))
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    left_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class WecomStaffLink(TenantScoped, Base):
    """Which staff member a WeCom UserID is (so a group's owner is a staff member)."""

    __tablename__ = "wecom_staff_links"
    __table_args__ = (staff_fk("staff_id"),)

    wecom_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[uuid.UUID] = mapped_column(Uuid)


class GroupCampaignStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its window (and the end of quiet hours)
    AWAITING_STAFF = "awaiting_staff"  # the task is in WeCom; the owner confirms it there
    FAILED = "failed"
    EXPIRED = "expired"  # the window closed before it could be sent


class GroupCampaign(TenantScoped, Timestamped, Base):
    """A message to one customer group through WeCom's group-message task (chat_type group):
    one task for the group's owner, who confirms it in WeCom."""

    __tablename__ = "wecom_group_campaigns"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "group_id"],
            ["wecom_group_chats.tenant_id", "wecom_group_chats.id"],
            ondelete="CASCADE",
        ),
        Index("ix_wecom_group_campaigns_due", "tenant_id", "status", "window_start"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    group_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    name: Mapped[str] = mapped_column(String(100))
    content: Mapped[str] = mapped_column(Text)  # marketing copy, never patient data
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    window_end: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(20), default=GroupCampaignStatus.SCHEDULED)
    created_by: Mapped[str] = mapped_column(String(64))
    msgid: Mapped[str] = mapped_column(String(64), default="")
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    last_error: Mapped[str] = mapped_column(String(40), default="")
