"""The one-time survey link: `base64url(tenant id | delivery id | expiry | tag)`.

Signed with an HMAC under a per-tenant key, not with the app's signing keys, because:

- it must fit in an SMS next to the text: 70 characters, where a JWT signed by the access-token
  keys runs to about 300;
- a survey link is not a sign-in: a key that signs no access token can never make a link
  pass for one (or the reverse), whatever a verifier gets wrong;
- the key is the tenant's own (derived from its blind-index key under the purpose
  `survey-link`, `FieldCipher.blind_index`), so crypto-shredding a chain kills its links too,
  and one chain's key never vouches for another's delivery.

The token carries the tenant id (not personal data) so the public `answerSurvey` can bind the
right tenant before it verifies; the tag covers the tenant id too. Single use is not the
token's business: the answer's primary key is the delivery id (domain.surveys.answers).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from tenancy.keyring import FieldCipher

_BODY = struct.Struct(">16s16sI")  # tenant id, delivery id, expiry (unix seconds)
_TAG = 16
SIZE = _BODY.size + _TAG
PURPOSE = "survey-link"


class BadLink(Exception):
    """Not a link we made, or no longer one (the caller answers all of these alike)."""


@dataclass(frozen=True)
class Link:
    tenant_id: uuid.UUID
    delivery_id: uuid.UUID
    expires_at: datetime


def _tag(cipher: FieldCipher, body: bytes) -> bytes:
    return cipher.blind_index(body.hex(), kind=PURPOSE)[:_TAG]


def issue(cipher: FieldCipher, delivery_id: uuid.UUID, expires_at: datetime) -> str:
    body = _BODY.pack(cipher.tenant_id.bytes, delivery_id.bytes, int(expires_at.timestamp()))
    return base64.urlsafe_b64encode(body + _tag(cipher, body)).rstrip(b"=").decode()


def peek(token: str) -> Link:
    """What the token claims, unverified (to find the tenant whose key verifies it)."""
    if not 1 <= len(token) <= 100:
        raise BadLink()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadLink() from None
    if len(raw) != SIZE:
        raise BadLink()
    tenant, delivery, expiry = _BODY.unpack(raw[: _BODY.size])
    return Link(
        uuid.UUID(bytes=tenant), uuid.UUID(bytes=delivery), datetime.fromtimestamp(expiry, UTC)
    )


def verify(cipher: FieldCipher, token: str, now: datetime) -> Link:
    """The link, if this tenant's key made it and it has not expired."""
    link = peek(token)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    body, tag = raw[: _BODY.size], raw[_BODY.size :]
    if link.tenant_id != cipher.tenant_id or not hmac.compare_digest(tag, _tag(cipher, body)):
        raise BadLink()
    if now >= link.expires_at:
        raise BadLink()
    return link
