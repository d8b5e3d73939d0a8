"""Campaigns (群发): a segment reached on one channel with one message inside a send window,
and the outbox of deliveries (one per patient) that the sender works through.

The outbox row is the unit of crash safety: it is written in the transaction that computes
the audience, claimed (status `sending`) in a committed transaction before anything leaves,
and sent with its own id as the idempotency key, so a sender that dies mid-campaign resumes
without losing a delivery or sending one twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKeyConstraint, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from domain.pool.models import patient_fk
from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, new_id


class CampaignChannel(StrEnum):
    """Channels a campaign can bulk-send on (a subset of consent's contact channels)."""

    SMS = "sms"
    WECOM = "wecom"  # through WeCom's group-message task: a staff member confirms (企业群发)


class CampaignStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its window to open; no audience yet
    SENDING = "sending"  # audience written to the outbox; deliveries under way
    DONE = "done"  # every delivery has an outcome
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # in the outbox: waiting for its time (window, quiet hours, retry)
    SENDING = "sending"  # claimed by a sender; its outcome is not recorded yet
    AWAITING_STAFF = "awaiting_staff"  # in a WeCom task a staff member has yet to confirm
    DELIVERED = "delivered"
    FAILED = "failed"  # refused for good, or retries exhausted
    WITHDRAWN = "withdrawn"  # consent withdrawn (or data erased) before it left: never sent
    OPTED_OUT = "opted_out"  # the provider says the person unsubscribed (退订)
    EXPIRED = "expired"  # the send window closed first
    CANCELLED = "cancelled"


# Deliveries that count against a patient's frequency cap: sent, or about to be.
COUNTED = (
    DeliveryStatus.PENDING,
    DeliveryStatus.SENDING,
    DeliveryStatus.AWAITING_STAFF,
    DeliveryStatus.DELIVERED,
)
OPEN = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.AWAITING_STAFF)


class Campaign(TenantScoped, Timestamped, Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "segment_id"], ["segments.tenant_id", "segments.id"]),
        Index("ix_campaigns_status", "tenant_id", "status", "window_start"),
        # The campaign list, paged in (created_at, id) order.
        Index("ix_campaigns_page", "tenant_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    segment_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    channel: Mapped[str] = mapped_column(String(20))
    # The message itself: marketing copy, never patient data (no placeholders are filled in).
    content: Mapped[str] = mapped_column(Text)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    window_end: Mapped[datetime] = mapped_column(UtcDateTime())
    attribution_days: Mapped[int] = mapped_column(Integer, default=7)
    status: Mapped[str] = mapped_column(String(20), default=CampaignStatus.SCHEDULED)
    # The creator's patient scope, kept so the audience computed later stays within it:
    # null for the whole chain, else the branch ids.
    branch_ids: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    launched_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # What the audience computation found: segment matches, and why some were left out.
    matched: Mapped[int] = mapped_column(Integer, default=0)
    excluded_no_consent: Mapped[int] = mapped_column(Integer, default=0)
    excluded_no_address: Mapped[int] = mapped_column(Integer, default=0)
    excluded_by_cap: Mapped[int] = mapped_column(Integer, default=0)
    audience: Mapped[int] = mapped_column(Integer, default=0)


class Delivery(TenantScoped, Base):
    """One patient's message in a campaign's outbox."""

    __tablename__ = "campaign_deliveries"
    __table_args__ = (
        patient_fk(),
        ForeignKeyConstraint(
            ["tenant_id", "campaign_id"],
            ["campaigns.tenant_id", "campaigns.id"],
            ondelete="CASCADE",
        ),
        # One delivery per patient per campaign, whatever races.
        Index(
            "uq_campaign_deliveries_patient", "tenant_id", "campaign_id", "patient_id", unique=True
        ),
        Index("ix_campaign_deliveries_due", "tenant_id", "status", "next_attempt_at"),
        Index("ix_campaign_deliveries_recent", "tenant_id", "patient_id", "queued_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    campaign_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # Our own short reason code (never a provider's text, which may quote the recipient).
    last_error: Mapped[str] = mapped_column(String(40), default="")
    provider_ref: Mapped[str] = mapped_column(String(64), default="")  # message id or WeCom msgid
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # Conversions (visits, orders) up to this moment are credited to the campaign.
    attributed_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class ContactRules(TenantScoped, Timestamped, Base):
    """Per tenant: how often one patient may be reached, on all channels together, and the
    quiet hours (local time) in which nothing is sent."""

    __tablename__ = "contact_rules"

    frequency_cap: Mapped[int] = mapped_column(Integer, default=2)
    frequency_days: Mapped[int] = mapped_column(Integer, default=7)
    quiet_start_minute: Mapped[int] = mapped_column(Integer, default=21 * 60)
    quiet_end_minute: Mapped[int] = mapped_column(Integer, default=8 * 60)
    timezone: Mapped[str] = mapped_column(String(40), default="Asia/Shanghai")
