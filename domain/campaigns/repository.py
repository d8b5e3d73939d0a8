"""The campaigns feature's SQL. `CampaignRepository`: campaigns and the reads behind their
GraphQL fields, the contact rules, the frequency cap, the audience computed under it and the
reach figures. `OutboxRepository`: the deliveries the sender claims, sends, tracks and
closes."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Subquery,
    and_,
    case,
    false,
    func,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from domain.campaigns.models import (
    COUNTED,
    OPEN,
    Campaign,
    CampaignChannel,
    CampaignStatus,
    ContactRules,
    Delivery,
    DeliveryStatus,
)
from domain.care.models import Order, OrderStatus, Visit, VisitStatus
from domain.consent.models import ConsentRecord, ConsentState, ContactChannel, Purpose
from domain.consent.repository import reachable
from domain.paging import Keyset, KeysetPage, keyset_rows
from domain.patients.models import Patient
from domain.pool.models import Segment
from domain.pool.repository import compile_filter
from domain.surveys.models import SurveyDelivery, SurveyDeliveryStatus
from tenancy.session import stamp_rows


class FrequencyCap(Protocol):
    """What the statements read of the contact rules (domain.campaigns.rules.Rules): the
    frequency cap across channels and its window."""

    @property
    def frequency_cap(self) -> int: ...

    @property
    def frequency_days(self) -> int: ...


# Survey deliveries that count against the frequency cap: sent, or about to be.
SURVEY_COUNTED = (
    SurveyDeliveryStatus.PENDING,
    SurveyDeliveryStatus.SENDING,
    SurveyDeliveryStatus.DELIVERED,
    SurveyDeliveryStatus.ANSWERED,
)


def _contacts(rules: FrequencyCap, now: datetime) -> Subquery:
    since = now - timedelta(days=rules.frequency_days)
    return union_all(
        select(Delivery.patient_id.label("patient_id")).where(
            Delivery.status.in_([str(s) for s in COUNTED]), Delivery.queued_at > since
        ),
        select(SurveyDelivery.patient_id.label("patient_id")).where(
            SurveyDelivery.status.in_([str(s) for s in SURVEY_COUNTED]),
            SurveyDelivery.queued_at > since,
        ),
    ).subquery("contacts")


def over_cap(rules: FrequencyCap, now: datetime) -> Select[Any]:
    """Patients who have reached the cap: a subquery of patient ids."""
    contacts = _contacts(rules, now)
    return (
        select(contacts.c.patient_id)
        .group_by(contacts.c.patient_id)
        .having(func.count() >= rules.frequency_cap)
    )


def _branches_clause(campaign: Campaign) -> ColumnElement[bool]:
    """The campaign's own branch restriction, as recorded when it was created (within its
    creator's scope): all branches, or patients whose home branch is one of those."""
    if campaign.branch_ids is None:
        return true()
    branches = sorted({uuid.UUID(b) for b in campaign.branch_ids})
    return Patient.home_branch_id.in_(branches) if branches else false()


def _how_many(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


@dataclass(frozen=True)
class AudienceQuery:
    """A campaign's audience as WHERE clauses: the segment's members within the campaign's
    scope, then those with consent, an address, and room under the cap."""

    members: tuple[ColumnElement[bool], ...]
    consent: ColumnElement[bool]
    address: ColumnElement[bool]
    capped: Select[Any]

    @classmethod
    def of(
        cls,
        campaign: Campaign,
        segment: Segment,
        address: InstrumentedAttribute[Any],
        rules: FrequencyCap,
        now: datetime,
    ) -> AudienceQuery:
        """`address` is the patient column that must hold an address on the channel."""
        members = (
            compile_filter(segment.filter, now),
            _branches_clause(campaign),
            Patient.erased_at.is_(None),
            Patient.merged_into_id.is_(None),
        )
        channel = CampaignChannel(campaign.channel)
        consent = reachable(Purpose.MARKETING, [ContactChannel(channel.value)])
        return cls(members, consent, address.is_not(None), over_cap(rules, now))


def _attributed(ids: list[uuid.UUID]) -> tuple[Subquery, Subquery]:
    """Arrived visits and paid orders of delivered patients between their delivery and
    `attributed_until`: subqueries of (campaign, patient, visit id / net fen)."""
    d = aliased(Delivery)
    delivered = and_(d.campaign_id.in_(ids), d.status == str(DeliveryStatus.DELIVERED))
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
    return visits.subquery(), orders.subquery()


class CampaignRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- campaigns ---

    async def campaign(self, campaign_id: uuid.UUID) -> Campaign | None:
        return await self.session.scalar(select(Campaign).where(Campaign.id == campaign_id))

    @staticmethod
    def every_campaign() -> Select[Any]:
        """The bound tenant's campaigns, as a statement to page."""
        return select(Campaign)

    async def due_campaigns(self, now: datetime) -> list[Campaign]:
        """Scheduled campaigns whose window has opened (and not yet closed)."""
        rows = await self.session.scalars(
            select(Campaign)
            .where(
                Campaign.status == CampaignStatus.SCHEDULED,
                Campaign.window_start <= now,
            )
            .order_by(Campaign.window_start, Campaign.id)
        )
        return list(rows)

    async def cancel_pending(self, campaign: Campaign) -> int:
        """Cancel the campaign's deliveries not yet handed to a provider; how many."""
        result = await self.session.execute(
            update(Delivery)
            .where(Delivery.campaign_id == campaign.id, Delivery.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.CANCELLED)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)

    # --- contact rules and the frequency cap ---

    async def contact_rules(self) -> ContactRules | None:
        """The tenant's contact rules row (none until an admin saves them)."""
        return await self.session.scalar(select(ContactRules))

    async def contact_counts(self, rules: FrequencyCap, now: datetime) -> Counter[uuid.UUID]:
        """Contacts per patient within the window (patients with none are absent)."""
        contacts = _contacts(rules, now)
        rows = await self.session.execute(
            select(contacts.c.patient_id, func.count()).group_by(contacts.c.patient_id)
        )
        return Counter({pid: int(n) for pid, n in rows})

    # --- audience ---

    async def audience_breakdown(self, audience: AudienceQuery) -> tuple[int, int, int]:
        """(members, of them with consent, of those with an address): why members were
        left out, in one pass over them."""
        matched, with_consent, with_address = (
            await self.session.execute(
                select(
                    func.count(),
                    _how_many(audience.consent),
                    _how_many(audience.consent & audience.address),
                )
                .select_from(Patient)
                .where(*audience.members)
            )
        ).one()
        return int(matched), int(with_consent), int(with_address)

    async def audience_ids(self, audience: AudienceQuery) -> list[uuid.UUID]:
        """The patients the campaign reaches, by id."""
        where = (
            *audience.members,
            audience.consent,
            audience.address,
            Patient.id.not_in(audience.capped),
        )
        stmt = select(Patient.id).where(*where).order_by(Patient.id)
        return list((await self.session.scalars(stmt)).all())

    async def insert_deliveries(self, rows: list[dict[str, Any]]) -> None:
        """Write one batch of outbox rows (plain dicts, stamped with the bound tenant)."""
        await self.session.execute(Delivery.__table__.insert(), stamp_rows(self.session, rows))

    # --- reach ---

    async def deliveries_by_status(
        self, ids: list[uuid.UUID]
    ) -> Sequence[Row[tuple[uuid.UUID, str, int]]]:
        """(campaign, delivery status, count) of the campaigns' deliveries."""
        stmt = (
            select(Delivery.campaign_id, Delivery.status, func.count())
            .where(Delivery.campaign_id.in_(ids))
            .group_by(Delivery.campaign_id, Delivery.status)
        )
        return (await self.session.execute(stmt)).all()

    async def withdrawn_after_delivery(
        self, ids: list[uuid.UUID]
    ) -> Sequence[Row[tuple[uuid.UUID, int]]]:
        """(campaign, patients) delivered who then withdrew marketing consent on the
        campaign's channel within the attribution window."""
        d = aliased(Delivery)
        delivered = and_(d.campaign_id.in_(ids), d.status == str(DeliveryStatus.DELIVERED))
        stmt = (
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
        )
        return (await self.session.execute(stmt)).all()

    async def attributed_visits(self, ids: list[uuid.UUID]) -> Sequence[Row[tuple[uuid.UUID, int]]]:
        """(campaign, visits credited to it)."""
        v, _o = _attributed(ids)
        return (await self.session.execute(select(v.c.cid, func.count()).group_by(v.c.cid))).all()

    async def attributed_orders(
        self, ids: list[uuid.UUID]
    ) -> Sequence[Row[tuple[uuid.UUID, int, int]]]:
        """(campaign, orders credited to it, their net revenue in fen)."""
        _v, o = _attributed(ids)
        stmt = select(o.c.cid, func.count(), func.coalesce(func.sum(o.c.net), 0)).group_by(o.c.cid)
        return (await self.session.execute(stmt)).all()

    async def converted_patients(
        self, ids: list[uuid.UUID]
    ) -> Sequence[Row[tuple[uuid.UUID, int]]]:
        """(campaign, patients with a credited visit or order)."""
        v, o = _attributed(ids)
        converted = select(v.c.cid, v.c.pid).union(select(o.c.cid, o.c.pid)).subquery()
        stmt = select(converted.c.cid, func.count()).group_by(converted.c.cid)
        return (await self.session.execute(stmt)).all()

    # --- pages (GraphQL) ---

    async def campaign_page(self, limit: int, after: Keyset | None) -> KeysetPage[Campaign]:
        """A page of `every_campaign`, by creation time."""
        stmt = self.every_campaign()
        return await keyset_rows(self.session, stmt, Campaign, Campaign.created_at, limit, after)


def _due(now: datetime, stale_after: timedelta) -> ColumnElement[bool]:
    pending = (Delivery.status == DeliveryStatus.PENDING) & (Delivery.next_attempt_at <= now)
    stale = (Delivery.status == DeliveryStatus.SENDING) & (Delivery.claimed_at <= now - stale_after)
    return pending | stale


class OutboxRepository:
    """The deliveries as the sender sees them (domain.campaigns.sender)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- claiming ---

    async def next_due_campaign(
        self, now: datetime, channel: CampaignChannel, stale_after: timedelta
    ) -> uuid.UUID | None:
        """The sending campaign, window still open, whose due delivery on `channel` has
        waited longest."""
        return await self.session.scalar(
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

    async def lock_due(
        self, campaign_id: uuid.UUID, now: datetime, stale_after: timedelta, limit: int
    ) -> Sequence[Row[tuple[uuid.UUID, uuid.UUID, str]]]:
        """(id, patient, status) of up to `limit` due deliveries of the campaign, locked;
        rows another sender holds are skipped."""
        return (
            await self.session.execute(
                select(Delivery.id, Delivery.patient_id, Delivery.status)
                .where(Delivery.campaign_id == campaign_id, _due(now, stale_after))
                .order_by(Delivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()

    async def mark_sending(self, ids: list[uuid.UUID], now: datetime) -> None:
        await self.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(status=DeliveryStatus.SENDING, claimed_at=now, attempts=Delivery.attempts + 1)
            .execution_options(synchronize_session=False)
        )

    # --- sending ---

    async def consenting(
        self, patient_ids: list[uuid.UUID], channel: str
    ) -> dict[uuid.UUID, Patient]:
        """Those of `patient_ids` who may still be reached on `channel`, with their rows; the
        consent and patient rows stay share-locked until the batch commits (PostgreSQL;
        SQLite's writer lock already serialises)."""
        rows = await self.session.scalars(
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

    async def still_sending(self, delivery_ids: list[uuid.UUID]) -> list[Delivery]:
        """Those of the claimed deliveries still `sending`, by id."""
        rows = await self.session.scalars(
            select(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.SENDING)
            .order_by(Delivery.id)
        )
        return list(rows)

    async def marketing_consent(
        self, patient: Patient, channel: CampaignChannel
    ) -> ConsentState | None:
        return await self.session.scalar(
            select(ConsentState).where(
                ConsentState.patient_id == patient.id,
                ConsentState.purpose == str(Purpose.MARKETING),
                ConsentState.channel == str(channel),
            )
        )

    async def provider_refs(self, campaign: Campaign) -> set[str]:
        """The WeCom tasks (provider refs) already recorded on the campaign's deliveries."""
        rows = await self.session.scalars(
            select(Delivery.provider_ref).where(
                Delivery.campaign_id == campaign.id, Delivery.provider_ref != ""
            )
        )
        return set(rows.all())

    # --- WeCom task results ---

    async def awaiting_staff_tasks(self) -> Sequence[str]:
        """The WeCom tasks (msgids) with deliveries still awaiting staff."""
        stmt = (
            select(Delivery.provider_ref)
            .where(Delivery.status == DeliveryStatus.AWAITING_STAFF)
            .distinct()
        )
        return (await self.session.scalars(stmt)).all()

    async def awaiting_staff(
        self, msgid: str, digests: list[str]
    ) -> Sequence[Row[tuple[Delivery, str, Campaign]]]:
        """(delivery, the patient's external id digest, campaign) of the task's deliveries
        still awaiting staff, for the patients whose digest is in `digests`."""
        stmt = (
            select(Delivery, Patient.wecom_external_id_bidx, Campaign)
            .join(Patient, Patient.id == Delivery.patient_id)
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(
                Delivery.provider_ref == msgid,
                Delivery.status == DeliveryStatus.AWAITING_STAFF,
                Patient.wecom_external_id_bidx.in_(digests),
            )
        )
        return (await self.session.execute(stmt)).all()

    # --- closing ---

    async def expire_unsent(self, now: datetime) -> int:
        """Expire what a closed window left pending or awaiting staff; how many."""
        closed = select(Campaign.id).where(Campaign.window_end <= now)
        expired = await self.session.execute(
            update(Delivery)
            .where(
                Delivery.campaign_id.in_(closed),
                Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.AWAITING_STAFF]),
            )
            .values(status=DeliveryStatus.EXPIRED)
            .execution_options(synchronize_session=False)
        )
        return int(expired.rowcount or 0)

    async def expire_stale_claims(self, now: datetime, stale_after: timedelta) -> None:
        # Claimed by a sender that died, and the window closed before it could be resolved: its
        # fate is unknown to us (the provider may have it), so it is not resent after the window.
        closed = select(Campaign.id).where(Campaign.window_end <= now)
        await self.session.execute(
            update(Delivery)
            .where(
                Delivery.campaign_id.in_(closed),
                Delivery.status == DeliveryStatus.SENDING,
                Delivery.claimed_at <= now - stale_after,
            )
            .values(status=DeliveryStatus.EXPIRED, last_error="outcome_unknown")
            .execution_options(synchronize_session=False)
        )

    async def close_missed(self, now: datetime) -> None:
        """Scheduled campaigns whose window closed before they started are done."""
        await self.session.execute(
            update(Campaign)
            .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.window_end <= now)
            .values(status=CampaignStatus.DONE)
            .execution_options(synchronize_session=False)
        )

    async def close_finished(self) -> None:
        """Sending campaigns with no open delivery left are done."""
        still_open = select(Delivery.campaign_id).where(Delivery.status.in_([str(s) for s in OPEN]))
        await self.session.execute(
            update(Campaign)
            .where(Campaign.status == CampaignStatus.SENDING, Campaign.id.not_in(still_open))
            .values(status=CampaignStatus.DONE)
            .execution_options(synchronize_session=False)
        )
