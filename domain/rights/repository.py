"""All SQL of the patient's rights under PIPL (domain.rights): the rows read for one person's
copy and the free text blanked on erasure. The rows are other features' (care, pool,
referrals, consent, surveys, WeCom groups): their models are selected here, and where a
feature's repository already holds the very statement (stage history, rewards), that one is
used."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import Order, OrderLine, Refund, Visit
from domain.consent.models import ConsentRecord
from domain.patients.models import Patient
from domain.pool.models import FollowUp, InteractionEvent, PatientTag, StageChange, Tag
from domain.pool.repository import PoolRepository
from domain.referrals.models import Referral, Reward
from domain.referrals.repository import ReferralRepository
from domain.surveys.models import SurveyAnswer
from domain.wecom.group_models import GroupChat, GroupMember

ERASED = "[erased]"


class RightsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- a copy of everything held on a patient (one statement each) ---

    async def orders(self, patient: Patient) -> Sequence[Order]:
        stmt = select(Order).where(Order.patient_id == patient.id)
        return (await self.session.scalars(stmt)).all()

    async def order_lines(self, order_ids: Sequence[uuid.UUID]) -> Sequence[OrderLine]:
        """The orders' lines (a statement even when there are no orders)."""
        stmt = select(OrderLine).where(OrderLine.order_id.in_(order_ids))
        return (await self.session.scalars(stmt)).all()

    async def refunds(self, order_ids: Sequence[uuid.UUID]) -> Sequence[Refund]:
        """The orders' refunds (a statement even when there are no orders)."""
        stmt = select(Refund).where(Refund.order_id.in_(order_ids))
        return (await self.session.scalars(stmt)).all()

    async def tags(self, patient: Patient) -> Sequence[Row[tuple[str, str, datetime]]]:
        """(tag name, source, added at) of the patient's tags."""
        stmt = (
            select(Tag.name, PatientTag.source, PatientTag.added_at)
            .join(Tag, Tag.id == PatientTag.tag_id)
            .where(PatientTag.patient_id == patient.id)
        )
        return (await self.session.execute(stmt)).all()

    async def survey_answers(self, patient: Patient) -> Sequence[SurveyAnswer]:
        stmt = (
            select(SurveyAnswer)
            .where(SurveyAnswer.patient_id == patient.id)
            .order_by(SurveyAnswer.answered_at)
        )
        return (await self.session.scalars(stmt)).all()

    async def group_stays(
        self, member_bidx: bytes
    ) -> Sequence[Row[tuple[str, datetime, datetime | None]]]:
        """(group name, joined, left) of each WeCom customer-group stay of the member with
        this blind index, oldest first."""
        stmt = (
            select(GroupChat.name, GroupMember.joined_at, GroupMember.left_at)
            .join(GroupChat, GroupChat.id == GroupMember.group_id)
            .where(GroupMember.member_bidx == member_bidx)
            .order_by(GroupMember.joined_at)
        )
        return (await self.session.execute(stmt)).all()

    async def events(self, patient: Patient) -> Sequence[InteractionEvent]:
        stmt = (
            select(InteractionEvent)
            .where(InteractionEvent.patient_id == patient.id)
            .order_by(InteractionEvent.occurred_at)
        )
        return (await self.session.scalars(stmt)).all()

    async def stage_history(self, patient: Patient) -> Sequence[StageChange]:
        return await PoolRepository(self.session).stage_changes(patient.id)

    async def visits(self, patient: Patient) -> Sequence[Visit]:
        stmt = select(Visit).where(Visit.patient_id == patient.id).order_by(Visit.scheduled_at)
        return (await self.session.scalars(stmt)).all()

    async def follow_ups(self, patient: Patient) -> Sequence[FollowUp]:
        stmt = select(FollowUp).where(FollowUp.patient_id == patient.id)
        return (await self.session.scalars(stmt)).all()

    async def referrals(self, patient: Patient) -> Sequence[Referral]:
        """The referrals either way: the patient referred, or referred by them."""
        stmt = select(Referral).where(
            or_(Referral.referred_id == patient.id, Referral.referrer_id == patient.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def rewards(self, patient: Patient) -> Sequence[Reward]:
        return (await self.session.scalars(ReferralRepository.rewards_of(patient))).all()

    async def consents(self, patient: Patient) -> Sequence[ConsentRecord]:
        stmt = (
            select(ConsentRecord)
            .where(ConsentRecord.patient_id == patient.id)
            .order_by(ConsentRecord.recorded_at)
        )
        return (await self.session.scalars(stmt)).all()

    # --- erasure ---

    async def blank_free_text(self, patient: Patient) -> None:
        """The free text staff wrote about the patient (follow-up outcomes, stage change
        reasons, refund reasons) set to ERASED, and their own survey free text removed: one
        UPDATE each, in that order."""
        pid = patient.id
        orders = select(Order.id).where(Order.patient_id == pid)
        for stmt in (
            update(FollowUp)
            .where(FollowUp.patient_id == pid, FollowUp.outcome != "")
            .values(outcome=ERASED),
            update(StageChange)
            .where(StageChange.patient_id == pid, StageChange.reason != "")
            .values(reason=ERASED),
            update(Refund)
            .where(Refund.order_id.in_(orders), Refund.reason != "")
            .values(reason=ERASED),
            # What they wrote in satisfaction surveys; their scores stay in the figures.
            update(SurveyAnswer)
            .where(SurveyAnswer.patient_id == pid, SurveyAnswer.free_text_ct.is_not(None))
            .values(free_text_ct=None),
        ):
            await self.session.execute(stmt.execution_options(synchronize_session=False))
