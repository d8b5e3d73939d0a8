"""Appointments and visits: book, reschedule, cancel, arrive, no-show."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.care import follow_ups
from domain.care.models import FollowUpTrigger, Visit, VisitStatus
from domain.care.repository import CareRepository
from domain.clock import not_in_future
from domain.errors import BadInput, Conflict
from domain.patients.models import LifecycleStage, Patient
from domain.pool.service import PoolService
from domain.referrals.models import RewardTrigger
from domain.referrals.service import ReferralService
from domain.tenants.branches import BranchService

# Stages a visit moves a patient out of (a converted or returning patient stays where they are).
BEFORE_VISIT = {
    LifecycleStage.LEAD,
    LifecycleStage.NURTURING,
    LifecycleStage.QUALIFIED,
    LifecycleStage.BOOKED,
    LifecycleStage.LOST,
}


def _aware(at: datetime, field: str) -> datetime:
    if at.tzinfo is None:
        raise BadInput("give a time with a timezone offset", field=field)
    return at.astimezone(UTC)  # stored in UTC: SQLite keeps no offset


class VisitService:
    def __init__(self, session: AsyncSession, actor: str) -> None:
        self.session = session
        self.actor = actor
        self.pool = PoolService(session, actor)

    async def _check_branch(self, branch_id: uuid.UUID) -> None:
        # A closed branch books no new visits; its past visits stay.
        await BranchService(self.session).check_open(branch_id, "branchId")

    async def book(
        self,
        patient: Patient,
        branch_id: uuid.UUID,
        doctor_id: uuid.UUID | None,
        at: datetime,
    ) -> Visit:
        await self._check_branch(branch_id)
        visit = Visit(
            patient_id=patient.id,
            branch_id=branch_id,
            doctor_id=doctor_id,
            scheduled_at=_aware(at, "scheduledAt"),
        )
        self.session.add(visit)
        if patient.lifecycle_stage in BEFORE_VISIT - {LifecycleStage.BOOKED}:
            await self.pool.change_stage(patient, LifecycleStage.BOOKED, "visit booked")
        await self.session.flush()
        return visit

    @staticmethod
    def _open(visit: Visit) -> None:
        if visit.status != VisitStatus.BOOKED:
            raise Conflict(f"this visit is {visit.status}, not booked")

    async def reschedule(self, visit: Visit, at: datetime) -> Visit:
        self._open(visit)
        visit.scheduled_at = _aware(at, "scheduledAt")
        await self.session.flush()
        return visit

    async def cancel(self, visit: Visit) -> Visit:
        self._open(visit)
        visit.status = VisitStatus.CANCELLED
        await self.session.flush()
        return visit

    async def no_show(self, visit: Visit) -> Visit:
        self._open(visit)
        visit.status = VisitStatus.NO_SHOW
        await self.session.flush()
        return visit

    async def arrive(self, visit: Visit, patient: Patient, at: datetime | None = None) -> Visit:
        """The patient came: first or return visit, stage, post-visit task, referral reward."""
        self._open(visit)
        arrived_at = (
            not_in_future(_aware(at, "arrivedAt"), "arrivedAt") if at else datetime.now(UTC)
        )
        earlier = await CareRepository(self.session).arrived_visit_count(patient)
        visit.status = VisitStatus.ARRIVED
        visit.arrived_at = arrived_at
        visit.is_first = not earlier
        if patient.last_visit_at is None or patient.last_visit_at < arrived_at:
            patient.last_visit_at = arrived_at
        if patient.lifecycle_stage in BEFORE_VISIT:
            await self.pool.change_stage(patient, LifecycleStage.VISITED, "arrived for a visit")
        elif not visit.is_first and patient.lifecycle_stage == LifecycleStage.CONVERTED:
            await self.pool.change_stage(patient, LifecycleStage.RETURNING, "return visit")
        await follow_ups.from_rule(
            self.session,
            FollowUpTrigger.VISIT_ARRIVED,
            patient,
            visit.id,
            arrived_at,
            visit.doctor_id or patient.assigned_staff_id,
            visit.branch_id,
        )
        if visit.is_first:
            await ReferralService(self.session).on_milestone(patient.id, RewardTrigger.FIRST_VISIT)
        await self.session.flush()
        return visit
