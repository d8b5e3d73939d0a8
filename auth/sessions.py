"""Sign-in, refresh, sign-out and turning a bearer token into a principal.

Failures are generic ("invalid credentials") whether the tenant, the account or the password
was wrong, and cost one Argon2 verification either way. Refresh tokens rotate on every use; a
refresh token presented after it was rotated revokes every session of that user (theft).
Opaque tokens carry their tenant (`ppr_<tenant hex>_<secret>`) so the session can be bound to
the tenant before the token's row is looked up under row-level security.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth import totp
from auth.models import RefreshSession, StaffUser
from auth.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password
from auth.patient_principal import patient_principal
from auth.policy import load_policy
from auth.principal import Principal
from auth.ratelimit import WindowLimit
from auth.repository import SessionRepository, StaffRepository
from auth.signing_keys import SigningKeys, TokenError
from auth.tokens import (
    AccessClaims,
    decode_access_token,
    decode_patient_token,
    issue_access_token,
    new_opaque_token,
    opaque_token_digest,
)
from domain.tenants.models import Tenant
from domain.tenants.repository import TenantRepository
from tenancy.session import bind_tenant

REFRESH_TTL = timedelta(days=14)
LOCKOUT_AFTER = 5
LOCKOUT_FOR = timedelta(minutes=15)


class AuthError(Exception):
    """Sign-in or token failure; `code` is UNAUTHENTICATED or RATE_LIMITED."""

    def __init__(self, message: str = "invalid credentials", code: str = "UNAUTHENTICATED"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str | None
    expires_in: int
    # Only to set up a second factor (no refresh token): see totp.must_enrol.
    enrolment_only: bool = False


@dataclass(frozen=True)
class Challenge:
    """signIn's answer when a second factor is due: verifyTotp finishes it."""

    challenge: str
    expires_in: int


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SignInLimits:
    per_account: WindowLimit
    per_address: WindowLimit
    # Second-factor codes per member (tenant and staff id), whichever challenge they come with;
    # counted in the database like the others, so every process shares the count.
    second_factor: WindowLimit = field(default_factory=lambda: WindowLimit(5, 300, "second_factor"))
    # Patient sign-ins from the mini-program, per tenant and client address.
    patient: WindowLimit = field(default_factory=lambda: WindowLimit(60, 300, "patient"))
    # Survey links opened or answered (no sign-in: the link is the key), per client address:
    # guessing one is hopeless, and this keeps anyone from trying at speed.
    survey_link: WindowLimit = field(default_factory=lambda: WindowLimit(120, 300, "survey_link"))
    challenge_ttl: timedelta = timedelta(minutes=5)
    # The clock for challenges and TOTP time steps (tests move it; nothing else should).
    now: Callable[[], datetime] = _utcnow

    @classmethod
    def default(cls) -> SignInLimits:
        return cls(WindowLimit(10, 300, "account"), WindowLimit(50, 300, "address"))


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def split_opaque(token: str, prefix: str) -> uuid.UUID:
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != prefix:
        raise AuthError("invalid token")
    try:
        return uuid.UUID(hex=parts[1])
    except ValueError:
        raise AuthError("invalid token") from None


# From the moment `patientpool tenant offboard` starts, no new token is issued for the chain:
# neither sign-in, nor refresh, nor a second factor. Access tokens already out run their 15
# minutes, and read "shredded" on every sealed field once the keys are gone.
OFFBOARDED = "this chain has been offboarded; sign-in is closed"


async def _refuse_offboarded(session: AsyncSession, user: StaffUser) -> None:
    state = await SessionRepository(session).offboarding_state(user)
    if state is not None:
        raise AuthError(OFFBOARDED)


async def issue_tokens(session: AsyncSession, keys: SigningKeys, user: StaffUser) -> TokenPair:
    await _refuse_offboarded(session, user)
    refresh = new_opaque_token(f"ppr_{user.tenant_id.hex}_")
    row = RefreshSession(
        staff_id=user.id, token_digest=opaque_token_digest(refresh), expires_at=_now() + REFRESH_TTL
    )
    session.add(row)
    await session.flush()
    access, expires_in = issue_access_token(
        keys,
        tenant_id=user.tenant_id,
        user_id=user.id,
        session_id=row.id,
        token_version=user.token_version,
    )
    return TokenPair(access, refresh, expires_in)


async def sign_in(
    sessions: async_sessionmaker[AsyncSession],
    keys: SigningKeys,
    limits: SignInLimits,
    *,
    tenant_slug: str,
    email: str,
    password: str,
    client_addr: str,
) -> TokenPair | Challenge:
    """Tokens; a Challenge for a member with a second factor; or, for a member of a role the
    chain requires a second factor of who has none yet, an access token that may only enrol."""
    email = email.strip().lower()
    if not await limits.per_address.hit(sessions, client_addr) or not await limits.per_account.hit(
        sessions, f"{tenant_slug}\x00{email}"
    ):
        raise AuthError("too many sign-in attempts; try again later", "RATE_LIMITED")
    async with sessions() as session, session.begin():
        tenant = await TenantRepository(session).by_slug(tenant_slug)
        user = None
        if tenant is not None:
            await bind_tenant(session, tenant.id)
            user = await StaffRepository(session).member_by_email(email)
        # An account without a password (invited, or reset) costs one Argon2 verification
        # too, so timing does not tell it apart; it never verifies.
        usable = user is not None and user.password_hash.startswith("$argon2")
        ok = verify_password(user.password_hash if usable else DUMMY_HASH, password) and usable
        if user is None or tenant is None:
            raise AuthError()
        locked = user.locked_until is not None and _aware(user.locked_until) > _now()
        if ok and tenant.offboarding_state is not None:
            raise AuthError(OFFBOARDED)
        if not ok or locked or not user.is_active:
            if not ok:
                # Counted in this transaction, which commits: the error is raised after it.
                user.failed_logins += 1
                if user.failed_logins >= LOCKOUT_AFTER:
                    user.locked_until = _now() + LOCKOUT_FOR
                    user.failed_logins = 0
            failure = AuthError()
        else:
            failure = None
            user.failed_logins = 0
            user.locked_until = None
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            outcome = await _second_step(session, keys, limits, tenant, user)
    if failure is not None:
        raise failure
    await limits.per_account.reset(sessions, f"{tenant_slug}\x00{email}")
    return outcome


async def _second_step(
    session: AsyncSession, keys: SigningKeys, limits: SignInLimits, tenant: Tenant, user: StaffUser
) -> TokenPair | Challenge:
    if await totp.factor_of(session, user) is not None:
        ttl = limits.challenge_ttl
        challenge = await totp.new_challenge(session, user, ttl, limits.now())
        return Challenge(challenge, int(ttl.total_seconds()))
    if totp.required_roles(tenant) and totp.must_enrol(
        tenant, await load_policy(session, tenant.policy_version), user
    ):
        access, expires_in = issue_access_token(
            keys,
            tenant_id=tenant.id,
            user_id=user.id,
            session_id=None,
            token_version=user.token_version,
            enrolment_only=True,
        )
        return TokenPair(access, None, expires_in, enrolment_only=True)
    return await issue_tokens(session, keys, user)


async def refresh(
    sessions: async_sessionmaker[AsyncSession], keys: SigningKeys, token: str
) -> TokenPair:
    tenant_id = split_opaque(token, "ppr")
    failure: AuthError | None = None
    async with sessions() as session, session.begin():
        await bind_tenant(session, tenant_id)
        row = await SessionRepository(session).refresh_session(opaque_token_digest(token))
        if row is None:
            raise AuthError("invalid token")
        user = await StaffRepository(session).member(row.staff_id)
        if row.revoked_at is not None:
            # A rotated token came back: someone holds a copy. End every session of the user.
            if user is not None:
                await revoke_sessions(session, user)
            failure = AuthError("invalid token")
        elif _aware(row.expires_at) <= _now() or user is None or not user.is_active:
            failure = AuthError("invalid token")
        else:
            row.revoked_at = _now()
            pair = await issue_tokens(session, keys, user)
    if failure is not None:
        raise failure
    return pair


async def sign_out(session: AsyncSession, principal: Principal) -> bool:
    if principal.session_id is None:
        return False
    return bool(await SessionRepository(session).end_session(principal.session_id, _now()))


async def revoke_sessions(session: AsyncSession, user: StaffUser) -> None:
    await SessionRepository(session).end_sessions_of(user, _now())


async def change_password(
    session: AsyncSession, principal: Principal, current: str, new: str
) -> None:
    """New password: old tokens stop working (token_version) and refresh sessions end."""
    user = await StaffRepository(session).member(principal.id)
    if user is None or principal.kind != "user":
        raise AuthError()
    if not verify_password(user.password_hash, current):
        raise AuthError("current password is wrong")
    if len(new) < 10:
        raise AuthError("the new password must have at least 10 characters", "BAD_USER_INPUT")
    user.password_hash = hash_password(new)
    user.token_version += 1
    await revoke_sessions(session, user)
    await session.flush()


def check_bearer(keys: SigningKeys, bearer: str | None) -> AccessClaims | None:
    """What can be told of a bearer token without the database: present, well formed, and
    (an access token) signed by us and unexpired; its claims (None for a service token).
    AuthError otherwise. Whether its user, session or service token still stands is for
    principal_from_bearer."""
    if not bearer:
        raise AuthError("sign in first: send Authorization: Bearer <access token>")
    if bearer.startswith("pps_"):
        split_opaque(bearer, "pps")
        return None
    try:
        return decode_access_token(keys, bearer)
    except TokenError as staff_error:
        try:
            # A patient's token (its own audience and type): the gate lets it reach only the
            # patient root fields, and those only take it.
            return decode_patient_token(keys, bearer)
        except TokenError:
            raise AuthError(str(staff_error)) from None


async def principal_from_bearer(
    session: AsyncSession, keys: SigningKeys, bearer: str, claims: AccessClaims | None = None
) -> Principal:
    """Verify a bearer token (unless `claims` are what check_bearer already found in it), bind
    the session to its tenant and load the principal."""
    if bearer.startswith("pps_"):
        return await _service_principal(session, bearer)
    claims = claims or check_bearer(keys, bearer)
    if claims is not None and claims.kind == "patient":
        patient = await patient_principal(session, claims)
        if patient is None:
            raise AuthError("invalid token")
        return patient
    if claims is None or claims.kind != "user" or claims.user_id is None:
        raise AuthError("invalid token")
    await bind_tenant(session, claims.tenant_id)
    # One round trip: the user, their tenant, their refresh session, one row per branch.
    rows = await SessionRepository(session).staff_principal_rows(claims.user_id, claims.session_id)
    if not rows:
        raise AuthError("invalid token")
    user, slug, version, revoked_at, _branch = rows[0]
    if not user.is_active or user.token_version != claims.token_version or revoked_at:
        raise AuthError("invalid token")
    policy = await load_policy(session, version)
    subject = f"user:{user.id}"
    region_branches: frozenset[uuid.UUID] = frozenset()
    if policy.allows(subject, "patients:region", "read") or policy.allows(
        subject, "patients:region", "write"
    ):
        # Read per request, like the branches: a region change holds on the next request.
        region_branches = frozenset(await StaffRepository(session).region_branch_ids(user))
    return Principal(
        kind="user",
        id=user.id,
        tenant_id=claims.tenant_id,
        tenant_slug=slug,
        display_name=user.display_name,
        roles=tuple(policy.roles_of(subject)),
        branch_ids=frozenset(r[4] for r in rows if r[4] is not None),
        policy=policy,
        session_id=claims.session_id,
        region_branch_ids=region_branches,
        enrolment_only=claims.enrolment_only,
    )


async def _service_principal(session: AsyncSession, token: str) -> Principal:
    tenant_id = split_opaque(token, "pps")
    await bind_tenant(session, tenant_id)
    row = await SessionRepository(session).service_token(opaque_token_digest(token))
    if row is None or row[0].revoked_at is not None:
        raise AuthError("invalid token")
    svc, slug, version = row
    policy = await load_policy(session, version)
    return Principal(
        kind="service",
        id=svc.id,
        tenant_id=tenant_id,
        tenant_slug=slug,
        display_name=svc.name,
        roles=(),
        branch_ids=frozenset(),
        policy=policy,
    )
