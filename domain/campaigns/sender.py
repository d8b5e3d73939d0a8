"""The sender: works through the outbox in two transactions per batch.

1. `claim` marks due deliveries `sending` and commits, before anything leaves. Quiet hours
   claim nothing; a delivery left `sending` by a sender that died is claimed again once it
   is stale.
2. `send_sms` / `send_wecom` re-check consent under a shared lock on the consent and patient
   rows (a withdrawal or an erasure committing now waits for this batch, and one that
   committed before is seen: such a delivery becomes `withdrawn` and never leaves), decrypt
   the addresses, hand the messages to the back-end and record each outcome.

A crash between the two leaves `sending` rows that the next claim resends with the same
idempotency key (SMS) or adopts the task WeCom already holds (WeCom): nothing lost, nothing
sent twice. `track_wecom` reads WeCom task results back; `finish` expires what the window
left and closes campaigns with nothing open.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns import rules as contact_rules
from domain.campaigns.backends import (
    MAX_TASK_RECIPIENTS,
    OptedOut,
    SendError,
    SmsGateway,
    WecomTasks,
)
from domain.campaigns.models import (
    OPEN,
    Campaign,
    CampaignChannel,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)
from domain.consent import service as consent
from domain.consent.models import ConsentState, ContactChannel, Purpose
from domain.patients.models import Patient
from domain.patients.service import unseal
from tenancy.keyring import FieldCipher

SENDER = "campaigns"  # the system actor that sends
MAX_ATTEMPTS = 5
STALE_AFTER = timedelta(minutes=5)
BATCH = 100


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


@dataclass(frozen=True)
class Claim:
    campaign_id: uuid.UUID
    channel: CampaignChannel
    delivery_ids: list[uuid.UUID]
    patient_ids: list[uuid.UUID]
    resumed: bool  # some were left `sending` by an earlier sender


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    # Patients whose consent the batch withdrew (a provider-reported opt-out): a change of
    # patient data, for the access log.
    withdrew: list[uuid.UUID] = field(default_factory=list)

    def add(self, status: str, n: int = 1) -> None:
        self.outcomes[status] += n


def _due(now: datetime, stale_after: timedelta):  # type: ignore[no-untyped-def]
    pending = (Delivery.status == DeliveryStatus.PENDING) & (Delivery.next_attempt_at <= now)
    stale = (Delivery.status == DeliveryStatus.SENDING) & (Delivery.claimed_at <= now - stale_after)
    return pending | stale


async def claim(
    session: AsyncSession,
    now: datetime,
    channel: CampaignChannel,
    *,
    limit: int = BATCH,
    stale_after: timedelta = STALE_AFTER,
) -> Claim | None:
    """Claim the next due deliveries of one campaign on `channel` (a WeCom claim is one
    task's worth). Commit before sending."""
    rules = await contact_rules.load(session)
    if rules.is_quiet(now):
        return None
    open_campaign = (
        select(Delivery.campaign_id)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(
            _due(now, stale_after),
            Delivery.channel == str(channel),
            Campaign.status == CampaignStatus.SENDING,
            Campaign.window_end > now,
        )
        .order_by(Delivery.next_attempt_at)
        .limit(1)
    )
    campaign_id = await session.scalar(open_campaign)
    if campaign_id is None:
        return None
    size = MAX_TASK_RECIPIENTS if channel is CampaignChannel.WECOM else limit
    rows = (
        await session.execute(
            select(Delivery.id, Delivery.patient_id, Delivery.status)
            .where(Delivery.campaign_id == campaign_id, _due(now, stale_after))
            .order_by(Delivery.id)
            .limit(size)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return None
    ids = [r.id for r in rows]
    await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(status=DeliveryStatus.SENDING, claimed_at=now, attempts=Delivery.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return Claim(
        campaign_id,
        channel,
        ids,
        [r.patient_id for r in rows],
        resumed=any(r.status == DeliveryStatus.SENDING for r in rows),
    )


async def _consenting(session: AsyncSession, claim: Claim) -> dict[uuid.UUID, Patient]:
    return await consenting(session, claim.patient_ids, claim.channel)


async def consenting(
    session: AsyncSession, patient_ids: list[uuid.UUID], channel: str
) -> dict[uuid.UUID, Patient]:
    """Those of `patient_ids` who may still be reached on `channel`, with their rows; the
    consent and patient rows stay share-locked until the batch commits (PostgreSQL; SQLite's
    writer lock already serialises). Survey links are sent under the same check."""
    rows = await session.scalars(
        select(Patient)
        .join(ConsentState, ConsentState.patient_id == Patient.id)
        .where(
            Patient.id.in_(patient_ids),
            Patient.erased_at.is_(None),
            ConsentState.purpose == str(Purpose.MARKETING),
            ConsentState.channel == str(channel),
            ConsentState.granted.is_(True),
        )
        .with_for_update(read=True)
    )
    return {p.id: p for p in rows}


async def _deliveries(session: AsyncSession, claim: Claim) -> list[Delivery]:
    rows = await session.scalars(
        select(Delivery)
        .where(Delivery.id.in_(claim.delivery_ids), Delivery.status == DeliveryStatus.SENDING)
        .order_by(Delivery.id)
    )
    return list(rows)


def _delivered(d: Delivery, campaign: Campaign, at: datetime, ref: str) -> None:
    d.status = DeliveryStatus.DELIVERED
    d.delivered_at = at
    d.attributed_until = at + timedelta(days=campaign.attribution_days)
    d.provider_ref = ref[:64]
    d.last_error = ""


def _failed(d: Delivery, error: SendError, now: datetime) -> None:
    d.last_error = error.code[:40]
    if isinstance(error, OptedOut):
        d.status = DeliveryStatus.OPTED_OUT
    elif error.transient and d.attempts < MAX_ATTEMPTS:
        d.status = DeliveryStatus.PENDING
        d.next_attempt_at = now + backoff(d.attempts)
    else:
        d.status = DeliveryStatus.FAILED


async def _addressed(
    session: AsyncSession, cipher: FieldCipher, claim: Claim, address: str
) -> tuple[Campaign, list[tuple[Delivery, Patient, str]], Tally]:
    """The claimed deliveries that may go, with their patient and decrypted address; the
    others are settled here (`withdrawn` without consent, `failed` without an address)."""
    tally = Tally()
    campaign = await session.scalar(select(Campaign).where(Campaign.id == claim.campaign_id))
    assert campaign is not None
    allowed = await _consenting(session, claim)
    ready = []
    for d in await _deliveries(session, claim):
        patient = allowed.get(d.patient_id)
        value = unseal(cipher, patient, address) if patient is not None else None
        if patient is None:
            d.status, d.last_error = DeliveryStatus.WITHDRAWN, "no_consent"
        elif value is None:
            d.status, d.last_error = DeliveryStatus.FAILED, "no_address"
        else:
            ready.append((d, patient, value))
            continue
        tally.add(d.status)
    return campaign, ready, tally


async def send_sms(
    session: AsyncSession, cipher: FieldCipher, gateway: SmsGateway, claim: Claim, now: datetime
) -> Tally:
    campaign, ready, tally = await _addressed(session, cipher, claim, "phone")
    for d, patient, phone in ready:
        try:
            sent = await gateway.send(str(d.id), phone, campaign.content)
        except OptedOut as exc:
            _failed(d, exc, now)
            await record_opt_out(session, patient, claim.channel)
            tally.withdrew.append(patient.id)
        except SendError as exc:
            _failed(d, exc, now)
        else:
            _delivered(d, campaign, now, sent.provider_ref)
        tally.add(d.status)
    await session.flush()
    return tally


async def record_opt_out(session: AsyncSession, patient: Patient, channel: CampaignChannel) -> None:
    """An unsubscribe (退订) reported by the provider is a withdrawal of marketing consent on
    that channel, recorded like any other so no later audience includes the patient."""
    state = await session.scalar(
        select(ConsentState).where(
            ConsentState.patient_id == patient.id,
            ConsentState.purpose == str(Purpose.MARKETING),
            ConsentState.channel == str(channel),
        )
    )
    version = state.text_version if state is not None else "unknown"
    change = consent.ConsentChange(
        Purpose.MARKETING, ContactChannel(str(channel)), False, version, "provider_opt_out"
    )
    await consent.record(session, patient, change, f"system:{SENDER}")


async def send_wecom(
    session: AsyncSession, cipher: FieldCipher, tasks: WecomTasks, claim: Claim, now: datetime
) -> Tally:
    """Create (or, after a crash, adopt) the WeCom task for the claimed deliveries."""
    campaign, ready, tally = await _addressed(session, cipher, claim, "wecom_external_id")
    by_external = {external: d for d, _patient, external in ready}
    if by_external:
        try:
            msgid, refused = await _task(session, tasks, campaign, claim, list(by_external))
        except SendError as exc:
            for d in by_external.values():
                _failed(d, exc, now)
                tally.add(d.status)
        else:
            for external, d in by_external.items():
                d.provider_ref = msgid[:64]
                if external in refused:
                    d.status, d.last_error = DeliveryStatus.FAILED, "wecom_refused"
                else:
                    d.status, d.last_error = DeliveryStatus.AWAITING_STAFF, ""
                tally.add(d.status)
    await session.flush()
    return tally


async def _task(
    session: AsyncSession,
    tasks: WecomTasks,
    campaign: Campaign,
    claim: Claim,
    externals: list[str],
) -> tuple[str, set[str]]:
    if claim.resumed and campaign.launched_at is not None:
        # An earlier sender may have created this task and died before recording it.
        known = set(
            (
                await session.scalars(
                    select(Delivery.provider_ref).where(
                        Delivery.campaign_id == campaign.id, Delivery.provider_ref != ""
                    )
                )
            ).all()
        )
        found = await tasks.find_task(campaign.content, campaign.launched_at, exclude=known)
        if found is not None:
            return found, set()
    return await tasks.create_task(externals, campaign.content)


async def track_wecom(
    session: AsyncSession, cipher: FieldCipher, tasks: WecomTasks, now: datetime
) -> Tally:
    """Read back what staff sent from each open WeCom task."""
    tally = Tally()
    msgids = (
        await session.scalars(
            select(Delivery.provider_ref)
            .where(Delivery.status == DeliveryStatus.AWAITING_STAFF)
            .distinct()
        )
    ).all()
    for msgid in msgids:
        results = await tasks.results(msgid)
        digests = {
            cipher.blind_index(r.external_userid, kind="wecom_external_id"): r
            for r in results
            if r.status != 0
        }
        if not digests:
            continue
        rows = (
            await session.execute(
                select(Delivery, Patient.wecom_external_id_bidx, Campaign)
                .join(Patient, Patient.id == Delivery.patient_id)
                .join(Campaign, Campaign.id == Delivery.campaign_id)
                .where(
                    Delivery.provider_ref == msgid,
                    Delivery.status == DeliveryStatus.AWAITING_STAFF,
                    Patient.wecom_external_id_bidx.in_(list(digests)),
                )
            )
        ).all()
        for d, digest, campaign in rows:
            result = digests[digest]
            if result.status == 1:
                _delivered(d, campaign, result.send_time or now, msgid)
            else:
                d.status = DeliveryStatus.FAILED
                d.last_error = "wecom_not_contact" if result.status == 2 else "wecom_daily_limit"
            tally.add(d.status)
    await session.flush()
    return tally


async def finish(session: AsyncSession, now: datetime, stale_after: timedelta = STALE_AFTER) -> int:
    """Expire what a closed window left unsent, close missed and finished campaigns."""
    closed = select(Campaign.id).where(Campaign.window_end <= now)
    expired = await session.execute(
        update(Delivery)
        .where(
            Delivery.campaign_id.in_(closed),
            Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.AWAITING_STAFF]),
        )
        .values(status=DeliveryStatus.EXPIRED)
        .execution_options(synchronize_session=False)
    )
    # Claimed by a sender that died, and the window closed before it could be resolved: its
    # fate is unknown to us (the provider may have it), so it is not resent after the window.
    await session.execute(
        update(Delivery)
        .where(
            Delivery.campaign_id.in_(closed),
            Delivery.status == DeliveryStatus.SENDING,
            Delivery.claimed_at <= now - stale_after,
        )
        .values(status=DeliveryStatus.EXPIRED, last_error="outcome_unknown")
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Campaign)
        .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.window_end <= now)
        .values(status=CampaignStatus.DONE)
        .execution_options(synchronize_session=False)
    )
    still_open = select(Delivery.campaign_id).where(Delivery.status.in_([str(s) for s in OPEN]))
    await session.execute(
        update(Campaign)
        .where(Campaign.status == CampaignStatus.SENDING, Campaign.id.not_in(still_open))
        .values(status=CampaignStatus.DONE)
        .execution_options(synchronize_session=False)
    )
    return int(expired.rowcount or 0)
