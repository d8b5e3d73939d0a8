"""Making referral links (one referrer, no cycles, fraud checks) and granting rewards once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.repository import CareRepository
from domain.errors import BadInput, Conflict, NotFound
from domain.patients.models import BLIND_INDEXED, Patient
from domain.referrals import figures
from domain.referrals.models import (
    Referral,
    Reward,
    RewardRule,
    RewardStatus,
    RewardTrigger,
)
from domain.referrals.repository import ReferralRepository
from domain.referrals.tree import is_ancestor_or_self
from tenancy.session import lock_tenant

# A patient linked later than this after joining was already in the pool when "referred".
JOIN_WINDOW = timedelta(days=1)
SELF_REFERRAL = "self_referral"
ALREADY_IN_POOL = "already_in_pool"


def _shares_identifier(a: Patient, b: Patient) -> bool:
    for name in BLIND_INDEXED:
        da, db = getattr(a, f"{name}_bidx"), getattr(b, f"{name}_bidx")
        if da is not None and da == db:
            return True
    return False


class ReferralService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = ReferralRepository(session)

    async def by_code(self, code: str) -> Patient:
        patient = await self.repo.patient_by_referral_code(code.strip().upper())
        if patient is None or patient.erased_at is not None:
            raise NotFound("no patient has this referral code", field="referralCode")
        return patient

    async def _fraud_reason(self, referrer: Patient, referred: Patient) -> str:
        """Why this referral earns nothing, or "" when it may."""
        if _shares_identifier(referrer, referred):
            return SELF_REFERRAL
        if referred.created_at < datetime.now(UTC) - JOIN_WINDOW:
            return ALREADY_IN_POOL
        # Another record of the same person (same phone / WeChat / WeCom id) was here first.
        for name in BLIND_INDEXED:
            digest = getattr(referred, f"{name}_bidx")
            if digest is None:
                continue
            if await self.repo.others_with_identifier(name, digest, referrer, referred):
                return ALREADY_IN_POOL
        history = await CareRepository(self.session).arrived_visit_count(referred)
        return ALREADY_IN_POOL if history else ""

    async def link(self, referrer: Patient, referred: Patient, channel: str = "") -> Referral:
        """Record that `referrer` brought `referred`. Refuses a second referrer and any cycle,
        also when two requests race: links are made one at a time per tenant."""
        if len(channel) > 64:
            raise BadInput("channel is at most 64 characters", field="channel")
        await lock_tenant(self.session, figures.LOCK)
        if await self.repo.referrer_id_of(referred):
            raise Conflict("this patient already has a referrer", field="referredId")
        if await is_ancestor_or_self(self.session, referred.id, referrer.id):
            raise Conflict("this referral would make a cycle", field="referredId")
        reason = await self._fraud_reason(referrer, referred)
        link = Referral(
            referred_id=referred.id,
            referrer_id=referrer.id,
            channel=channel,
            eligible=not reason,
            ineligible_reason=reason,
        )
        self.session.add(link)
        try:
            async with self.session.begin_nested():
                await self.session.flush()
        except IntegrityError:
            raise Conflict("this patient already has a referrer", field="referredId") from None
        await figures.linked(self.session, referred.id)
        referrer.referral_count += 1
        await self._count_rewards(referrer)
        return link

    async def link_of(self, referred_id: uuid.UUID) -> Referral | None:
        return await self.repo.link_of(referred_id)

    async def _rules(self, trigger: RewardTrigger) -> list[RewardRule]:
        return await self.repo.active_rules(trigger)

    async def _record(
        self, rule: RewardRule, referrer_id: uuid.UUID, key: str, referred: Referral | None
    ) -> None:
        """Record a reward once: the dedupe key makes a repeat a no-op."""
        dedupe = f"{rule.id}:{key}"
        if await self.repo.has_reward(dedupe):
            return
        refused = referred is not None and not referred.eligible
        self.session.add(
            Reward(
                rule_id=rule.id,
                referrer_id=referrer_id,
                referred_id=referred.referred_id if referred else None,
                dedupe_key=dedupe,
                status=RewardStatus.REFUSED if refused else RewardStatus.GRANTED,
                points=0 if refused else rule.points,
                coupon="" if refused else rule.coupon,
                reason=referred.ineligible_reason if refused and referred else "",
            )
        )

    async def _count_rewards(self, referrer: Patient) -> None:
        """任务裂变: a reward when the referrer's eligible referrals reach a rule's N."""
        rules = await self._rules(RewardTrigger.REFERRED_COUNT)
        if not rules:
            return
        await self.session.flush()
        count = await self.repo.eligible_referrals(referrer)
        for rule in rules:
            if count >= rule.threshold:
                await self._record(rule, referrer.id, f"count:{referrer.id}", None)

    async def on_milestone(self, patient_id: uuid.UUID, trigger: RewardTrigger) -> None:
        """The referred patient's first visit or first payment: reward their referrer."""
        link = await self.link_of(patient_id)
        if link is None:
            return
        for rule in await self._rules(trigger):
            await self._record(rule, link.referrer_id, f"{trigger}:{patient_id}", link)
