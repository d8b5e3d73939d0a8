"""Visits, orders (amounts in fen, integers, never floats), refunds and follow-up rules."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.pool.models import patient_fk
from domain.tenants.models import branch_fk
from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, new_id, utcnow


def staff_fk(column: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["tenant_id", column], ["staff_users.tenant_id", "staff_users.id"])


class VisitStatus(StrEnum):
    BOOKED = "booked"
    ARRIVED = "arrived"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


class Visit(TenantScoped, Timestamped, Base):
    """An appointment (预约) and, once the patient arrives, the visit (到诊)."""

    __tablename__ = "visits"
    __table_args__ = (
        patient_fk(),
        branch_fk("branch_id"),
        staff_fk("doctor_id"),
        # Covers what the chain metrics count per patient (PostgreSQL reads only the index).
        Index(
            "ix_visits_patient",
            "tenant_id",
            "patient_id",
            "status",
            postgresql_include=["arrived_at", "is_first"],
        ),
        Index("ix_visits_doctor", "tenant_id", "doctor_id", "patient_id"),
        Index("ix_visits_branch_time", "tenant_id", "branch_id", "scheduled_at"),
        Index("ix_visits_arrived", "tenant_id", "arrived_at"),
        # The visit list, paged in (scheduled_at, id) order.
        Index("ix_visits_page", "tenant_id", "scheduled_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    branch_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    doctor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    scheduled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(10), default=VisitStatus.BOOKED)
    arrived_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # Set on arrival: the patient's first visit (初诊) or a return visit (复诊).
    is_first: Mapped[bool | None] = mapped_column(Boolean, default=None)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"  # possibly partly refunded: see refunded_fen
    REFUNDED = "refunded"  # refunded in full
    CANCELLED = "cancelled"


class Order(TenantScoped, Timestamped, Base):
    """A deal (成交): service lines, paid once, refunded in part or in full."""

    __tablename__ = "orders"
    __table_args__ = (
        patient_fk(),
        branch_fk("branch_id"),
        # Covers what the chain metrics count per patient (PostgreSQL reads only the index).
        Index(
            "ix_orders_patient",
            "tenant_id",
            "patient_id",
            "status",
            postgresql_include=["paid_at", "is_first", "total_fen", "refunded_fen"],
        ),
        Index("ix_orders_paid", "tenant_id", "paid_at"),
        # The order list, paged in (created_at, id) order.
        Index("ix_orders_page", "tenant_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    patient_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    branch_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(10), default=OrderStatus.PENDING)
    total_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # Set on payment: the patient's first paid order (首单 / conversion) or a repurchase (复购).
    is_first: Mapped[bool | None] = mapped_column(Boolean, default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy reads a dict

    @property
    def net_fen(self) -> int:
        return self.total_fen - self.refunded_fen


class OrderLine(TenantScoped, Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"], ondelete="CASCADE"
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)


class Refund(TenantScoped, Base):
    __tablename__ = "refunds"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"], ondelete="CASCADE"
        ),
        Index("ix_refunds_order", "tenant_id", "order_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200), default="")
    refunded_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))


class FollowUpTrigger(StrEnum):
    VISIT_ARRIVED = "visit_arrived"  # → a post-visit follow-up (术后 / 诊后回访)
    LEAD_QUALIFIED = "lead_qualified"  # → a call task for the qualified lead


class FollowUpRule(TenantScoped, Base):
    """Per tenant: after which delay a trigger creates its follow-up task; absent = default."""

    __tablename__ = "follow_up_rules"

    trigger: Mapped[str] = mapped_column(String(20), primary_key=True)
    delay_days: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


DEFAULT_DELAY_DAYS = {FollowUpTrigger.VISIT_ARRIVED: 3, FollowUpTrigger.LEAD_QUALIFIED: 1}
