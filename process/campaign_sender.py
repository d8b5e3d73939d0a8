"""The campaign sender process (`patientpool campaigns send`): for each tenant, queue the
campaigns whose window opened, send the outbox through the configured back-ends, read WeCom
task results back, and close what is finished. Every step is its own transaction, so an
interrupted run resumes where it stopped; what it reads of patients is logged as the system
actor `campaigns`."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from auth import access_log
from auth.access_log import AccessEvent, Action, Actor, RequestInfo
from domain.campaigns import audience, sender
from domain.campaigns.backends import SendError, SmsGateway, WecomTasks
from domain.campaigns.models import CampaignChannel
from domain.campaigns.repository import CampaignRepository
from domain.wecom import group_campaigns
from domain.wecom.callbacks import api_secret
from domain.wecom.groups_api import WecomGroupChats
from domain.wecom.repository import WecomRepository
from process import survey_sender as survey_pass
from tenancy.keyring import FieldCipher, KeyProvider
from tenancy.keystore import load_cipher

ACTOR = Actor("system", sender.SENDER)
MAX_BATCHES = 10_000  # per channel per tick: a bound, not a target


@dataclass
class Backends:
    sms: SmsGateway | None
    wecom_api_url: str
    survey_url: str | None = None  # the survey page (surveys are sent in the same pass)


@dataclass
class TickResult:
    queued: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    expired: int = 0

    @property
    def sent(self) -> str:
        """Outcomes so far, e.g. "delivered 12, withdrawn 1"."""
        return ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))


async def _log(
    session: AsyncSession, action: Action, patient_ids: list[uuid.UUID], what: str
) -> None:
    if patient_ids:
        await access_log.append(
            session,
            ACTOR,
            RequestInfo(operation_name=what[:100]),
            [AccessEvent(action, patient_ids, ["contact"] if action is Action.READ else [])],
        )


# opens a new session bound to the tenant the pass is for (tenancy.session.tenant_session)
TenantSessions = Callable[[], AbstractAsyncContextManager[AsyncSession]]


async def run_tenant(
    sessions: TenantSessions,
    keys: KeyProvider,
    backends: Backends,
    now: datetime,
    progress: Callable[[str], None] = lambda _m: None,
    *,
    stale_after: timedelta = sender.STALE_AFTER,
) -> TickResult:
    result = TickResult()
    async with sessions() as s, s.begin():
        for campaign in await CampaignRepository(s).due_campaigns(now):
            if now >= campaign.window_end:
                continue  # closed before it could start: `finish` marks it done
            try:
                queued = await audience.materialize(s, campaign, now)
            except audience.Unsendable as why:
                # Refused before it wrote anything: cancelled, so it is not retried pass
                # after pass and never holds up the tenant's other campaigns.
                await audience.cancel(s, campaign)
                progress(f"campaign {campaign.name}: cancelled, {why}")
                continue
            await _log(s, Action.LIST, queued, f"campaign:{campaign.id}:audience")
            result.queued += len(queued)
            progress(f"campaign {campaign.name}: {len(queued)} deliveries queued")
        cipher: FieldCipher = await load_cipher(s, keys)
        app = await WecomRepository(s).app()
        secret = api_secret(cipher, app) if app is not None else None

    wecom = (
        WecomTasks(backends.wecom_api_url, app.corp_id, secret)
        if app is not None and secret
        else None
    )
    try:
        for channel, backend in (
            (CampaignChannel.SMS, backends.sms),
            (CampaignChannel.WECOM, wecom),
        ):
            for _ in range(MAX_BATCHES):
                if backend is None:
                    break
                async with sessions() as s, s.begin():
                    claim = await sender.claim(s, now, channel, stale_after=stale_after)
                    if claim is not None:
                        what = f"campaign:{claim.campaign_id}:send"
                        await _log(s, Action.READ, claim.patient_ids, what)
                if claim is None:
                    break
                async with sessions() as s, s.begin():
                    if channel is CampaignChannel.SMS:
                        tally = await sender.send_sms(s, cipher, backend, claim, now)  # type: ignore[arg-type]
                    else:
                        tally = await sender.send_wecom(s, cipher, backend, claim, now)  # type: ignore[arg-type]
                    what = f"campaign:{claim.campaign_id}:opt-out"
                    await _log(s, Action.UPDATE, tally.withdrew, what)
                result.outcomes.update(tally.outcomes)
                progress(f"{channel}: {result.sent}")
        if wecom is not None:
            # Campaigns to customer groups: the same WeCom client, speaking the group API
            # (its access token is fetched only when a group campaign is due).
            to_groups = WecomGroupChats(backends.wecom_api_url, wecom.corp_id, wecom.secret)
            try:
                async with sessions() as s, s.begin():
                    grouped = await group_campaigns.send_due(s, to_groups, now)
            finally:
                await to_groups.aclose()
            if any(grouped.values()):
                progress("group chats: " + ", ".join(f"{k} {v}" for k, v in grouped.items()))
            result.outcomes.update({f"group_{k}": v for k, v in grouped.items() if v})
            try:
                async with sessions() as s, s.begin():
                    tally = await sender.track_wecom(s, cipher, wecom, now)
                result.outcomes.update(tally.outcomes)
            except SendError as exc:  # WeCom unreachable: the next tick reads the results
                progress(f"wecom task results not read: {exc.code}")
        result.outcomes.update(
            await survey_pass.run(
                sessions,
                cipher,
                backends.sms,
                wecom,
                backends.survey_url,
                now,
                progress,
                stale_after=stale_after,
            )
        )
    finally:
        if wecom is not None:
            await wecom.aclose()
    async with sessions() as s, s.begin():
        result.expired = await sender.finish(s, now, stale_after)
    return result
