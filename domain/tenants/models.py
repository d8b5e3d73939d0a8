"""Tenants (clinic brands / chains), their regions (大区 / 片区) and branches (门店 / 医馆)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKeyConstraint, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, new_id


class TenantKind(StrEnum):
    DENTAL = "dental"
    TCM = "tcm"
    HOSPITAL = "hospital"
    OTHER = "other"


class Tenant(Timestamped, Base):
    """The registry of tenants; the one table that is not tenant-owned."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default=TenantKind.OTHER)
    # Bumped whenever the tenant's Casbin rules change; processes reload their cached enforcer.
    policy_version: Mapped[int] = mapped_column(Integer, default=1)
    # Access-log retention in days (None: keep for ever); archived segments still verify.
    audit_retention_days: Mapped[int | None] = mapped_column(Integer, default=None)
    # The roles that must sign in with a second factor, comma-separated; None until the
    # chain turns enforcement on (setTwoFactorPolicy). Enrolled members always get the
    # challenge, whatever this says.
    two_factor_roles: Mapped[str | None] = mapped_column(String(500), default=None)
    # `patientpool tenant offboard`: None while the chain is served; then exporting, exported
    # and shredded (domain.tenants.offboarding.OffboardingState). Set: sign-in is refused.
    offboarding_state: Mapped[str | None] = mapped_column(String(20), default=None)
    # How long a stated purpose (statePurpose) opens a patient's health fields, in minutes.
    reason_window_minutes: Mapped[int] = mapped_column(Integer, default=30, server_default="30")


class Branch(TenantScoped, Timestamped, Base):
    __tablename__ = "branches"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100), default="")
    # The clinic's own address and front-desk phone: business details, not personal data.
    address: Mapped[str] = mapped_column(String(300), default="", server_default="")
    phone: Mapped[str] = mapped_column(String(40), default="", server_default="")
    # Closed: no new patients or visits; history, metrics and scopes stay. Reopening clears it.
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class Region(TenantScoped, Timestamped, Base):
    """A group of branches between HQ and the clinics (大区 / 片区)."""

    __tablename__ = "regions"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))


def region_fk(column: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["tenant_id", column], ["regions.tenant_id", "regions.id"], ondelete="CASCADE"
    )


class BranchRegion(TenantScoped, Base):
    """Which region a branch belongs to (at most one; a branch may belong to none)."""

    __tablename__ = "branch_regions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "branch_id"], ["branches.tenant_id", "branches.id"], ondelete="CASCADE"
        ),
        region_fk("region_id"),
        Index("ix_branch_regions_region", "tenant_id", "region_id"),
    )

    branch_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    region_id: Mapped[uuid.UUID] = mapped_column(Uuid)


def branch_fk(column: str, name: str | None = None) -> ForeignKeyConstraint:
    """A composite foreign key to a branch of the same tenant (never another tenant's)."""
    return ForeignKeyConstraint(
        ["tenant_id", column], ["branches.tenant_id", "branches.id"], name=name
    )
