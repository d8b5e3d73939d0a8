"""Finishing a sign-in with its second factor: `verifyTotp(challenge, code)`.

Called without a principal: the challenge carries its tenant, so the session is bound to it
before the challenge's row is looked up under row-level security. Every failure (an unknown,
spent, expired or foreign challenge, a wrong or replayed code) answers the same
UNAUTHENTICATED, so nobody learns which part was wrong; past the per-member limit it answers
RATE_LIMITED without looking at the code, right or wrong, until the window has passed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth import access_log, totp
from auth.access_log import Actor, RequestInfo
from auth.models import StaffToken, StaffTokenPurpose
from auth.repository import StaffRepository
from auth.sessions import AuthError, SignInLimits, TokenPair, issue_tokens, split_opaque
from auth.signing_keys import SigningKeys
from auth.tokens import opaque_token_digest
from auth.trail import AccessTrail
from tenancy.keyring import KeyProvider
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant

WRONG = "invalid challenge or code"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def verify_totp(
    sessions: async_sessionmaker[AsyncSession],
    keys: SigningKeys,
    provider: KeyProvider,
    limits: SignInLimits,
    *,
    challenge: str,
    code: str,
    info: RequestInfo,
) -> TokenPair:
    if not await limits.per_address.hit(sessions, info.client_addr):
        raise AuthError("too many attempts; try again later", "RATE_LIMITED")
    try:
        tenant_id = split_opaque(challenge, totp.CHALLENGE_PREFIX)
    except AuthError:
        raise AuthError(WRONG) from None
    now = limits.now()

    async def live_challenge(session: AsyncSession) -> StaffToken:
        await bind_tenant(session, tenant_id)
        row = await StaffRepository(session).token(opaque_token_digest(challenge))
        if (
            row is None
            or row.purpose != StaffTokenPurpose.TOTP_CHALLENGE
            or row.used_at is not None
            or row.revoked_at is not None
            or _aware(row.expires_at) <= now
        ):
            raise AuthError(WRONG)
        return row

    async with sessions() as session, session.begin():
        member_key = f"{tenant_id}\x00{(await live_challenge(session)).staff_id}"
    # Counted in a transaction of its own (the count holds across processes, and a write
    # inside the one below would wait on it under SQLite).
    if not await limits.second_factor.hit(sessions, member_key):
        raise AuthError("too many attempts; try again later", "RATE_LIMITED")
    async with sessions() as session, session.begin():
        row = await live_challenge(session)
        user = await StaffRepository(session).member(row.staff_id)
        if user is None or not user.is_active or not user.password_hash.startswith("$argon2"):
            raise AuthError(WRONG)
        factor = await totp.factor_of(session, user)
        if factor is None:  # reset since the challenge was given
            raise AuthError(WRONG)
        used = await totp.spend_code(
            session, await load_cipher(session, provider), factor, code, now
        )
        if used is None:
            raise AuthError(WRONG)
        row.used_at = now
        pair = await issue_tokens(session, keys, user)
        if used == "recovery":
            # A recovery code is the fallback for a lost device: auditors see each one spent.
            trail = AccessTrail()
            trail.admin("staff.recovery_code_use", "Staff", user.id)
            await access_log.append(session, Actor("user", str(user.id)), info, trail.events())
    await limits.second_factor.reset(sessions, member_key)
    return pair
