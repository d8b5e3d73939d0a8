"""Satisfaction surveys (满意度调查) after visits: templates in versions, the rules that send
them, the outbox of deliveries (one per rule and visit) and the answers.

A template is edited by adding a version; a delivery keeps the version it was sent with, so an
answer is always read against the questions the patient saw. The delivery row is also what a
survey link names: its token carries the delivery id, and the answer's primary key is the
delivery id, so a link answers at most once whatever races.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, synonym

from domain.pool.models import patient_fk
from domain.tenants.models import branch_fk
from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, new_id


class QuestionKind(StrEnum):
    RATING = "rating"  # 1-5
    NPS = "nps"  # 0-10: how likely to recommend us
    SINGLE = "single"  # one of the options
    MULTIPLE = "multiple"  # any of the options
    TEXT = "text"  # free text, sealed like health data


class VisitKind(StrEnum):
    ANY = "any"
    FIRST = "first"  # 初诊
    RETURN = "return"  # 复诊


class SurveyDeliveryStatus(StrEnum):
    PENDING = "pending"  # in the outbox: waiting for its time (quiet hours, retry)
    SENDING = "sending"  # claimed by a sender; outcome not recorded yet
    DELIVERED = "delivered"  # the link left (SMS accepted, WeCom task created)
    ANSWERED = "answered"
    FAILED = "failed"
    WITHDRAWN = "withdrawn"  # consent withdrawn (or data erased) before it left: never sent
    SKIPPED = "skipped"  # never queued: no consent, no address or over the cap when due


class SurveyTemplate(TenantScoped, Timestamped, Base):
    """A survey HQ defines; its questions live in versions."""

    __tablename__ = "survey_templates"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(64))


class SurveyTemplateVersion(TenantScoped, Timestamped, Base):
    """One version of a template's questions (never changed once written)."""

    __tablename__ = "survey_template_versions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "template_id"],
            ["survey_templates.tenant_id", "survey_templates.id"],
            ondelete="CASCADE",
            name="fk_survey_template_versions_template",
        ),
    )

    template_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    # The message text that carries the link (the link is appended), HQ copy, no patient data.
    intro: Mapped[str] = mapped_column(String(200))
    # [{"key", "kind", "text", "options", "required"}]: HQ's copy, never patient data.
    questions: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))


class SurveyRule(TenantScoped, Timestamped, Base):
    """Send a template some days after an arrived visit (of a kind, at a branch)."""

    __tablename__ = "survey_rules"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "template_id"],
            ["survey_templates.tenant_id", "survey_templates.id"],
        ),
        branch_fk("branch_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    template_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    delay_days: Mapped[int] = mapped_column(Integer, default=1)
    visit_kind: Mapped[str] = mapped_column(String(10), default=VisitKind.ANY)
    branch_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    # In order of preference: the first the patient consented to and has an address on.
    channels: Mapped[list[str]] = mapped_column(JSON)
    # Visits that arrived from this moment on are surveyed (a new rule does not reach back).
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # How long a link answers, from its sending.
    answer_days: Mapped[int] = mapped_column(Integer, default=14)
    # A low score opens a complaint callback (投诉回访): any rating <= low_rating or NPS <=
    # low_nps (null: that kind never opens one).
    low_rating: Mapped[int | None] = mapped_column(Integer, default=2)
    low_nps: Mapped[int | None] = mapped_column(Integer, default=6)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64))


class SurveyDelivery(TenantScoped, Base):
    """One visit's survey in the outbox."""

    __tablename__ = "survey_deliveries"
    __table_args__ = (
        patient_fk(),
        branch_fk("branch_id"),
        ForeignKeyConstraint(
            ["tenant_id", "rule_id"], ["survey_rules.tenant_id", "survey_rules.id"]
        ),
        ForeignKeyConstraint(
            ["tenant_id", "template_id", "template_version"],
            [
                "survey_template_versions.tenant_id",
                "survey_template_versions.template_id",
                "survey_template_versions.version",
            ],
            name="fk_survey_deliveries_template_version",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "visit_id"], ["visits.tenant_id", "visits.id"], ondelete="CASCADE"
        ),
        # One survey per rule per visit, whatever races.
        Index("uq_survey_deliveries_visit", "tenant_id", "rule_id", "visit_id", unique=True),
        Index("ix_survey_deliveries_due", "tenant_id", "status", "next_attempt_at"),
        Index("ix_survey_deliveries_recent", "tenant_id", "patient_id", "queued_at"),
        Index("ix_survey_deliveries_sent", "tenant_id", "sent_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    rule_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    template_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    template_version: Mapped[int] = mapped_column(Integer)
    visit_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # The visit's branch and doctor, for the figures.
    branch_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    doctor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    channel: Mapped[str] = mapped_column(String(20), default="")
    status: Mapped[str] = mapped_column(String(20), default=SurveyDeliveryStatus.PENDING)
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # Our own short reason code (never a provider's text).
    last_error: Mapped[str] = mapped_column(String(40), default="")
    provider_ref: Mapped[str] = mapped_column(String(64), default="")


class SurveyAnswer(TenantScoped, Base):
    """The answer to one delivery (its primary key: one answer per link, enforced here)."""

    __tablename__ = "survey_answers"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "delivery_id"],
            ["survey_deliveries.tenant_id", "survey_deliveries.id"],
            ondelete="CASCADE",
        ),
        patient_fk(),
        Index("ix_survey_answers_time", "tenant_id", "answered_at"),
    )

    delivery_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    answered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Figures, kept plain: the sum and count of the rating answers, the first NPS answer.
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    nps: Mapped[int | None] = mapped_column(Integer, default=None)
    # {key: int | [option]}: ratings, scores and chosen options (HQ's option labels).
    choices: Mapped[dict[str, object]] = mapped_column(JSON)
    # {key: text} of the free-text answers, as JSON, sealed with the tenant key and bound to
    # this row (table survey_answers, column free_text, row delivery_id).
    free_text_ct: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    low_score: Mapped[bool] = mapped_column(Boolean, default=False)
    # The delivery id under the name the paging helpers use.
    id = synonym("delivery_id")
