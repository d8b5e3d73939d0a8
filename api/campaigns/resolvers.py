"""Root fields of campaigns (群发): create, launch, cancel, read, and the contact rules.

Launching computes the audience in the request's transaction and logs it (the patients put
in the outbox) on the caller's access-log entry; the sender (`patientpool campaigns send`)
does the rest, logged as the system actor `campaigns`."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.types import Info

from api.campaigns.types import Campaign, CampaignInput, ContactRules
from api.ids import parse_global_id
from api.pagination import Connection, keyset_connection, keyset_position
from api.times import to_utc
from auth.access_log import Action
from auth.guard import require, require_patient_scope
from domain.campaigns import audience
from domain.campaigns import models as m
from domain.campaigns import rules as contact_rules
from domain.campaigns.repository import CampaignRepository
from domain.errors import BadInput, NotFound
from domain.wecom.repository import WecomRepository


def _now() -> datetime:
    return datetime.now(UTC)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _minute(value: str, field: str) -> int:
    try:
        hours, minutes = value.split(":")
        h, mi = int(hours), int(minutes)
    except ValueError:
        raise BadInput(f"{field} must be HH:MM", field=field) from None
    if not (0 <= h < 24 and 0 <= mi < 60):
        raise BadInput(f"{field} must be HH:MM", field=field)
    return h * 60 + mi


async def _row(info: Info, id: strawberry.ID) -> m.Campaign:
    row = await CampaignRepository(info.context.session).campaign(parse_global_id(id, "Campaign"))
    if row is None:
        raise NotFound("no such campaign")
    return row


async def _check_sender(info: Info, channel: m.CampaignChannel) -> None:
    """Refuse a campaign no sender could deliver, rather than let it expire unsent."""
    if channel is m.CampaignChannel.SMS and not info.context.app.settings.sms_api_url:
        raise BadInput("no SMS gateway is configured (PATIENTPOOL_SMS_API_URL)", field="channel")
    if channel is m.CampaignChannel.WECOM:
        app = await WecomRepository(info.context.session).app()
        if app is None or app.secret_ct is None:
            raise BadInput(
                "WeCom bulk sending needs configureWecom with the customer-contact secret",
                field="channel",
            )


async def campaigns(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[Campaign]:
    require(await info.context.principal(), "campaigns", "read")
    limit, key = keyset_position(first, after)
    page = await CampaignRepository(info.context.session).campaign_page(limit, key)
    return keyset_connection(page, [Campaign.of(r) for r in page.rows])


async def campaign(info: Info, id: strawberry.ID) -> Campaign:
    require(await info.context.principal(), "campaigns", "read")
    return Campaign.of(await _row(info, id))


async def create_campaign(info: Info, input: CampaignInput) -> Campaign:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "campaigns", "write")
    require(principal, "segments", "read")
    scope = require_patient_scope(principal, ctx.trail, "read", Action.LIST)
    new = audience.NewCampaign(
        name=input.name,
        segment_id=parse_global_id(input.segment_id, "Segment", "segmentId"),
        channel=m.CampaignChannel(input.channel),
        content=input.content,
        window_start=to_utc(input.window_start, "windowStart"),
        window_end=to_utc(input.window_end, "windowEnd"),
        attribution_days=input.attribution_days,
    )
    await _check_sender(info, new.channel)
    row = await audience.create(ctx.session, new, scope, principal.subject, _now())
    return Campaign.of(row)


async def launch_campaign(info: Info, id: strawberry.ID) -> Campaign:
    """Compute the audience now (the window must be open) and queue it."""
    ctx = info.context
    require(await ctx.principal(), "campaigns", "write")
    row = await _row(info, id)
    now = _now()
    if now < row.window_start:
        raise BadInput("the send window has not opened yet", field="id")
    queued = await audience.materialize(ctx.session, row, now)
    ctx.trail.returned(Action.LIST, queued)
    return Campaign.of(row)


async def cancel_campaign(info: Info, id: strawberry.ID) -> Campaign:
    """Stop a campaign; what is still in the outbox is not sent."""
    ctx = info.context
    require(await ctx.principal(), "campaigns", "write")
    row = await _row(info, id)
    await audience.cancel(ctx.session, row)
    return Campaign.of(row)


def _rules(r: contact_rules.Rules) -> ContactRules:
    return ContactRules(
        frequency_cap=r.frequency_cap,
        frequency_days=r.frequency_days,
        quiet_start=_hhmm(r.quiet_start_minute),
        quiet_end=_hhmm(r.quiet_end_minute),
        timezone=r.timezone,
    )


async def contact_rules_query(info: Info) -> ContactRules:
    require(await info.context.principal(), "campaigns", "read")
    return _rules(await contact_rules.load(info.context.session))


async def set_contact_rules(
    info: Info,
    frequency_cap: int,
    frequency_days: int,
    quiet_start: str,
    quiet_end: str,
    timezone: str = "Asia/Shanghai",
) -> ContactRules:
    require(await info.context.principal(), "policies", "write")
    rules = contact_rules.Rules(
        frequency_cap,
        frequency_days,
        _minute(quiet_start, "quietStart"),
        _minute(quiet_end, "quietEnd"),
        timezone.strip(),
    )
    return _rules(await contact_rules.save(info.context.session, rules))
