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

from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns import rules as contact_rules
from domain.campaigns.backends import (
    MAX_TASK_RECIPIENTS,
    OptedOut,
    SendError,
    SmsGateway,
    WecomTasks,
)
from domain.campaigns.models import Campaign, CampaignChannel, Delivery, DeliveryStatus
from domain.campaigns.repository import CampaignRepository, OutboxRepository
from domain.consent import service as consent
from domain.consent.models import ContactChannel, Purpose
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
    outbox = OutboxRepository(session)
    campaign_id = await outbox.next_due_campaign(now, channel, stale_after)
    if campaign_id is None:
        return None
    size = MAX_TASK_RECIPIENTS if channel is CampaignChannel.WECOM else limit
    rows = await outbox.lock_due(campaign_id, now, stale_after, size)
    if not rows:
        return None
    ids = [r.id for r in rows]
    await outbox.mark_sending(ids, now)
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
    return await OutboxRepository(session).consenting(patient_ids, channel)


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
    campaign = await CampaignRepository(session).campaign(claim.campaign_id)
    assert campaign is not None
    allowed = await _consenting(session, claim)
    ready = []
    for d in await OutboxRepository(session).still_sending(claim.delivery_ids):
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
    state = await OutboxRepository(session).marketing_consent(patient, channel)
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
        known = await OutboxRepository(session).provider_refs(campaign)
        found = await tasks.find_task(campaign.content, campaign.launched_at, exclude=known)
        if found is not None:
            return found, set()
    return await tasks.create_task(externals, campaign.content)


async def track_wecom(
    session: AsyncSession, cipher: FieldCipher, tasks: WecomTasks, now: datetime
) -> Tally:
    """Read back what staff sent from each open WeCom task."""
    tally = Tally()
    outbox = OutboxRepository(session)
    msgids = await outbox.awaiting_staff_tasks()
    for msgid in msgids:
        results = await tasks.results(msgid)
        digests = {
            cipher.blind_index(r.external_userid, kind="wecom_external_id"): r
            for r in results
            if r.status != 0
        }
        if not digests:
            continue
        for d, digest, campaign in await outbox.awaiting_staff(msgid, list(digests)):
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
    outbox = OutboxRepository(session)
    expired = await outbox.expire_unsent(now)
    await outbox.expire_stale_claims(now, stale_after)
    await outbox.close_missed(now)
    await outbox.close_finished()
    return expired
