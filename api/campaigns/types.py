"""GraphQL types of campaigns (群发): the campaign, its contact rules and what it reached."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.types import Info

from api.campaigns.loaders import reach_loader
from api.ids import to_global_id
from api.node import Node
from api.rows import RowType
from domain.campaigns import models as m
from domain.care.orders import to_yuan

CampaignChannelEnum = strawberry.enum(
    m.CampaignChannel,
    description="SMS, or WECOM (企业群发: WeCom group-message task a staff member confirms).",
)
CampaignStatusEnum = strawberry.enum(
    m.CampaignStatus,
    description="SCHEDULED (no audience yet), SENDING (audience in the outbox), DONE, CANCELLED.",
)


@strawberry.input(description="A new campaign.")
class CampaignInput:
    name: str = strawberry.field(description="Name (1-100 characters).")
    segment_id: strawberry.ID = strawberry.field(description="The segment to reach (global id).")
    channel: CampaignChannelEnum = strawberry.field(  # type: ignore[valid-type]
        description="How to reach them."
    )
    content: str = strawberry.field(description="The message (1-500 characters), sent as is.")
    window_start: datetime = strawberry.field(
        description="When sending may start (with a timezone offset); the audience is computed "
        "then, not now."
    )
    window_end: datetime = strawberry.field(
        description="When sending stops; what is unsent then expires (window at most 30 days)."
    )
    attribution_days: int = strawberry.field(
        default=7,
        description="Visits and orders up to this many days after a delivery count as the "
        "campaign's (1-90).",
    )


@strawberry.type(
    description="Per tenant: how often a patient may be reached, on all channels "
    "together, and the quiet hours in which nothing is sent (免打扰)."
)
class ContactRules:
    frequency_cap: int = strawberry.field(
        description="At most this many campaign messages per patient…"
    )
    frequency_days: int = strawberry.field(description="…within this many days, all channels.")
    quiet_start: str = strawberry.field(description="Quiet hours start, local time HH:MM.")
    quiet_end: str = strawberry.field(description="Quiet hours end, local time HH:MM.")
    timezone: str = strawberry.field(description="IANA time zone of the quiet hours.")


@strawberry.type(description="What a campaign reached and brought in (触达与转化).")
class CampaignReach:
    audience: int = strawberry.field(description="Deliveries written to the outbox.")
    pending: int = strawberry.field(
        description="Waiting for their time (window, quiet hours, retry) or being sent."
    )
    awaiting_staff: int = strawberry.field(
        description="In a WeCom task no staff member has confirmed yet."
    )
    delivered: int = strawberry.field(description="Delivered.")
    failed: int = strawberry.field(description="Refused for good or out of retries.")
    withdrawn: int = strawberry.field(
        description="Not sent: consent was withdrawn (or the data erased) before sending."
    )
    opted_out: int = strawberry.field(
        description="Unsubscribed: the provider refused as opted out, or the patient withdrew "
        "marketing consent on this channel within the attribution window after delivery."
    )
    expired: int = strawberry.field(description="Not sent before the window closed.")
    cancelled: int = strawberry.field(description="Not sent: the campaign was cancelled.")
    visits: int = strawberry.field(
        description="Arrived visits of delivered patients within their attribution window."
    )
    orders: int = strawberry.field(
        description="Paid orders of delivered patients within their attribution window."
    )
    revenue: Decimal = strawberry.field(description="Those orders' value net of refunds, yuan.")
    converted_patients: int = strawberry.field(
        description="Delivered patients with a visit or an order in their window."
    )


@strawberry.type(description="A bulk send (群发) to a segment on one channel within a window.")
class Campaign(RowType, Node):
    _row: strawberry.Private[m.Campaign]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Campaign", self._row.id))

    name: str = strawberry.field(description="Name.")

    @strawberry.field(description="The segment reached (global id).")
    def segment_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Segment", self._row.segment_id))

    @strawberry.field(description="Channel.")
    def channel(self) -> CampaignChannelEnum:  # type: ignore[valid-type]
        return m.CampaignChannel(self._row.channel)

    content: str = strawberry.field(description="The message.")
    window_start: datetime = strawberry.field(description="When sending may start.")
    window_end: datetime = strawberry.field(description="When sending stops.")
    attribution_days: int = strawberry.field(
        description="Days after a delivery in which conversions are credited."
    )

    @strawberry.field(description="Status.")
    def status(self) -> CampaignStatusEnum:  # type: ignore[valid-type]
        return m.CampaignStatus(self._row.status)

    created_by: str = strawberry.field(description="Who created it (user:<id>).")
    created_at: datetime = strawberry.field(description="When it was created.")
    launched_at: datetime | None = strawberry.field(
        description="When its audience was computed (null while scheduled)."
    )

    matched: int = strawberry.field(
        description="Segment members in scope when the audience was computed."
    )

    excluded_no_consent: int = strawberry.field(
        description="Members left out for want of marketing consent on the channel."
    )

    excluded_no_address: int = strawberry.field(
        description="Consenting members left out for want of an address on the channel "
        "(a phone for SMS, a WeCom contact for WECOM)."
    )

    excluded_by_cap: int = strawberry.field(
        description="Members left out by the frequency cap (all channels)."
    )

    @strawberry.field(description="Deliveries, outcomes and conversions so far.")
    async def reach(self, info: Info) -> CampaignReach:
        ctx = info.context
        figures = await ctx.loader("campaign_reach", lambda: reach_loader(ctx.session)).load(
            self._row.id
        )
        s = figures.by_status
        D = m.DeliveryStatus
        return CampaignReach(
            audience=sum(s.values()),
            pending=s.get(D.PENDING, 0) + s.get(D.SENDING, 0),
            awaiting_staff=s.get(D.AWAITING_STAFF, 0),
            delivered=s.get(D.DELIVERED, 0),
            failed=s.get(D.FAILED, 0),
            withdrawn=s.get(D.WITHDRAWN, 0),
            opted_out=figures.opted_out,
            expired=s.get(D.EXPIRED, 0),
            cancelled=s.get(D.CANCELLED, 0),
            visits=figures.visits,
            orders=figures.orders,
            revenue=to_yuan(figures.revenue_fen),
            converted_patients=figures.converted_patients,
        )
