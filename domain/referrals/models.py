"""Referral links (at most one referrer per patient, no cycles), reward rules and rewards."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from domain.pool.models import patient_fk
from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, new_id, utcnow


class Referral(TenantScoped, Base):
    """Patient `referrer_id` brought patient `referred_id`; the primary key allows one referrer."""

    __tablename__ = "referrals"
    __table_args__ = (
        patient_fk("referred_id"),
        patient_fk("referrer_id"),
        Index("ix_referrals_referrer", "tenant_id", "referrer_id"),
        Index("ix_referrals_created", "tenant_id", "created_at"),
    )

    referred_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    referrer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    channel: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # False when fraud checks failed: the link stays (the tree is the truth) but earns nothing.
    eligible: Mapped[bool] = mapped_column(Boolean, default=True)
    ineligible_reason: Mapped[str] = mapped_column(String(40), default="")


class ReferralFigures(TenantScoped, Base):
    """A referrer's whole-subtree figures, kept as links are made and payments change
    (domain.referrals.figures): everyone they brought directly or indirectly, how many of those
    have net paid orders, and what those paid (fen, net of refunds). No row: all zero."""

    __tablename__ = "referral_figures"
    __table_args__ = (patient_fk("patient_id"),)

    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    descendants: Mapped[int] = mapped_column(Integer, default=0)
    converted: Mapped[int] = mapped_column(Integer, default=0)
    converted_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class RewardTrigger(StrEnum):
    FIRST_VISIT = "first_visit"  # the referred patient's first visit (初诊到店)
    FIRST_PAYMENT = "first_payment"  # the referred patient's first paid order
    REFERRED_COUNT = "referred_count"  # 任务裂变: the referrer reached N eligible referrals


class RewardRule(TenantScoped, Timestamped, Base):
    __tablename__ = "reward_rules"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    trigger: Mapped[str] = mapped_column(String(20))
    threshold: Mapped[int] = mapped_column(Integer, default=1)  # N for referred_count
    points: Mapped[int] = mapped_column(Integer, default=0)
    coupon: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class RewardStatus(StrEnum):
    GRANTED = "granted"
    REFUSED = "refused"


class Reward(TenantScoped, Base):
    """A reward recorded on the referrer, once per (rule, subject): `dedupe_key` is unique."""

    __tablename__ = "rewards"
    __table_args__ = (
        patient_fk("referrer_id"),
        UniqueConstraint("tenant_id", "dedupe_key"),
        # A referrer's rewards page in (created_at, id) order (api.pagination.keyset_page).
        Index("ix_rewards_page", "tenant_id", "referrer_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    rule_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    referrer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    referred_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    dedupe_key: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(10))
    points: Mapped[int] = mapped_column(Integer, default=0)
    coupon: Mapped[str] = mapped_column(String(100), default="")
    reason: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
