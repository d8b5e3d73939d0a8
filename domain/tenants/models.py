"""Tenants (clinic brands / chains) and their branches (门店 / 医馆)."""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import ForeignKeyConstraint, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from tenancy.orm import Base, TenantScoped, Timestamped, new_id


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


class Branch(TenantScoped, Timestamped, Base):
    __tablename__ = "branches"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100), default="")


def branch_fk(column: str, name: str | None = None) -> ForeignKeyConstraint:
    """A composite foreign key to a branch of the same tenant (never another tenant's)."""
    return ForeignKeyConstraint(
        ["tenant_id", column], ["branches.tenant_id", "branches.id"], name=name
    )
