"""Second factors: TOTP (RFC 6238, by pyotp) with one-time recovery codes, the challenge that
signIn hands out when one is due, and the chain's setting of which roles must use one.

- The secret is sealed with the tenant's data key, bound to `staff_totp.secret` and the
  member's id; it only counts once the member has confirmed a code from their app.
- A code is accepted for the current 30-second step or one step either side (clock drift),
  and only for a step later than the last one accepted: no code works twice.
- Ten recovery codes (80 random bits each) are shown once at confirmation and kept only as
  SHA-256 digests; each works once.
- The challenge (`ppc_<tenant hex>_<secret>`) is a one-time staff token (`StaffToken`) living
  minutes; the tenant in it binds the session before its row is looked up under RLS.

Nothing here logs or returns secrets, codes or challenges except to the member they belong to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime, timedelta

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from auth.models import StaffRecoveryCode, StaffToken, StaffTokenPurpose, StaffTotp, StaffUser
from auth.policy import TenantPolicy
from auth.repository import StaffRepository, TwoFactorRepository
from auth.tokens import new_opaque_token, opaque_token_digest
from domain.errors import BadInput, Conflict
from domain.tenants.models import Tenant
from tenancy.keyring import FieldCipher

ISSUER = "patientpool"
TABLE = "staff_totp"
RECOVERY_CODES = 10
DRIFT_STEPS = 1
CHALLENGE_PREFIX = "ppc"
# What MLPS 2.0 level 3 asks of administrators; the roles setTwoFactorPolicy names unless told.
DEFAULT_REQUIRED_ROLES = ("hq_admin", "auditor")
_SIX_DIGITS = re.compile(r"\d{6}")


def _seal(cipher: FieldCipher, secret: str, staff_id: uuid.UUID) -> bytes:
    return cipher.encrypt(secret, table=TABLE, column="secret", row_id=staff_id)


def _open(cipher: FieldCipher, row: StaffTotp) -> str:
    return cipher.decrypt(row.secret_ct, table=TABLE, column="secret", row_id=row.staff_id)


def _step(now: datetime) -> int:
    return int(now.timestamp()) // 30


def matching_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step `code` is right for, near `now` and after `last_step`; else None."""
    code = code.strip().replace(" ", "")
    if not _SIX_DIGITS.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    current = _step(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared (in constant time), so timing does not tell which matched.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found


def _normalise_recovery(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()


def recovery_digest(code: str) -> bytes:
    return hashlib.sha256(b"pp.recovery.v1\x00" + _normalise_recovery(code).encode()).digest()


def _new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 16 characters, 80 bits
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


async def factor_of(
    session: AsyncSession, user: StaffUser, *, confirmed: bool = True
) -> StaffTotp | None:
    row = await TwoFactorRepository(session).factor(user)
    if row is None or (confirmed and row.confirmed_at is None):
        return None
    return row


async def start_enrolment(
    session: AsyncSession, cipher: FieldCipher, user: StaffUser, tenant_slug: str
) -> str:
    """A new secret (replacing an unconfirmed one) and its otpauth:// URI for the member's app."""
    row = await factor_of(session, user, confirmed=False)
    if row is not None and row.confirmed_at is not None:
        raise Conflict(
            "a second factor is already set up; HQ can reset it (resetTotp)", field="totp"
        )
    secret = pyotp.random_base32()
    if row is None:
        row = StaffTotp(staff_id=user.id, secret_ct=b"")
        session.add(row)
    row.secret_ct = _seal(cipher, secret, user.id)
    row.last_step = None
    await session.flush()
    return pyotp.TOTP(secret).provisioning_uri(
        name=f"{tenant_slug}:{user.email}", issuer_name=ISSUER
    )


async def confirm(
    session: AsyncSession, cipher: FieldCipher, user: StaffUser, code: str, now: datetime
) -> list[str]:
    """Activate the pending factor with a code from the app; the ten recovery codes (once)."""
    row = await factor_of(session, user, confirmed=False)
    if row is None:
        raise BadInput("start with startTotpEnrolment", field="code")
    if row.confirmed_at is not None:
        raise Conflict("a second factor is already set up", field="code")
    step = matching_step(_open(cipher, row), code, now, row.last_step)
    if step is None:
        raise BadInput("this code is not the one your app shows now", field="code")
    row.confirmed_at = now
    row.last_step = step
    await TwoFactorRepository(session).drop_recovery_codes(user)
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    session.add_all(
        StaffRecoveryCode(staff_id=user.id, code_digest=recovery_digest(c)) for c in codes
    )
    await session.flush()
    return codes


async def spend_code(
    session: AsyncSession, cipher: FieldCipher, row: StaffTotp, code: str, now: datetime
) -> str | None:
    """Check a TOTP code ("totp") or spend a recovery code ("recovery"); None when neither."""
    step = matching_step(_open(cipher, row), code, now, row.last_step)
    if step is not None:
        row.last_step = step
        await session.flush()
        return "totp"
    if _SIX_DIGITS.fullmatch(code.strip()):
        return None
    spent = await TwoFactorRepository(session).spend_recovery_code(row, recovery_digest(code), now)
    return "recovery" if spent else None


async def remove(session: AsyncSession, user: StaffUser) -> bool:
    """Drop a member's factor (set up or pending) and recovery codes; True if there was one."""
    factors = TwoFactorRepository(session)
    removed = await factors.drop_factor(user)
    await factors.drop_recovery_codes(user)
    return bool(removed)


async def new_challenge(
    session: AsyncSession, user: StaffUser, ttl: timedelta, now: datetime
) -> str:
    """A one-time challenge for verifyTotp; the member's earlier unspent ones stop working."""
    await StaffRepository(session).void_tokens(user, StaffTokenPurpose.TOTP_CHALLENGE, now)
    challenge = new_opaque_token(f"{CHALLENGE_PREFIX}_{user.tenant_id.hex}_")
    session.add(
        StaffToken(
            staff_id=user.id,
            purpose=StaffTokenPurpose.TOTP_CHALLENGE,
            token_digest=opaque_token_digest(challenge),
            expires_at=now + ttl,
        )
    )
    await session.flush()
    return challenge


def required_roles(tenant: Tenant) -> frozenset[str] | None:
    """The roles that must use a second factor; None while the chain has not turned it on."""
    if tenant.two_factor_roles is None:
        return None
    return frozenset(r for r in tenant.two_factor_roles.split(",") if r)


def set_required_roles(tenant: Tenant, policy: TenantPolicy, roles: set[str]) -> list[str]:
    known = {p[0] for p in policy.enforcer.get_filtered_policy(1, policy.domain)}
    unknown = sorted(r for r in roles if r not in known or "," in r)
    if unknown:
        raise BadInput(f"unknown role {unknown[0]}", field="roles")
    tenant.two_factor_roles = ",".join(sorted(roles))
    return sorted(roles)


def must_enrol(tenant: Tenant, policy: TenantPolicy, user: StaffUser) -> bool:
    """A member in a required role who has no second factor yet: they may only enrol."""
    required = required_roles(tenant)
    return bool(required) and bool(required & set(policy.roles_of(f"user:{user.id}")))
