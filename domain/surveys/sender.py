"""The survey sender, run in the campaign sender's pass (api.campaigns.worker): queue the
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

from sqlalchemy import and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns import caps
from domain.campaigns import rules as contact_rules
from domain.campaigns.audience import ADDRESS
from domain.campaigns.backends import OptedOut, SendError, SmsGateway, WecomTasks
from domain.campaigns.models import CampaignChannel
from domain.campaigns.sender import (
    MAX_ATTEMPTS,
    STALE_AFTER,
    backoff,
    consenting,
    record_opt_out,
)
from domain.care.models import Visit, VisitStatus
from domain.consent.models import ContactChannel, Purpose
from domain.consent.service import reachable
from domain.door.models import IdentityKind, PatientIdentity
from domain.patients.models import Patient
from domain.patients.service import unseal
from domain.surveys import tokens
from domain.surveys.models import (
    SurveyDelivery,
    SurveyDeliveryStatus,
    SurveyRule,
    SurveyTemplate,
    SurveyTemplateVersion,
    VisitKind,
)
from tenancy.keyring import FieldCipher

SENDER = "surveys"  # the system actor that sends
MINI_PROGRAM = "mini_program"
BATCH = 100
S = SurveyDeliveryStatus


@dataclass
class Queued:
    patient_ids: list[uuid.UUID] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def _kind(rule: SurveyRule):  # type: ignore[no-untyped-def]
    if rule.visit_kind == VisitKind.FIRST:
        return Visit.is_first.is_(True)
    if rule.visit_kind == VisitKind.RETURN:
        return Visit.is_first.is_(False)
    return None


async def queue(
    session: AsyncSession, now: datetime, ready: Collection[str] | None = None
) -> Queued:
    """Write the due surveys of every active rule to the outbox. `ready`: the channels this
    deployment can send through now (a rule's channel without a provider is passed over for
    its next one, so no link waits for a gateway that is not configured); None: all."""
    out = Queued()
    rules_ = list(await session.scalars(select(SurveyRule).where(SurveyRule.active.is_(True))))
    if not rules_:
        return out
    await caps.lock(session)
    limits = await contact_rules.load(session)
    contacts = await caps.contact_counts(session, limits, now)
    start = limits.next_allowed(now)
    for rule in rules_:
        template = await session.scalar(
            select(SurveyTemplate).where(SurveyTemplate.id == rule.template_id)
        )
        assert template is not None
        done = select(SurveyDelivery.visit_id).where(SurveyDelivery.rule_id == rule.id)
        where = [
            Visit.status == VisitStatus.ARRIVED,
            Visit.arrived_at >= rule.starts_at,
            Visit.arrived_at <= now - timedelta(days=rule.delay_days),
            Visit.id.not_in(done),
            Patient.erased_at.is_(None),
            Patient.merged_into_id.is_(None),
        ]
        kind = _kind(rule)
        if kind is not None:
            where.append(kind)
        if rule.branch_id is not None:
            where.append(Visit.branch_id == rule.branch_id)
        channels = [c for c in rule.channels if ready is None or c in ready]
        reach = [
            and_(reachable(Purpose.MARKETING, [ContactChannel(c)]), _addressed(c)).label(c)
            for c in channels
        ]
        rows = (
            await session.execute(
                select(Visit, *reach)
                .join(Patient, Patient.id == Visit.patient_id)
                .where(*where)
                .order_by(Visit.arrived_at, Visit.id)
            )
        ).all()
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


def _addressed(channel: str):  # type: ignore[no-untyped-def]
    """The patient can be reached on `channel`: a phone, a WeCom contact, or (mini-program)
    a signed-in WeChat identity of the brand's mini-program."""
    if channel == MINI_PROGRAM:
        return exists(
            select(PatientIdentity.patient_id).where(
                PatientIdentity.patient_id == Patient.id,
                PatientIdentity.kind == str(IdentityKind.OPENID),
            )
        )
    return ADDRESS[CampaignChannel(channel)].is_not(None)


@dataclass(frozen=True)
class Claim:
    channel: str
    delivery_ids: list[uuid.UUID]
    patient_ids: list[uuid.UUID]


def _due(now: datetime, stale_after: timedelta):  # type: ignore[no-untyped-def]
    pending = (SurveyDelivery.status == S.PENDING) & (SurveyDelivery.next_attempt_at <= now)
    stale = (SurveyDelivery.status == S.SENDING) & (SurveyDelivery.claimed_at <= now - stale_after)
    return pending | stale


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
    rows = (
        await session.execute(
            select(SurveyDelivery.id, SurveyDelivery.patient_id)
            .where(_due(now, stale_after), SurveyDelivery.channel == str(channel))
            .order_by(SurveyDelivery.next_attempt_at, SurveyDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return None
    ids = [r.id for r in rows]
    await session.execute(
        update(SurveyDelivery)
        .where(SurveyDelivery.id.in_(ids))
        .values(status=S.SENDING, claimed_at=now, attempts=SurveyDelivery.attempts + 1)
        .execution_options(synchronize_session=False)
    )
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
    rows = list(
        await session.execute(
            select(SurveyDelivery, SurveyRule, SurveyTemplateVersion)
            .join(SurveyRule, SurveyRule.id == SurveyDelivery.rule_id)
            .join(
                SurveyTemplateVersion,
                (SurveyTemplateVersion.template_id == SurveyDelivery.template_id)
                & (SurveyTemplateVersion.version == SurveyDelivery.template_version),
            )
            .where(SurveyDelivery.id.in_(claim.delivery_ids), SurveyDelivery.status == S.SENDING)
            .order_by(SurveyDelivery.id)
        )
    )
    address = {"sms": "phone", "wecom": "wecom_external_id"}.get(claim.channel)
    for d, rule, version in rows:
        patient = allowed.get(d.patient_id)
        value = None
        if patient is not None:
            value = unseal(cipher, patient, address) if address else "mini_program"
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
    rows = await session.execute(
        select(SurveyDelivery, SurveyTemplateVersion)
        .join(
            SurveyTemplateVersion,
            (SurveyTemplateVersion.template_id == SurveyDelivery.template_id)
            & (SurveyTemplateVersion.version == SurveyDelivery.template_version),
        )
        .where(
            SurveyDelivery.patient_id == patient.id,
            SurveyDelivery.status == S.DELIVERED,
            SurveyDelivery.expires_at > now,
        )
        .order_by(SurveyDelivery.sent_at.desc())
        .limit(20)
    )
    return [tuple(r) for r in rows]
