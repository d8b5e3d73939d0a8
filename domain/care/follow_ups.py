"""Follow-up tasks (回访 / 随访): made by staff or by rules, done with an outcome."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import DEFAULT_DELAY_DAYS, FollowUpRule, FollowUpTrigger
from domain.care.repository import CareRepository
from domain.errors import BadInput, Conflict
from domain.patients.models import Patient
from domain.pool.models import FollowUp, FollowUpKind, FollowUpStatus

RULE_KINDS = {
    FollowUpTrigger.VISIT_ARRIVED: FollowUpKind.POST_VISIT,
    FollowUpTrigger.LEAD_QUALIFIED: FollowUpKind.QUALIFIED_LEAD_CALL,
}


@dataclass(frozen=True)
class RuleSetting:
    trigger: FollowUpTrigger
    delay_days: int
    active: bool


async def rule_settings(session: AsyncSession) -> list[RuleSetting]:
    stored = {r.trigger: r for r in await CareRepository(session).follow_up_rules()}
    return [
        RuleSetting(
            t,
            stored[t].delay_days if t in stored else DEFAULT_DELAY_DAYS[t],
            stored[t].active if t in stored else True,
        )
        for t in FollowUpTrigger
    ]


async def set_rule(
    session: AsyncSession, trigger: FollowUpTrigger, delay_days: int, active: bool
) -> RuleSetting:
    if not 0 <= delay_days <= 365:
        raise BadInput("delayDays must be between 0 and 365", field="delayDays")
    row = await CareRepository(session).follow_up_rule(trigger)
    if row is None:
        row = FollowUpRule(trigger=str(trigger), delay_days=delay_days, active=active)
        session.add(row)
    row.delay_days, row.active = delay_days, active
    await session.flush()
    return RuleSetting(trigger, delay_days, active)


async def from_rule(
    session: AsyncSession,
    trigger: FollowUpTrigger,
    patient: Patient,
    subject: uuid.UUID,
    at: datetime,
    assignee_id: uuid.UUID | None,
    branch_id: uuid.UUID | None = None,
) -> FollowUp | None:
    """The task a rule makes for `subject` (a visit, a patient), once: repeats are no-ops."""
    setting = next(s for s in await rule_settings(session) if s.trigger == trigger)
    if not setting.active:
        return None
    key = f"{trigger}:{subject}"
    if await CareRepository(session).follow_up_made(key):
        return None
    task = FollowUp(
        patient_id=patient.id,
        branch_id=branch_id or patient.home_branch_id,
        assignee_id=assignee_id,
        kind=str(RULE_KINDS[trigger]),
        due_at=at + timedelta(days=setting.delay_days),
        dedupe_key=key,
    )
    session.add(task)
    return task


async def complaint_callback(
    session: AsyncSession,
    patient: Patient,
    subject: uuid.UUID,
    branch_id: uuid.UUID,
    at: datetime,
    assignee_id: uuid.UUID | None = None,
) -> FollowUp | None:
    """The complaint callback (投诉回访) a low survey score opens for the branch, due at once,
    once per `subject` (the survey delivery): repeats are no-ops."""
    key = f"complaint:{subject}"
    if await CareRepository(session).follow_up_made(key):
        return None
    task = FollowUp(
        patient_id=patient.id,
        branch_id=branch_id,
        assignee_id=assignee_id,
        kind=str(FollowUpKind.COMPLAINT_CALLBACK),
        due_at=at,
        dedupe_key=key,
    )
    session.add(task)
    await session.flush()
    return task


def create(
    session: AsyncSession,
    patient: Patient,
    kind: str,
    due_at: datetime,
    assignee_id: uuid.UUID | None,
) -> FollowUp:
    try:
        kind = str(FollowUpKind(kind))
    except ValueError:
        raise BadInput("unknown follow-up kind", field="kind") from None
    task = FollowUp(
        patient_id=patient.id,
        branch_id=patient.home_branch_id,
        assignee_id=assignee_id,
        kind=kind,
        due_at=due_at,
    )
    session.add(task)
    return task


def close(task: FollowUp, status: FollowUpStatus, outcome: str) -> None:
    if task.status != FollowUpStatus.OPEN:
        raise Conflict(f"this follow-up is already {task.status}")
    if len(outcome) > 500:
        raise BadInput("outcome is at most 500 characters", field="outcome")
    if status is FollowUpStatus.DONE and not outcome.strip():
        raise BadInput("say what came of the follow-up", field="outcome")
    task.status = str(status)
    task.outcome = outcome.strip()


def now() -> datetime:
    return datetime.now(UTC)
