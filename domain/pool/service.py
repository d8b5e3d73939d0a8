"""Interaction events, lead scores, qualification, stage history and rescoring jobs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.care import follow_ups
from domain.care.models import FollowUpTrigger
from domain.clock import not_in_future
from domain.errors import BadInput
from domain.patients.models import LifecycleStage, Patient
from domain.pool.models import (
    EventType,
    Job,
    JobStatus,
    ScoringRule,
    ScoringSettings,
    StageChange,
)
from domain.pool.repository import PoolRepository
from domain.pool.scoring import Explanation, Rules, ScoredEvent, rules_from_rows, score

QUALIFIABLE = {LifecycleStage.LEAD, LifecycleStage.NURTURING}
MAX_EVENTS_PER_CALL = 1000


@dataclass(frozen=True)
class NewEvent:
    client_event_id: str
    patient: Patient
    type: str
    occurred_at: datetime
    source: str = ""


@dataclass(frozen=True)
class Ingested:
    inserted: int
    duplicates: int
    patients: list[Patient]


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class PoolService:
    def __init__(self, session: AsyncSession, actor: str) -> None:
        self.session = session
        self.actor = actor
        self.repo = PoolRepository(session)

    async def rules(self) -> Rules:
        rows = await self.repo.scoring_rule_rows()
        settings = await self.repo.scoring_settings_row()
        return rules_from_rows([tuple(r) for r in rows], tuple(settings) if settings else None)

    async def record_events(self, events: Sequence[NewEvent]) -> Ingested:
        """Store events once each (by client id), then rescore the patients they touch."""
        if len(events) > MAX_EVENTS_PER_CALL:
            raise BadInput(f"at most {MAX_EVENTS_PER_CALL} events per call", field="events")
        for e in events:
            if e.type not in set(EventType):
                raise BadInput(f"unknown event type {e.type}", field="type")
            if not (0 < len(e.client_event_id) <= 100):
                raise BadInput("clientEventId must be 1-100 characters", field="clientEventId")
        ids = sorted({e.client_event_id for e in events})
        known = set(await self.repo.known_event_ids(ids))
        for e in events:  # all checked before any is written
            not_in_future(_utc(e.occurred_at), "occurredAt")
        rows, seen = [], set(known)
        for e in events:
            if e.client_event_id in seen:
                continue
            seen.add(e.client_event_id)
            occurred = _utc(e.occurred_at)
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "client_event_id": e.client_event_id,
                    "patient_id": e.patient.id,
                    "type": e.type,
                    "occurred_at": occurred,
                    "received_at": _now(),
                    "source": e.source[:64],
                }
            )
        if rows:
            await self.repo.insert_events(rows)
        touched = {e.patient.id: e.patient for e in events}
        rules = await self.rules()
        for patient in touched.values():
            await self.rescore(patient, rules)
        return Ingested(len(rows), len(events) - len(rows), list(touched.values()))

    async def explain(self, patient: Patient, rules: Rules | None = None) -> Explanation:
        rules = rules or await self.rules()
        rows = await self.repo.event_rows(patient.id)
        return score((ScoredEvent(*r) for r in rows), rules, _now())

    async def rescore(self, patient: Patient, rules: Rules) -> Explanation:
        result = await self.explain(patient, rules)
        patient.lead_score = result.score
        patient.last_interaction_at = result.last_event_at
        if result.score >= rules.threshold and patient.lifecycle_stage in QUALIFIABLE:
            await self.change_stage(
                patient, LifecycleStage.QUALIFIED, f"lead score {result.score} ≥ {rules.threshold}"
            )
            await self._call_task(patient)
        return result

    async def change_stage(self, patient: Patient, to: str, reason: str) -> None:
        to = str(LifecycleStage(to))
        if patient.lifecycle_stage == to:
            return
        self.session.add(
            StageChange(
                patient_id=patient.id,
                from_stage=patient.lifecycle_stage,
                to_stage=to,
                changed_by=self.actor,
                reason=reason[:200],
            )
        )
        patient.lifecycle_stage = to

    async def _call_task(self, patient: Patient) -> None:
        """A qualified lead becomes a call task for its branch, once (see follow-up rules)."""
        await follow_ups.from_rule(
            self.session,
            FollowUpTrigger.LEAD_QUALIFIED,
            patient,
            patient.id,
            _now(),
            patient.assigned_staff_id,
        )

    async def set_rules(
        self, rows: Sequence[tuple[str, int, int | None, int]], settings: tuple[int, int, int]
    ) -> Job:
        """Replace the scoring rules; returns the rescoring job to run in the background."""
        for event_type, _points, cap, period in rows:
            if event_type not in set(EventType):
                raise BadInput(f"unknown event type {event_type}", field="eventType")
            if (cap is not None and cap < 0) or period < 1:
                raise BadInput("cap must be ≥ 0 and capPeriodDays ≥ 1", field="cap")
        idle_days, _idle_points, threshold = settings
        if idle_days < 1 or threshold < 1:
            raise BadInput("idleDays and threshold must be positive", field="threshold")
        await self.repo.delete_scoring_rules()
        for event_type, points, cap, period in rows:
            self.session.add(
                ScoringRule(event_type=event_type, points=points, cap=cap, cap_period_days=period)
            )
        current = await self.repo.scoring_settings()
        if current is None:
            current = ScoringSettings()
            self.session.add(current)
        current.idle_days, current.idle_points, current.threshold = settings
        job = Job(kind="rescore", total=await self.repo.count_all_patients())
        self.session.add(job)
        await self.session.flush()
        return job


async def run_rescore(
    session: AsyncSession,
    job_id: uuid.UUID,
    actor: str,
    batch: int = 500,
    progress: Callable[[Job], None] = lambda _j: None,
    stop_after_batches: int | None = None,
) -> Job:
    """Rescore every patient of the bound tenant in batches, one transaction each; the job row
    keeps the cursor, so a run that stops resumes where it left off."""
    service = PoolService(session, actor)
    repo = PoolRepository(session)
    batches = 0
    while True:
        async with session.begin():
            # the lock serialises batches when two processes run the same job
            job = await repo.locked_job(job_id)
            if job is None or job.status != JobStatus.RUNNING:
                return job  # type: ignore[return-value]
            rules = await service.rules()
            patients = await repo.patients_after(job.cursor, batch)
            for patient in patients:
                await service.rescore(patient, rules)
            if patients:
                job.cursor = patients[-1].id
                job.done += len(patients)
            else:
                job.status = JobStatus.DONE
                job.finished_at = _now()
        progress(job)
        batches += 1
        if job.status == JobStatus.DONE or (
            stop_after_batches is not None and batches >= stop_after_batches
        ):
            return job
