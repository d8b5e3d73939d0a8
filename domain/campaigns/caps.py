"""The frequency cap every contact counts against: campaign messages and survey links, on all
channels together, over the tenant's `frequencyDays`. Whoever queues a contact takes `lock`
first, so two writers (a campaign launch, the survey pass) cannot both use a patient's last
slot."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns.models import COUNTED, Delivery
from domain.campaigns.rules import Rules
from domain.surveys.models import SurveyDelivery, SurveyDeliveryStatus
from tenancy.session import lock_tenant

# Survey deliveries that count: sent, or about to be.
SURVEY_COUNTED = (
    SurveyDeliveryStatus.PENDING,
    SurveyDeliveryStatus.SENDING,
    SurveyDeliveryStatus.DELIVERED,
    SurveyDeliveryStatus.ANSWERED,
)


async def lock(session: AsyncSession) -> None:
    await lock_tenant(session, "campaign-audience")


def _contacts(rules: Rules, now: datetime):  # type: ignore[no-untyped-def]
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


def over_cap(rules: Rules, now: datetime) -> Select:
    """Patients who have reached the cap: a subquery of patient ids."""
    contacts = _contacts(rules, now)
    return (
        select(contacts.c.patient_id)
        .group_by(contacts.c.patient_id)
        .having(func.count() >= rules.frequency_cap)
    )


async def contact_counts(session: AsyncSession, rules: Rules, now: datetime) -> Counter[uuid.UUID]:
    """Contacts per patient within the window (patients with none are absent)."""
    contacts = _contacts(rules, now)
    rows = await session.execute(
        select(contacts.c.patient_id, func.count()).group_by(contacts.c.patient_id)
    )
    return Counter({pid: int(n) for pid, n in rows})
