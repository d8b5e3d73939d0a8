"""Access tokens (short-lived JWTs) and the opaque refresh and service tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from auth.signing_keys import SigningKeys, TokenError

ACCESS_TOKEN_TTL_SECONDS = 900
ISSUER = "patientpool"
AUDIENCE = "patientpool-api"
# Patients' tokens (signInPatient) have an audience and a type of their own: a staff token is
# never taken as a patient's, nor the reverse, whatever else they share (keys, issuer).
PATIENT_AUDIENCE = "patientpool-patient"
PATIENT_TOKEN_TYPE = "patient+jwt"
PATIENT_TOKEN_TTL_SECONDS = 7200
ENROLMENT_SCOPE = "totp-enrolment"


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID | None
    service_token_id: uuid.UUID | None
    tenant_id: uuid.UUID
    session_id: uuid.UUID | None
    token_version: int
    expires_at: int
    kind: Literal["user", "service", "patient"]
    # A token that may only set up a second factor (a required role not yet enrolled).
    enrolment_only: bool = False


def issue_access_token(
    keys: SigningKeys,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    session_id: uuid.UUID | None,
    token_version: int,
    now: int | None = None,
    ttl: int = ACCESS_TOKEN_TTL_SECONDS,
    enrolment_only: bool = False,
) -> tuple[str, int]:
    issued = int(time.time()) if now is None else now
    claims = {
        "sub": str(user_id),
        "tid": str(tenant_id),
        "sid": str(session_id) if session_id else None,
        "ver": token_version,
        "kind": "user",
        "jti": secrets.token_hex(8),
        "iat": issued,
        "exp": issued + ttl,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    if enrolment_only:
        claims["scp"] = ENROLMENT_SCOPE
    return keys.sign(claims), ttl


def decode_access_token(keys: SigningKeys, token: str) -> AccessClaims:
    claims = keys.verify(token, audience=AUDIENCE, issuer=ISSUER)
    if claims.get("kind") != "user":
        raise TokenError("invalid token")
    try:
        sid = claims.get("sid")
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            service_token_id=None,
            tenant_id=uuid.UUID(claims["tid"]),
            session_id=uuid.UUID(sid) if sid else None,
            token_version=int(claims["ver"]),
            expires_at=int(claims["exp"]),
            kind="user",
            enrolment_only=claims.get("scp") == ENROLMENT_SCOPE,
        )
    except (KeyError, ValueError, TypeError):
        raise TokenError("invalid token") from None


def issue_patient_token(
    keys: SigningKeys,
    *,
    tenant_id: uuid.UUID,
    patient_id: uuid.UUID,
    now: int | None = None,
    ttl: int = PATIENT_TOKEN_TTL_SECONDS,
) -> tuple[str, int]:
    issued = int(time.time()) if now is None else now
    claims = {
        "sub": str(patient_id),
        "tid": str(tenant_id),
        "kind": "patient",
        "jti": secrets.token_hex(8),
        "iat": issued,
        "exp": issued + ttl,
        "iss": ISSUER,
        "aud": PATIENT_AUDIENCE,
    }
    return keys.sign(claims, PATIENT_TOKEN_TYPE), ttl


def decode_patient_token(keys: SigningKeys, token: str) -> AccessClaims:
    claims = keys.verify(
        token, audience=PATIENT_AUDIENCE, issuer=ISSUER, token_type=PATIENT_TOKEN_TYPE
    )
    if claims.get("kind") != "patient":
        raise TokenError("invalid token")
    try:
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            service_token_id=None,
            tenant_id=uuid.UUID(claims["tid"]),
            session_id=None,
            token_version=0,
            expires_at=int(claims["exp"]),
            kind="patient",
        )
    except (KeyError, ValueError, TypeError):
        raise TokenError("invalid token") from None


def new_opaque_token(prefix: str) -> str:
    # token_urlsafe may contain "_": keep the secret free of it, the separator of the prefix.
    return prefix + secrets.token_urlsafe(32).replace("_", "-")


def opaque_token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
