"""The private pool around patients: channels, stage history, tags, interaction events, lead
scoring rules, saved segments, background jobs and follow-up tasks."""

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
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.tenants.models import branch_fk
from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, new_id, utcnow


def patient_fk(column: str = "patient_id") -> ForeignKeyConstraint:
    """A composite foreign key to a patient of the same tenant."""
    return ForeignKeyConstraint(
        ["tenant_id", column], ["patients.tenant_id", "patients.id"], ondelete="CASCADE"
    )


class ChannelKind(StrEnum):
    PLATFORM = "platform"  # 小红书, 抖音, 公众号 …
    CAMPAIGN = "campaign"
    OFFLINE_EVENT = "offline_event"
    REFERRAL = "referral"
    QR_CODE = "qr_code"  # 渠道活码


class Channel(TenantScoped, Timestamped, Base):
    """Where patients come from; patients name it by `code` in `source_channel`."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default=ChannelKind.PLATFORM)


class StageChange(TenantScoped, Base):
    """History of lifecycle stages: who moved a patient, when and why."""

    __tablename__ = "stage_changes"
    __table_args__ = (patient_fk(), Index("ix_stage_changes_patient", "tenant_id", "patient_id"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    from_stage: Mapped[str] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    changed_by: Mapped[str] = mapped_column(String(64))  # "user:<id>", "service:<id>", "system"
    reason: Mapped[str] = mapped_column(String(200), default="")
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class TagGroup(TenantScoped, Timestamped, Base):
    """Tags come in groups; a health group's tags reveal health data and are hidden from roles
    that may not read health fields."""

    __tablename__ = "tag_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    is_health: Mapped[bool] = mapped_column(Boolean, default=False)


class Tag(TenantScoped, Timestamped, Base):
    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("tenant_id", "group_id", "name"),
        ForeignKeyConstraint(
            ["tenant_id", "group_id"],
            ["tag_groups.tenant_id", "tag_groups.id"],
            ondelete="CASCADE",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    group_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    name: Mapped[str] = mapped_column(String(100))
    # A segment filter (JSON) for automatic tags; None for manual ones.
    auto_rule: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)


class PatientTag(TenantScoped, Base):
    __tablename__ = "patient_tags"
    __table_args__ = (
        patient_fk(),
        ForeignKeyConstraint(
            ["tenant_id", "tag_id"], ["tags.tenant_id", "tags.id"], ondelete="CASCADE"
        ),
        Index("ix_patient_tags_tag", "tenant_id", "tag_id", "patient_id"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tag_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    source: Mapped[str] = mapped_column(String(10), default="manual")  # manual | auto
    added_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class EventType(StrEnum):
    READ_ARTICLE = "read_article"
    DOWNLOAD_MATERIAL = "download_material"
    EVENT_SIGNUP = "event_signup"
    EVENT_ATTENDED = "event_attended"
    LIVE_STREAM_ATTENDED = "live_stream_attended"
    INTERACTION = "interaction"
    WENT_QUIET = "went_quiet"


class InteractionEvent(TenantScoped, Base):
    """Something a patient did; idempotent by the client's own event id."""

    __tablename__ = "interaction_events"
    __table_args__ = (
        patient_fk(),
        UniqueConstraint("tenant_id", "client_event_id"),
        Index("ix_events_patient_time", "tenant_id", "patient_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    client_event_id: Mapped[str] = mapped_column(String(100))
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    type: Mapped[str] = mapped_column(String(30))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    source: Mapped[str] = mapped_column(String(64), default="")


class ScoringRule(TenantScoped, Base):
    """Points for one event type, with an optional cap per period (e.g. 5 per day)."""

    __tablename__ = "scoring_rules"

    event_type: Mapped[str] = mapped_column(String(30), primary_key=True)
    points: Mapped[int] = mapped_column(Integer)
    cap: Mapped[int | None] = mapped_column(Integer, default=None)
    cap_period_days: Mapped[int] = mapped_column(Integer, default=1)


class ScoringSettings(TenantScoped, Base):
    """Per tenant: decay for inactivity and the qualification threshold."""

    __tablename__ = "scoring_settings"

    idle_days: Mapped[int] = mapped_column(Integer, default=7)
    idle_points: Mapped[int] = mapped_column(Integer, default=-10)
    threshold: Mapped[int] = mapped_column(Integer, default=60)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Segment(TenantScoped, Timestamped, Base):
    """A saved, named filter over patients, evaluated live."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    filter: Mapped[dict[str, object]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))


class JobStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(TenantScoped, Timestamped, Base):
    """A background job (rescoring) with progress that resumes from its cursor."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(10), default=JobStatus.RUNNING)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    cursor: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # The process working the job and until when it holds it (domain/pool/leases.py): it
    # renews the lease while it works; another process may claim the job once it lapses.
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class FollowUpKind(StrEnum):
    QUALIFIED_LEAD_CALL = "qualified_lead_call"
    RETURN_VISIT_REMINDER = "return_visit_reminder"
    POST_VISIT = "post_visit"
    HEALTH_EDUCATION = "health_education"
    COMPLAINT_CALLBACK = "complaint_callback"  # 投诉回访: a low satisfaction score


class FollowUpStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class FollowUp(TenantScoped, Timestamped, Base):
    """A task for staff about one patient (回访 / 随访)."""

    __tablename__ = "follow_ups"
    __table_args__ = (
        patient_fk(),
        branch_fk("branch_id"),
        # The follow-up list: a status, then paged in (due_at, id) order.
        Index("ix_follow_ups_page", "tenant_id", "status", "due_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    branch_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    kind: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(10), default=FollowUpStatus.OPEN)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(500), default="")
    # Idempotency for rule-made tasks: one task per (rule, subject).
    dedupe_key: Mapped[str | None] = mapped_column(String(100), default=None)
