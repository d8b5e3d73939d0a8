"""Staff who sign in, their branches, refresh sessions, service tokens and Casbin rules."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.tenants.models import branch_fk, region_fk
from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime, new_id


class StaffUser(TenantScoped, Timestamped, Base):
    __tablename__ = "staff_users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254))
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on password change or disabling: every token minted before stops working.
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


def staff_fk(column: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["tenant_id", column], ["staff_users.tenant_id", "staff_users.id"], ondelete="CASCADE"
    )


class StaffBranch(TenantScoped, Base):
    """The branches a staff member works in: the `branch` row scope of their roles."""

    __tablename__ = "staff_branches"
    __table_args__ = (staff_fk("staff_id"), branch_fk("branch_id"))

    staff_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    branch_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


class StaffRegion(TenantScoped, Base):
    """The regions a staff member manages: the `region` row scope (their regions' branches)."""

    __tablename__ = "staff_regions"
    __table_args__ = (staff_fk("staff_id"), region_fk("region_id"))

    staff_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    region_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


class StaffTokenPurpose:
    INVITATION = "invitation"
    PASSWORD_RESET = "password_reset"
    # Handed out by signIn when a second factor is due; spent by verifyTotp (minutes).
    TOTP_CHALLENGE = "totp_challenge"


class StaffToken(TenantScoped, Timestamped, Base):
    """A one-time token handed to a person (an invitation, a password reset, a second-factor
    challenge): stored only as its SHA-256 digest, spent once, and void after `expires_at` or
    when revoked or replaced."""

    __tablename__ = "staff_tokens"
    __table_args__ = (
        staff_fk("staff_id"),
        UniqueConstraint("tenant_id", "token_digest"),
        Index("ix_staff_tokens_staff", "tenant_id", "staff_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    staff_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    purpose: Mapped[str] = mapped_column(String(20))
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class StaffTotp(TenantScoped, Timestamped, Base):
    """A staff member's TOTP second factor (RFC 6238). The secret is sealed with the tenant's
    data key, bound to this table, column and member; it counts only once confirmed. The
    last time step a code was accepted for is kept so no code works twice."""

    __tablename__ = "staff_totp"
    __table_args__ = (staff_fk("staff_id"),)

    staff_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    secret_ct: Mapped[bytes] = mapped_column(LargeBinary)
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)


class StaffRecoveryCode(TenantScoped, Base):
    """One of a member's ten one-time recovery codes: only its SHA-256 digest (the codes carry
    80 random bits each, so a plain digest is enough), spent once."""

    __tablename__ = "staff_recovery_codes"
    __table_args__ = (
        staff_fk("staff_id"),
        UniqueConstraint("tenant_id", "code_digest"),
        Index("ix_staff_recovery_codes_staff", "tenant_id", "staff_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    staff_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    code_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class RefreshSession(TenantScoped, Timestamped, Base):
    """One sign-in: the refresh token is stored as its SHA-256 digest and rotates on use."""

    __tablename__ = "refresh_sessions"
    __table_args__ = (staff_fk("staff_id"), UniqueConstraint("tenant_id", "token_digest"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    staff_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class ServiceToken(TenantScoped, Timestamped, Base):
    """A token for a mini-program backend: one tenant, a fixed set of actions."""

    __tablename__ = "service_tokens"
    __table_args__ = (UniqueConstraint("tenant_id", "token_digest"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    # What it may do lives in Casbin as rules for the subject `service:<id>`.
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class CasbinRule(TenantScoped, Base):
    """Casbin's rule rows (ptype, v0…v5), kept per tenant; the domain column is the tenant."""

    __tablename__ = "casbin_rules"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    ptype: Mapped[str] = mapped_column(String(10))
    v0: Mapped[str] = mapped_column(String(200), default="")
    v1: Mapped[str] = mapped_column(String(200), default="")
    v2: Mapped[str] = mapped_column(String(200), default="")
    v3: Mapped[str] = mapped_column(String(200), default="")
    v4: Mapped[str] = mapped_column(String(200), default="")
    v5: Mapped[str] = mapped_column(String(200), default="")


class SignInWindow(Base):
    """Hits of one limiter key in one fixed window (not tenant-owned: an address spans
    tenants)."""

    __tablename__ = "sign_in_windows"

    key_digest: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hits: Mapped[int] = mapped_column(Integer)
