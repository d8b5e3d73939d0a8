"""Spending one-time staff tokens: an invitation (the account becomes active) or a password
reset. Called without a signed-in principal: the token carries its tenant, so the session is
bound to it before the token's row is looked up under row-level security."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth import access_log
from auth.access_log import Actor, RequestInfo
from auth.models import StaffTokenPurpose
from auth.passwords import hash_password
from auth.repository import StaffRepository
from auth.sessions import revoke_sessions
from auth.staff import PREFIX, check_password
from auth.tokens import opaque_token_digest
from auth.trail import AccessTrail
from domain.errors import BadInput
from tenancy.session import bind_tenant, current_tenant


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def tenant_of_token(token: str) -> tuple[str, uuid.UUID]:
    """(purpose, tenant) of a one-time token; BAD_USER_INPUT when it is not one."""
    parts = token.split("_")
    purpose = {v: k for k, v in PREFIX.items()}.get(parts[0]) if len(parts) == 3 else None
    try:
        if purpose is None:
            raise ValueError
        return purpose, uuid.UUID(hex=parts[1])
    except ValueError:
        raise BadInput("this token is not valid or has expired", field="token") from None


async def redeem(
    sessions: async_sessionmaker[AsyncSession],
    purpose: str,
    token: str,
    password: str,
    info: RequestInfo,
    now: datetime | None = None,
) -> uuid.UUID:
    """Spend an invitation (the account becomes active) or a reset token: set the password.
    Refused alike when the token is unknown, spent, revoked, expired or of the other kind."""
    _kind, tenant_id = tenant_of_token(token)
    check_password(password)
    async with sessions() as session, session.begin():
        await bind_tenant(session, tenant_id)
        return await spend(session, purpose, token, password, info, now)


async def spend(
    session: AsyncSession,
    purpose: str,
    token: str,
    password: str,
    info: RequestInfo,
    now: datetime | None = None,
) -> uuid.UUID:
    """`redeem` inside a session already bound to the token's tenant (the demo loader, which
    makes a chain in one transaction, accepts its staff's invitations this way)."""
    kind, tenant_id = tenant_of_token(token)
    check_password(password)
    invalid = BadInput("this token is not valid or has expired", field="token")
    if kind != purpose or current_tenant(session) != tenant_id:
        raise invalid
    staff = StaffRepository(session)
    row = await staff.token(opaque_token_digest(token))
    if (
        row is None
        or row.purpose != purpose
        or row.used_at is not None
        or row.revoked_at is not None
        or _aware(row.expires_at) <= (now or _now())
    ):
        raise invalid
    user = await staff.member(row.staff_id)
    if user is None:
        raise invalid
    row.used_at = _now()
    user.password_hash = hash_password(password)
    user.token_version += 1
    user.failed_logins = 0
    user.locked_until = None
    if purpose == StaffTokenPurpose.INVITATION:
        user.is_active = True
    await revoke_sessions(session, user)
    change = (
        "staff.invitation_accept" if kind == StaffTokenPurpose.INVITATION else "staff.password_set"
    )
    trail = AccessTrail()
    trail.admin(change, "Staff", user.id)
    await access_log.append(session, Actor("user", str(user.id)), info, trail.events())
    return user.id
