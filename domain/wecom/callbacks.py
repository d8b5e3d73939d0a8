"""WeCom external-contact callbacks (客户联系回调): verify, decrypt, and act on the pool.

Signature checking and AES decryption are wechatpy's (WeCom's own scheme: SHA-1 over the
sorted token, timestamp, nonce and ciphertext; AES-256-CBC with the EncodingAESKey; the corp
id inside the plaintext must match). Around it: a freshness window on the timestamp, and one
effect per event however often WeCom delivers it: a resend of the very same request (WeCom's
retry when our answer was slow) answers `success` and does nothing again.

Events handled (Event = change_external_contact):
- add_external_contact / add_half_external_contact: a customer added a staff member. The
  contact is matched to a patient by the blind index of their WeCom external id; if none, a
  lead joins the pool in the strong-private tier (强私域) with the QR code's `State` as its
  channel. A known patient moves to the strong-private tier.
- del_follow_user: the customer removed the staff member: back to semi-private (半私域).
- anything else (edit, tag changes…) is recorded and otherwise ignored.
Event = change_external_chat (customer groups) is domain.wecom.groups's.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from xml.parsers.expat import ExpatError

import xmltodict
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from domain.patients.models import PoolTier, TouchVia
from domain.patients.repository import PatientRepository
from domain.patients.service import PatientService
from domain.wecom import groups
from domain.wecom.models import WecomApp, WecomCallback
from domain.wecom.repository import WecomRepository
from tenancy.keyring import FieldCipher

FRESH_SECONDS = 300
MAX_BODY = 64 * 1024
PLACEHOLDER_NAME = "企业微信客户"
TABLE = "wecom_apps"
ACTOR = "system:wecom"


class Refused(Exception):
    """The callback is not WeCom's, not this tenant's, not fresh, or seen before."""


class Malformed(Exception):
    """The body is not the XML WeCom sends."""


@dataclass(frozen=True)
class Outcome:
    outcome: str
    patient_id: uuid.UUID | None = None
    duplicate: bool = False
    # Patients a group event changed (moved to strong-private), for the access log.
    patient_ids: tuple[uuid.UUID, ...] = ()


def seal_secrets(cipher: FieldCipher, app: WecomApp, token: str, aes_key: str) -> None:
    """Store the callback token and key sealed, bound to the tenant (the app's row id: it
    must be stamped, see tenancy.session.stamp); checks the key is a WeCom EncodingAESKey
    (raises ValueError or AssertionError otherwise)."""
    WeChatCrypto(token, aes_key, app.corp_id)
    row = _row(app)
    app.token_ct = cipher.encrypt(token, table=TABLE, column="token", row_id=row)
    app.aes_key_ct = cipher.encrypt(aes_key, table=TABLE, column="aes_key", row_id=row)


def seal_api_secret(cipher: FieldCipher, app: WecomApp, secret: str) -> None:
    """Store the customer-contact secret (for group-message tasks) sealed like the others."""
    app.secret_ct = cipher.encrypt(secret, table=TABLE, column="secret", row_id=_row(app))


def _row(app: WecomApp) -> uuid.UUID:
    if app.tenant_id is None:
        raise ValueError("the WeCom app row is not stamped with its tenant")
    return app.tenant_id


def api_secret(cipher: FieldCipher, app: WecomApp) -> str | None:
    if app.secret_ct is None:
        return None
    return cipher.decrypt(app.secret_ct, table=TABLE, column="secret", row_id=app.tenant_id)


def crypto_for(cipher: FieldCipher, app: WecomApp) -> WeChatCrypto:
    row = app.tenant_id
    token = cipher.decrypt(app.token_ct, table=TABLE, column="token", row_id=row)
    key = cipher.decrypt(app.aes_key_ct, table=TABLE, column="aes_key", row_id=row)
    return WeChatCrypto(token, key, app.corp_id)


def _fresh(timestamp: str, now: float) -> None:
    try:
        moment = int(timestamp)
    except ValueError:
        raise Refused("timestamp is not a number") from None
    if abs(now - moment) > FRESH_SECONDS:
        raise Refused("timestamp outside the freshness window")


def verify_url(crypto: WeChatCrypto, signature: str, timestamp: str, nonce: str, echo: str) -> str:
    """WeCom's URL check when the callback is configured: answer the decrypted echostr."""
    _fresh(timestamp, time.time())
    try:
        return crypto.check_signature(signature, timestamp, nonce, echo)
    except (InvalidSignatureException, InvalidCorpIdException, ValueError) as exc:
        raise Refused(type(exc).__name__) from None


def open_message(
    crypto: WeChatCrypto, body: bytes, signature: str, timestamp: str, nonce: str
) -> dict[str, str]:
    """The decrypted event as a flat dict, or Refused / Malformed."""
    if len(body) > MAX_BODY:
        raise Malformed("body too large")
    _fresh(timestamp, time.time())
    try:
        envelope = xmltodict.parse(body, disable_entities=True)["xml"]
        if not isinstance(envelope, dict) or not isinstance(envelope.get("Encrypt"), str):
            raise Malformed("no Encrypt element")
    except (ExpatError, KeyError, TypeError, ValueError) as exc:
        raise Malformed(type(exc).__name__) from None
    try:
        plain = crypto.decrypt_message(envelope, signature, timestamp, nonce)
    except (InvalidSignatureException, InvalidCorpIdException) as exc:
        raise Refused(type(exc).__name__) from None
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        # right signature, undecryptable content: only a holder of our token sends that
        raise Malformed(type(exc).__name__) from None
    try:
        event = xmltodict.parse(plain, disable_entities=True)["xml"]
    except (ExpatError, KeyError, TypeError) as exc:
        raise Malformed(type(exc).__name__) from None
    if not isinstance(event, dict):
        raise Malformed("event is not an element")
    flat = {k: v for k, v in event.items() if isinstance(v, str)}
    # A group's member change lists ids as <MemChangeList><Item>…</Item>…: one id per line.
    items = event.get("MemChangeList")
    items = items.get("Item") if isinstance(items, dict) else None
    items = [items] if isinstance(items, str) else items
    if isinstance(items, list):
        flat["MemChangeList"] = "\n".join(i for i in items if isinstance(i, str))
    return flat


def event_key(event: dict[str, str]) -> str:
    """One event, however many deliveries: WeCom's retries carry the same fields."""
    parts = [
        event.get(k, "")
        for k in (
            "ToUserName",
            "CreateTime",
            "Event",
            "ChangeType",
            "UserID",
            "ExternalUserID",
            "State",
        )
    ]
    if event.get("Event") == "change_external_chat":
        # CurMemVer names the member list after the change: two changes never share it.
        keys = ("ChatId", "UpdateDetail", "MemChangeList", "LastMemVer", "CurMemVer")
        parts += [event.get(k, "") for k in keys]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


async def handle(
    session: AsyncSession,
    cipher: FieldCipher,
    app: WecomApp,
    signature: str,
    event: dict[str, str],
) -> Outcome:
    """Record the callback and act on it, in the caller's transaction."""
    key = event_key(event)
    # An exact resend (WeCom retries when our answer is slow; the signature covers the whole
    # encrypted body, so the same signature is the same event) is answered like the first
    # delivery and does nothing; a stale one was refused by the freshness window already.
    repo = WecomRepository(session)
    resent = await repo.callback_by_signature(signature)
    seen = resent or await repo.callback_by_event_key(key)
    if seen is not None:
        return Outcome(seen.outcome, seen.patient_id, duplicate=True)
    try:
        outcome = await _act(session, cipher, app, event)
    except IntegrityError:
        # a concurrent delivery made the same group or stay first: WeCom retries this one
        raise Refused("delivered concurrently") from None
    session.add(
        WecomCallback(
            signature=signature,
            event_key=key,
            event=f"{event.get('Event', '')}:{event.get('ChangeType', '')}"[:64],
            outcome=outcome.outcome,
            patient_id=outcome.patient_id,
        )
    )
    try:
        await session.flush()
    except IntegrityError:
        # a concurrent delivery of the same event or signature won the race
        raise Refused("delivered concurrently") from None
    return outcome


async def _act(
    session: AsyncSession, cipher: FieldCipher, app: WecomApp, event: dict[str, str]
) -> Outcome:
    if event.get("Event") == "change_external_chat":
        outcome, change_done = await groups.on_chat_event(
            session, cipher, app.default_branch_id, event
        )
        return Outcome(outcome, patient_ids=tuple(change_done.strengthened))
    external = (event.get("ExternalUserID") or "").strip()
    change = event.get("ChangeType", "")
    if event.get("Event") != "change_external_contact" or not external:
        return Outcome("ignored")
    digest = cipher.blind_index(external, kind="wecom_external_id")
    service = PatientService(session, cipher)
    # One person across channels (OneID): the oldest live record with this WeCom id.
    found = await PatientRepository(session).find_by_identifiers({"wecom_external_id": [digest]})
    patient = found[0] if found else None
    channel = (event.get("State") or "wecom")[:64]
    if change in ("add_external_contact", "add_half_external_contact"):
        if patient is not None:
            patient.pool_tier = PoolTier.STRONG_PRIVATE
            await service.touch(patient, channel, ACTOR, TouchVia.WECOM)
            return Outcome("linked", patient.id)
        created = await service.create(
            {
                "name": PLACEHOLDER_NAME,
                "wecom_external_id": external,
                "home_branch_id": app.default_branch_id,
                "source_channel": channel,
                "pool_tier": PoolTier.STRONG_PRIVATE,
            }
        )
        service.repo.add_touch(created, channel, TouchVia.WECOM)
        await session.flush()
        return Outcome("created", created.id)
    if change == "del_follow_user" and patient is not None:
        patient.pool_tier = PoolTier.SEMI_PRIVATE
        await session.flush()
        return Outcome("unfollowed", patient.id)
    return Outcome("ignored", patient.id if patient else None)
