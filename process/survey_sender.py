"""The survey part of the sender's pass (called from process.campaign_sender.run_tenant, so
`patientpool campaigns send` sends surveys too): queue the due surveys, then claim and send
the links per channel, each step its own transaction, logged as the system actor `surveys`."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from auth import access_log
from auth.access_log import AccessEvent, Action, Actor, RequestInfo
from domain.campaigns.backends import SmsGateway, WecomTasks
from domain.campaigns.models import CampaignChannel
from domain.surveys import sender
from tenancy.keyring import FieldCipher

ACTOR = Actor("system", sender.SENDER)
MAX_BATCHES = 1_000  # per channel per pass: a bound, not a target


async def _log(
    session: AsyncSession, action: Action, patient_ids: list[uuid.UUID], what: str
) -> None:
    if patient_ids:
        groups = ["contact"] if action is Action.READ else []
        await access_log.append(
            session,
            ACTOR,
            RequestInfo(operation_name=what[:100]),
            [AccessEvent(action, sorted(set(patient_ids)), groups)],
        )


async def run(
    sessions: Callable[[], AbstractAsyncContextManager[AsyncSession]],
    cipher: FieldCipher,
    sms: SmsGateway | None,
    wecom: WecomTasks | None,
    survey_url: str | None,
    now: datetime,
    progress: Callable[[str], None],
    *,
    stale_after: timedelta = sender.STALE_AFTER,
) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    if not survey_url:
        return outcomes  # no page for a link to open: nothing is queued or sent
    channels = (
        (str(CampaignChannel.SMS), sms, sms is not None),
        (str(CampaignChannel.WECOM), wecom, wecom is not None),
        (sender.MINI_PROGRAM, None, True),  # no provider: the patient finds it there
    )
    ready = [channel for channel, _backend, on in channels if on]
    async with sessions() as s, s.begin():
        queued = await sender.queue(s, now, ready)
        await _log(s, Action.LIST, queued.patient_ids, "surveys:queue")
    if queued.patient_ids:
        progress(f"surveys: {len(queued.patient_ids)} queued")
    for reason, n in queued.skipped.items():
        outcomes[f"survey_skipped_{reason}"] += n
    for channel, backend, ready in channels:
        for _ in range(MAX_BATCHES if ready else 0):
            async with sessions() as s, s.begin():
                claim = await sender.claim(s, now, channel, stale_after=stale_after)
                if claim is not None:
                    await _log(s, Action.READ, claim.patient_ids, f"surveys:{channel}:send")
            if claim is None:
                break
            async with sessions() as s, s.begin():
                tally = await sender.send(s, cipher, backend, claim, survey_url, now)
                await _log(s, Action.UPDATE, tally.withdrew, "surveys:opt-out")
            outcomes.update(tally.outcomes)
    return outcomes
