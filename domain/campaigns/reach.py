"""What campaigns reached and brought in, for many campaigns at once (a page of them costs
the same five statements as one).

Deliveries by outcome; opt-outs (the provider said so, or the patient withdrew marketing
consent on the campaign's channel between delivery and the end of the attribution window);
and conversions credited to the campaign: arrived visits and paid orders of delivered
patients between their delivery and `attributed_until` (delivery + the campaign's
attribution days). Everything is counted in SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain.campaigns.models import Campaign, Delivery, DeliveryStatus
from domain.care.models import Order, OrderStatus, Visit, VisitStatus
from domain.consent.models import ConsentRecord, Purpose


@dataclass
class Reach:
    by_status: dict[str, int] = field(default_factory=dict)
    withdrew_after: int = 0  # delivered, then withdrew marketing consent within the window
    visits: int = 0
    orders: int = 0
    revenue_fen: int = 0
    converted_patients: int = 0

    @property
    def opted_out(self) -> int:
        return self.by_status.get(str(DeliveryStatus.OPTED_OUT), 0) + self.withdrew_after


async def reach(session: AsyncSession, campaign_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Reach]:
    ids = sorted(set(campaign_ids))
    out = {cid: Reach() for cid in ids}
    if not ids:
        return out
    for cid, status, n in await session.execute(
        select(Delivery.campaign_id, Delivery.status, func.count())
        .where(Delivery.campaign_id.in_(ids))
        .group_by(Delivery.campaign_id, Delivery.status)
    ):
        out[cid].by_status[str(status)] = int(n)

    d = aliased(Delivery)
    delivered = and_(d.campaign_id.in_(ids), d.status == str(DeliveryStatus.DELIVERED))
    for cid, n in await session.execute(
        select(d.campaign_id, func.count(func.distinct(d.patient_id)))
        .join(Campaign, Campaign.id == d.campaign_id)
        .join(ConsentRecord, ConsentRecord.patient_id == d.patient_id)
        .where(
            delivered,
            ConsentRecord.purpose == str(Purpose.MARKETING),
            ConsentRecord.channel == Campaign.channel,
            ConsentRecord.granted.is_(False),
            ConsentRecord.recorded_at >= d.delivered_at,
            ConsentRecord.recorded_at <= d.attributed_until,
        )
        .group_by(d.campaign_id)
    ):
        out[cid].withdrew_after = int(n)

    visits = (
        select(d.campaign_id.label("cid"), Visit.patient_id.label("pid"), Visit.id.label("id"))
        .join(d, d.patient_id == Visit.patient_id)
        .where(
            delivered,
            Visit.status == str(VisitStatus.ARRIVED),
            Visit.arrived_at >= d.delivered_at,
            Visit.arrived_at <= d.attributed_until,
        )
    )
    orders = (
        select(
            d.campaign_id.label("cid"),
            Order.patient_id.label("pid"),
            (Order.total_fen - Order.refunded_fen).label("net"),
        )
        .join(d, d.patient_id == Order.patient_id)
        .where(
            delivered,
            or_(Order.status == str(OrderStatus.PAID), Order.status == str(OrderStatus.REFUNDED)),
            Order.paid_at >= d.delivered_at,
            Order.paid_at <= d.attributed_until,
        )
    )
    v = visits.subquery()
    for cid, n in await session.execute(select(v.c.cid, func.count()).group_by(v.c.cid)):
        out[cid].visits = int(n)
    o = orders.subquery()
    for cid, n, fen in await session.execute(
        select(o.c.cid, func.count(), func.coalesce(func.sum(o.c.net), 0)).group_by(o.c.cid)
    ):
        out[cid].orders, out[cid].revenue_fen = int(n), int(fen)
    converted = select(v.c.cid, v.c.pid).union(select(o.c.cid, o.c.pid)).subquery()
    for cid, n in await session.execute(
        select(converted.c.cid, func.count()).group_by(converted.c.cid)
    ):
        out[cid].converted_patients = int(n)
    return out
