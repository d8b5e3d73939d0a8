"""Patients: contact and health data sealed per field, the rest plain for filtering and counts."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.tenants.models import branch_fk
from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, new_id, utcnow


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class PoolTier(StrEnum):
    """半私域 (past patients in the hospital system) vs 强私域 (WeCom / WeChat friends, groups)."""

    SEMI_PRIVATE = "semi_private"
    STRONG_PRIVATE = "strong_private"


class LifecycleStage(StrEnum):
    LEAD = "lead"
    NURTURING = "nurturing"
    QUALIFIED = "qualified"
    BOOKED = "booked"
    VISITED = "visited"
    CONVERTED = "converted"
    RETURNING = "returning"
    REFERRER = "referrer"
    LOST = "lost"


class TrustLevel(StrEnum):
    NONE = "none"
    WEAK = "weak"
    STRONG = "strong"
    SUPER = "super"


class FieldGroup(StrEnum):
    CONTACT = "contact"
    HEALTH = "health"


# Every sealed field, its column (`<field>_ct`) and its group. Both groups are encrypted; the
# group decides who may read it (auth/) and what the access log records.
SEALED_FIELDS: dict[str, FieldGroup] = {
    "name": FieldGroup.CONTACT,
    "phone": FieldGroup.CONTACT,
    "wechat_id": FieldGroup.CONTACT,
    "wecom_external_id": FieldGroup.CONTACT,
    "national_id": FieldGroup.HEALTH,
    "medical_history": FieldGroup.HEALTH,
    "allergies": FieldGroup.HEALTH,
    "diagnoses": FieldGroup.HEALTH,
    "notes": FieldGroup.HEALTH,
}
# Exact-match identifiers with a keyed blind index column (`<field>_bidx`).
BLIND_INDEXED = ("phone", "wechat_id", "wecom_external_id", "national_id")


class Patient(TenantScoped, Timestamped, Base):
    __tablename__ = "patients"
    __table_args__ = (
        branch_fk("home_branch_id"),
        ForeignKeyConstraint(
            ["tenant_id", "assigned_staff_id"], ["staff_users.tenant_id", "staff_users.id"]
        ),
        UniqueConstraint("tenant_id", "referral_code"),
        Index("ix_patients_phone_bidx", "tenant_id", "phone_bidx"),
        Index("ix_patients_wechat_id_bidx", "tenant_id", "wechat_id_bidx"),
        Index("ix_patients_wecom_external_id_bidx", "tenant_id", "wecom_external_id_bidx"),
        Index("ix_patients_national_id_bidx", "tenant_id", "national_id_bidx"),
        # Covers what the chain metrics join on (PostgreSQL reads it without the wide rows).
        Index(
            "ix_patients_branch",
            "tenant_id",
            "home_branch_id",
            "id",
            postgresql_include=["merged_into_id", "created_at"],
        ),
        Index("ix_patients_assigned", "tenant_id", "assigned_staff_id"),
        Index("ix_patients_score", "tenant_id", "lead_score"),
        Index("ix_patients_created", "tenant_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    home_branch_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    assigned_staff_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)

    name_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    phone_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    wechat_id_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    wecom_external_id_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    national_id_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    medical_history_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    allergies_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    diagnoses_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    notes_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

    phone_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(16), default=None)
    wechat_id_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(16), default=None)
    wecom_external_id_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(16), default=None)
    national_id_bidx: Mapped[bytes | None] = mapped_column(LargeBinary(16), default=None)

    gender: Mapped[str] = mapped_column(String(10), default=Gender.UNKNOWN)
    birth_year: Mapped[int | None] = mapped_column(Integer, default=None)
    source_channel: Mapped[str] = mapped_column(String(64), default="")
    pool_tier: Mapped[str] = mapped_column(String(20), default=PoolTier.SEMI_PRIVATE)
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default=LifecycleStage.LEAD)
    trust_level: Mapped[str] = mapped_column(String(10), default=TrustLevel.NONE)
    referral_code: Mapped[str] = mapped_column(String(16))
    consent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    erased_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # Set when this record was merged into another (one patient, one record).
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    # Kept here, not computed per query, so segments filter and sort on plain columns.
    lead_score: Mapped[int] = mapped_column(Integer, default=0)
    last_interaction_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    last_visit_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    referral_count: Mapped[int] = mapped_column(Integer, default=0)
    order_total_fen: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy reads a dict


class TouchVia(StrEnum):
    CREATE = "create"  # createPatient: the record's first channel, or a known person again
    WECOM = "wecom"  # a WeCom external-contact callback
    IMPORT = "import"


class ChannelTouch(TenantScoped, Base):
    """One time a person came in through a channel. OneID: the same phone, WeChat, WeCom or
    national id through another door is a touch on the one record, not a second patient; the
    first touch of a record is the channel it joined through."""

    __tablename__ = "patient_channel_touches"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            ondelete="CASCADE",
        ),
        Index("ix_channel_touches_patient", "tenant_id", "patient_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    channel: Mapped[str] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
