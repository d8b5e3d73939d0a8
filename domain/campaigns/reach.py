"""What a campaign reached and brought in.

Deliveries by outcome; opt-outs (the provider said so, or the patient withdrew marketing
consent on the campaign's channel between delivery and the end of the attribution window);
and conversions credited to the campaign: arrived visits and paid orders of delivered
patients between their delivery and `attributed_until` (delivery + the campaign's
attribution days). Everything is counted in SQL, across the campaign's deliveries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain.campaigns.models import Campaign, Delivery, DeliveryStatus
from domain.care.models import Order, OrderStatus, Visit, VisitStatus
from domain.consent.models import ConsentRecord, Purpose


@dataclass(frozen=True)
class Reach:
    by_status: dict[str, int]
    opted_out: int
    visits: int
    orders: int
    revenue_fen: int
    converted_patients: int


async def reach(session: AsyncSession, campaign: Campaign) -> Reach:
    cid: uuid.UUID = campaign.id
    by_status = {
        str(s): int(n)
        for s, n in (
            await session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.campaign_id == cid)
                .group_by(Delivery.status)
            )
        ).all()
    }
    delivered = aliased(Delivery)
    in_window = and_(
        delivered.campaign_id == cid,
        delivered.status == str(DeliveryStatus.DELIVERED),
    )
    withdrew = await session.scalar(
        select(func.count(func.distinct(delivered.patient_id)))
        .select_from(delivered)
        .join(ConsentRecord, ConsentRecord.patient_id == delivered.patient_id)
        .where(
            in_window,
            ConsentRecord.purpose == str(Purpose.MARKETING),
            ConsentRecord.channel == campaign.channel,
            ConsentRecord.granted.is_(False),
            ConsentRecord.recorded_at >= delivered.delivered_at,
            ConsentRecord.recorded_at <= delivered.attributed_until,
        )
    )
    visit_rows = (
        select(Visit.patient_id.label("patient_id"), Visit.id.label("id"))
        .join(delivered, delivered.patient_id == Visit.patient_id)
        .where(
            in_window,
            Visit.status == str(VisitStatus.ARRIVED),
            Visit.arrived_at >= delivered.delivered_at,
            Visit.arrived_at <= delivered.attributed_until,
        )
    )
    order_rows = (
        select(
            Order.patient_id.label("patient_id"),
            Order.id.label("id"),
            (Order.total_fen - Order.refunded_fen).label("net"),
        )
        .join(delivered, delivered.patient_id == Order.patient_id)
        .where(
            in_window,
            or_(Order.status == str(OrderStatus.PAID), Order.status == str(OrderStatus.REFUNDED)),
            Order.paid_at >= delivered.delivered_at,
            Order.paid_at <= delivered.attributed_until,
        )
    )
    visits = await session.scalar(select(func.count()).select_from(visit_rows.subquery()))
    orders = order_rows.subquery()
    order_count, revenue = (
        await session.execute(select(func.count(), func.coalesce(func.sum(orders.c.net), 0)))
    ).one()
    converted_ids = select(visit_rows.subquery().c.patient_id).union(select(orders.c.patient_id))
    converted = await session.scalar(select(func.count()).select_from(converted_ids.subquery()))
    return Reach(
        by_status=by_status,
        opted_out=by_status.get(str(DeliveryStatus.OPTED_OUT), 0) + int(withdrew or 0),
        visits=int(visits or 0),
        orders=int(order_count or 0),
        revenue_fen=int(revenue or 0),
        converted_patients=int(converted or 0),
    )
