"""The survey sender, run in the campaign sender's pass (process.campaign_sender): queue the
visits whose survey is due, then send the links through the campaign back-ends under the
campaigns' consent check, frequency cap and quiet hours (domain.campaigns).

1. `queue`: for each active rule, arrived visits (of its kind, at its branch, arrived since the
   rule's start) whose delay has passed and that have no delivery of the rule yet. The channel
   is the rule's first one the patient has marketing consent and an address on; a visit with
   none, or a patient at the frequency cap, gets a `skipped` row (so it is decided once). Under
   the campaigns' cap lock, in one transaction.
2. `claim` (committed before anything leaves; nothing in quiet hours) and `send`: consent is
   read again under a shared lock, exactly as campaigns do; a withdrawal before that means the
   link never leaves. Each link is the delivery's own signed token (domain.surveys.tokens),
   its expiry fixed at the first claim so a resend after a crash sends the same text.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns import caps
from domain.campaigns import rules as contact_rules
from domain.campaigns.backends import OptedOut, SendError, SmsGateway, WecomTasks
from domain.campaigns.models import CampaignChannel
from domain.campaigns.sender import (
    MAX_ATTEMPTS,
    STALE_AFTER,
    backoff,
    consenting,
    record_opt_out,
)
from domain.care.models import Visit
from domain.patients.models import Patient
from domain.patients.service import unseal
from domain.surveys import tokens
from domain.surveys.models import (
    SurveyDelivery,
    SurveyDeliveryStatus,
    SurveyTemplateVersion,
)
from domain.surveys.repository import MINI_PROGRAM, SurveyRepository
from tenancy.keyring import FieldCipher

SENDER = "surveys"  # the system actor that sends
BATCH = 100
S = SurveyDeliveryStatus


@dataclass
class Queued:
    patient_ids: list[uuid.UUID] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


async def queue(
    session: AsyncSession, now: datetime, ready: Collection[str] | None = None
) -> Queued:
    """Write the due surveys of every active rule to the outbox. `ready`: the channels this
    deployment can send through now (a rule's channel without a provider is passed over for
    its next one, so no link waits for a gateway that is not configured); None: all."""
    out = Queued()
    repo = SurveyRepository(session)
    rules_ = await repo.active_rules()
    if not rules_:
        return out
    await caps.lock(session)
    limits = await contact_rules.load(session)
    contacts = await caps.contact_counts(session, limits, now)
    start = limits.next_allowed(now)
    for rule in rules_:
        template = await repo.template(rule.template_id)
        assert template is not None
        channels = [c for c in rule.channels if ready is None or c in ready]
        rows = await repo.due_visits(rule, now, channels)
        for row in rows:
            visit: Visit = row[0]
            channel = next((c for c, ok in zip(channels, row[1:], strict=True) if ok), None)
            reason = ""
            if channel is None:
                reason = "no_consent_or_address"
            elif contacts[visit.patient_id] >= limits.frequency_cap:
                reason = "capped"
            d = SurveyDelivery(
                rule_id=rule.id,
                template_id=template.id,
                template_version=template.current_version,
                visit_id=visit.id,
                patient_id=visit.patient_id,
                branch_id=visit.branch_id,
                doctor_id=visit.doctor_id,
                channel=channel or "",
                status=S.SKIPPED if reason else S.PENDING,
                queued_at=now,
                next_attempt_at=start,
                attempts=0,
                last_error=reason,
                provider_ref="",
            )
            session.add(d)
            if reason:
                out.skipped[reason] += 1
            else:
                out.patient_ids.append(visit.patient_id)
                contacts[visit.patient_id] += 1  # the cap holds within this pass too
    await session.flush()
    return out


@dataclass(frozen=True)
class Claim:
    channel: str
    delivery_ids: list[uuid.UUID]
    patient_ids: list[uuid.UUID]


async def claim(
    session: AsyncSession,
    now: datetime,
    channel: str,
    *,
    limit: int = BATCH,
    stale_after: timedelta = STALE_AFTER,
) -> Claim | None:
    """Claim due survey links on `channel`; commit before sending."""
    if (await contact_rules.load(session)).is_quiet(now):
        return None
    repo = SurveyRepository(session)
    rows = await repo.claimable(now, channel, stale_after, limit)
    if not rows:
        return None
    ids = [r.id for r in rows]
    await repo.mark_sending(ids, now)
    return Claim(channel, ids, [r.patient_id for r in rows])


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    withdrew: list[uuid.UUID] = field(default_factory=list)


def _failed(d: SurveyDelivery, error: SendError, now: datetime) -> None:
    d.last_error = error.code[:40]
    if error.transient and d.attempts < MAX_ATTEMPTS:
        d.status = S.PENDING
        d.next_attempt_at = now + backoff(d.attempts)
    else:
        d.status = S.FAILED


def link_text(version: SurveyTemplateVersion, base_url: str, token: str) -> str:
    return f"{version.intro} {base_url.rstrip('/')}/{token}"


async def send(
    session: AsyncSession,
    cipher: FieldCipher,
    backend: SmsGateway | WecomTasks | None,
    claim: Claim,
    base_url: str,
    now: datetime,
) -> Tally:
    """Send the claimed links (SMS gateway, or one WeCom task per patient: each link differs;
    on the mini-program the link is simply there for the patient, `mySurveys`)."""
    tally = Tally()
    allowed = await consenting(session, claim.patient_ids, claim.channel)
    rows = await SurveyRepository(session).sending(claim.delivery_ids)
    address = {"sms": "phone", "wecom": "wecom_external_id"}.get(claim.channel)
    for d, rule, version in rows:
        patient = allowed.get(d.patient_id)
        value = None
        if patient is not None:
            value = unseal(cipher, patient, address) if address else MINI_PROGRAM
        if patient is None:
            d.status, d.last_error = S.WITHDRAWN, "no_consent"
        elif value is None:
            d.status, d.last_error = S.FAILED, "no_address"
        else:
            if d.expires_at is None:
                d.expires_at = now + timedelta(days=rule.answer_days)
            text = link_text(version, base_url, tokens.issue(cipher, d.id, d.expires_at))
            try:
                if isinstance(backend, SmsGateway):
                    ref = (await backend.send(str(d.id), value, text)).provider_ref
                elif isinstance(backend, WecomTasks):
                    ref = await _wecom(backend, d, value, text)
                else:
                    ref = ""  # the mini-program shows it to the signed-in patient
            except OptedOut as exc:
                _failed(d, exc, now)
                await record_opt_out(session, patient, CampaignChannel(claim.channel))
                tally.withdrew.append(patient.id)
            except SendError as exc:
                _failed(d, exc, now)
            else:
                d.status, d.sent_at, d.provider_ref, d.last_error = S.DELIVERED, now, ref[:64], ""
        tally.outcomes[f"survey_{d.status}"] += 1
    await session.flush()
    return tally


async def _wecom(tasks: WecomTasks, d: SurveyDelivery, external: str, text: str) -> str:
    """A one-customer task; after a crash the task WeCom already has (same text, which holds
    this delivery's own link) is adopted instead of created twice."""
    if d.attempts > 1:
        found = await tasks.find_task(text, d.queued_at)
        if found is not None:
            return found
    msgid, refused = await tasks.create_task([external], text)
    if external in refused:
        raise SendError("wecom_refused", transient=False)
    return msgid


async def open_for(session: AsyncSession, patient: Patient, now: datetime) -> list[tuple]:
    """A patient's delivered, unanswered, unexpired surveys, with their version, newest first."""
    rows = await SurveyRepository(session).open_for(patient, now)
    return [tuple(r) for r in rows]
