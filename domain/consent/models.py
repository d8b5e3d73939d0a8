"""Consent (知情同意) per patient, purpose and channel: every grant and withdrawal is kept
(`consent_records`, append-only), and the state in force is one row per (patient, purpose,
channel) (`consent_states`) that audiences and send paths join on.

PIPL treats medical health information as sensitive: processing it needs its own consent
(purpose `health_data`, channel `any`), apart from consent to be contacted for care or
marketing on a channel.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from domain.pool.models import patient_fk
from tenancy.orm import Base, TenantScoped, UtcDateTime, new_id, utcnow


class Purpose(StrEnum):
    CARE = "care"  # reminders and follow-ups about the patient's own care
    MARKETING = "marketing"  # campaigns, offers, events (营销)
    HEALTH_DATA = "health_data"  # processing sensitive health information


class ContactChannel(StrEnum):
    WECOM = "wecom"
    SMS = "sms"
    PHONE = "phone"
    MINI_PROGRAM = "mini_program"
    ANY = "any"  # for health_data, which is not about a channel


class ConsentRecord(TenantScoped, Base):
    """One grant or withdrawal, as it happened (never changed)."""

    __tablename__ = "consent_records"
    __table_args__ = (
        patient_fk(),
        Index("ix_consent_records_patient", "tenant_id", "patient_id", "recorded_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    purpose: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(20))
    granted: Mapped[bool] = mapped_column(Boolean)
    # The version of the consent text the patient agreed to (or withdrew from), e.g. "2026-09".
    text_version: Mapped[str] = mapped_column(String(40))
    # How it was given: paper_form, mini_program, wecom_chat, phone_call, in_person…
    method: Mapped[str] = mapped_column(String(40))
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ConsentState(TenantScoped, Base):
    """The consent in force for one (patient, purpose, channel): the latest record's."""

    __tablename__ = "consent_states"
    __table_args__ = (
        patient_fk(),
        Index("ix_consent_states_reach", "tenant_id", "purpose", "channel", "granted"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    text_version: Mapped[str] = mapped_column(String(40))
    since: Mapped[datetime] = mapped_column(UtcDateTime())
    record_id: Mapped[uuid.UUID] = mapped_column(Uuid)
