"""All SQL of the surveys feature: templates and rules, the sender's outbox (queueing due
visits, claiming and sending links), answers through a link, the reads behind the API's
fields and the satisfaction figures. Scoped reads take the `PatientScope` `auth/` built; the
session adds the tenant."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns.audience import ADDRESS
from domain.campaigns.models import CampaignChannel
from domain.care.models import Visit, VisitStatus
from domain.consent.models import ContactChannel, Purpose
from domain.consent.repository import reachable
from domain.door.models import IdentityKind, PatientIdentity
from domain.paging import Keyset, KeysetPage, keyset_rows
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.surveys.models import (
    SurveyAnswer,
    SurveyDelivery,
    SurveyDeliveryStatus,
    SurveyRule,
    SurveyTemplate,
    SurveyTemplateVersion,
    VisitKind,
)

MINI_PROGRAM = "mini_program"  # the channel with no provider: the patient finds the link there
S = SurveyDeliveryStatus
# The links of a period: delivered, answered or not (domain.surveys.figures).
SENT = (SurveyDeliveryStatus.DELIVERED, SurveyDeliveryStatus.ANSWERED)


def _sent_version() -> ColumnElement[bool]:
    """A delivery's template version: the one it was sent with, not the template's current."""
    return (SurveyTemplateVersion.template_id == SurveyDelivery.template_id) & (
        SurveyTemplateVersion.version == SurveyDelivery.template_version
    )


def _kind(rule: SurveyRule):  # type: ignore[no-untyped-def]
    if rule.visit_kind == VisitKind.FIRST:
        return Visit.is_first.is_(True)
    if rule.visit_kind == VisitKind.RETURN:
        return Visit.is_first.is_(False)
    return None


def _addressed(channel: str):  # type: ignore[no-untyped-def]
    """The patient can be reached on `channel`: a phone, a WeCom contact, or (mini-program)
    a signed-in WeChat identity of the brand's mini-program."""
    if channel == MINI_PROGRAM:
        return exists(
            select(PatientIdentity.patient_id).where(
                PatientIdentity.patient_id == Patient.id,
                PatientIdentity.kind == str(IdentityKind.OPENID),
            )
        )
    return ADDRESS[CampaignChannel(channel)].is_not(None)


def _due(now: datetime, stale_after: timedelta):  # type: ignore[no-untyped-def]
    pending = (SurveyDelivery.status == S.PENDING) & (SurveyDelivery.next_attempt_at <= now)
    stale = (SurveyDelivery.status == S.SENDING) & (SurveyDelivery.claimed_at <= now - stale_after)
    return pending | stale


class SurveyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- templates and rules ---

    @staticmethod
    def templates() -> Select[tuple[SurveyTemplate]]:
        """The bound tenant's templates, as a statement to page."""
        return select(SurveyTemplate)

    @staticmethod
    def rules() -> Select[tuple[SurveyRule]]:
        """The bound tenant's rules, as a statement to page."""
        return select(SurveyRule)

    async def template(self, template_id: uuid.UUID) -> SurveyTemplate | None:
        return await self.session.scalar(
            select(SurveyTemplate).where(SurveyTemplate.id == template_id)
        )

    async def version(self, template_id: uuid.UUID, number: int) -> SurveyTemplateVersion | None:
        return await self.session.scalar(
            select(SurveyTemplateVersion).where(
                SurveyTemplateVersion.template_id == template_id,
                SurveyTemplateVersion.version == number,
            )
        )

    async def versions_of(
        self, template_ids: Collection[uuid.UUID]
    ) -> Sequence[SurveyTemplateVersion]:
        """Every version of the templates (the caller keeps the ones it wants)."""
        stmt = select(SurveyTemplateVersion).where(
            SurveyTemplateVersion.template_id.in_(template_ids)
        )
        return (await self.session.scalars(stmt)).all()

    async def rule(self, rule_id: uuid.UUID) -> SurveyRule | None:
        return await self.session.scalar(select(SurveyRule).where(SurveyRule.id == rule_id))

    async def active_rules(self) -> Sequence[SurveyRule]:
        stmt = select(SurveyRule).where(SurveyRule.active.is_(True))
        return (await self.session.scalars(stmt)).all()

    # --- the sender's outbox ---

    async def due_visits(
        self, rule: SurveyRule, now: datetime, channels: Sequence[str]
    ) -> Sequence[Row[Any]]:
        """The rule's arrived visits (of its kind, at its branch, arrived since its start)
        whose delay has passed and that have no delivery of the rule yet, oldest first; each
        row is the visit, then for each of `channels` whether its patient has marketing consent
        and an address on it."""
        done = select(SurveyDelivery.visit_id).where(SurveyDelivery.rule_id == rule.id)
        where = [
            Visit.status == VisitStatus.ARRIVED,
            Visit.arrived_at >= rule.starts_at,
            Visit.arrived_at <= now - timedelta(days=rule.delay_days),
            Visit.id.not_in(done),
            Patient.erased_at.is_(None),
            Patient.merged_into_id.is_(None),
        ]
        kind = _kind(rule)
        if kind is not None:
            where.append(kind)
        if rule.branch_id is not None:
            where.append(Visit.branch_id == rule.branch_id)
        reach = [
            and_(reachable(Purpose.MARKETING, [ContactChannel(c)]), _addressed(c)).label(c)
            for c in channels
        ]
        stmt = (
            select(Visit, *reach)
            .join(Patient, Patient.id == Visit.patient_id)
            .where(*where)
            .order_by(Visit.arrived_at, Visit.id)
        )
        return (await self.session.execute(stmt)).all()

    async def claimable(
        self, now: datetime, channel: str, stale_after: timedelta, limit: int
    ) -> Sequence[Row[tuple[uuid.UUID, uuid.UUID]]]:
        """(delivery id, patient id) of the links due on `channel` (pending and due, or left
        sending longer than `stale_after`), locked; rows another sender holds are skipped."""
        stmt = (
            select(SurveyDelivery.id, SurveyDelivery.patient_id)
            .where(_due(now, stale_after), SurveyDelivery.channel == str(channel))
            .order_by(SurveyDelivery.next_attempt_at, SurveyDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.execute(stmt)).all()

    async def mark_sending(self, delivery_ids: Sequence[uuid.UUID], now: datetime) -> None:
        """The claimed links: sending from `now`, one more attempt."""
        await self.session.execute(
            update(SurveyDelivery)
            .where(SurveyDelivery.id.in_(delivery_ids))
            .values(status=S.SENDING, claimed_at=now, attempts=SurveyDelivery.attempts + 1)
            .execution_options(synchronize_session=False)
        )

    async def sending(
        self, delivery_ids: Sequence[uuid.UUID]
    ) -> Sequence[Row[tuple[SurveyDelivery, SurveyRule, SurveyTemplateVersion]]]:
        """The claimed links still sending, with their rule and the version they were sent
        with, by id."""
        stmt = (
            select(SurveyDelivery, SurveyRule, SurveyTemplateVersion)
            .join(SurveyRule, SurveyRule.id == SurveyDelivery.rule_id)
            .join(SurveyTemplateVersion, _sent_version())
            .where(SurveyDelivery.id.in_(delivery_ids), SurveyDelivery.status == S.SENDING)
            .order_by(SurveyDelivery.id)
        )
        return (await self.session.execute(stmt)).all()

    async def open_for(
        self, patient: Patient, now: datetime
    ) -> Sequence[Row[tuple[SurveyDelivery, SurveyTemplateVersion]]]:
        """A patient's delivered, unanswered, unexpired surveys, with their version, newest
        first (at most 20)."""
        stmt = (
            select(SurveyDelivery, SurveyTemplateVersion)
            .join(SurveyTemplateVersion, _sent_version())
            .where(
                SurveyDelivery.patient_id == patient.id,
                SurveyDelivery.status == S.DELIVERED,
                SurveyDelivery.expires_at > now,
            )
            .order_by(SurveyDelivery.sent_at.desc())
            .limit(20)
        )
        return (await self.session.execute(stmt)).all()

    # --- answers ---

    async def link(
        self, delivery_id: uuid.UUID, *, lock: bool
    ) -> Row[tuple[SurveyDelivery, SurveyTemplateVersion, Patient]] | None:
        """The delivery a link names, with its version and (unerased) patient; the delivery
        row locked when `lock` (it is about to be answered)."""
        stmt = (
            select(SurveyDelivery, SurveyTemplateVersion, Patient)
            .join(SurveyTemplateVersion, _sent_version())
            .join(Patient, Patient.id == SurveyDelivery.patient_id)
            .where(SurveyDelivery.id == delivery_id, Patient.erased_at.is_(None))
        )
        if lock:
            stmt = stmt.with_for_update(of=SurveyDelivery)
        return (await self.session.execute(stmt)).first()

    @staticmethod
    def answers(
        scope: PatientScope, branch_id: uuid.UUID | None = None
    ) -> Select[tuple[SurveyAnswer]]:
        """Answers (with their delivery) whose patient is in `scope`, at `branch_id`'s visits
        if given, as a statement to page."""
        stmt = (
            select(SurveyAnswer)
            .join(SurveyDelivery, SurveyDelivery.id == SurveyAnswer.delivery_id)
            .join(Patient, Patient.id == SurveyAnswer.patient_id)
            .where(scope.clause())
        )
        if branch_id is not None:
            stmt = stmt.where(SurveyDelivery.branch_id == branch_id)
        return stmt

    async def deliveries(self, ids: Sequence[uuid.UUID]) -> Sequence[SurveyDelivery]:
        stmt = select(SurveyDelivery).where(SurveyDelivery.id.in_(ids))
        return (await self.session.scalars(stmt)).all()

    async def patients(self, ids: Collection[uuid.UUID]) -> Sequence[Patient]:
        stmt = select(Patient).where(Patient.id.in_(ids))
        return (await self.session.scalars(stmt)).all()

    async def own(self, scope: PatientScope) -> Patient | None:
        """The signed-in patient's own record."""
        return await self.session.scalar(select(Patient).where(scope.clause()))

    # --- satisfaction figures ---

    async def satisfaction(
        self,
        scope: PatientScope,
        since: datetime,
        until: datetime,
        branch_id: uuid.UUID | None = None,
    ) -> Sequence[Row[Any]]:
        """Per visit branch and doctor: links sent in [since, until), answered, rating sum and
        count, NPS answers, promoters (9-10) and detractors (0-6), within `scope` (and
        `branch_id`'s visits if given)."""
        live: list[ColumnElement[bool]] = [
            scope.clause(),
            SurveyDelivery.status.in_([str(s) for s in SENT]),
            SurveyDelivery.sent_at >= since,
            SurveyDelivery.sent_at < until,
        ]
        if branch_id is not None:
            live.append(SurveyDelivery.branch_id == branch_id)
        stmt = (
            select(
                SurveyDelivery.branch_id,
                SurveyDelivery.doctor_id,
                func.count(),
                func.count(SurveyAnswer.delivery_id),
                func.coalesce(func.sum(SurveyAnswer.rating_sum), 0),
                func.coalesce(func.sum(SurveyAnswer.rating_count), 0),
                func.count(SurveyAnswer.nps),
                func.count().filter(SurveyAnswer.nps >= 9),
                func.count().filter(SurveyAnswer.nps <= 6),
            )
            .join(Patient, Patient.id == SurveyDelivery.patient_id)
            .outerjoin(SurveyAnswer, SurveyAnswer.delivery_id == SurveyDelivery.id)
            .where(*live)
            .group_by(SurveyDelivery.branch_id, SurveyDelivery.doctor_id)
        )
        return (await self.session.execute(stmt)).all()

    # --- pages (GraphQL) ---

    async def template_page(self, limit: int, after: Keyset | None) -> KeysetPage[SurveyTemplate]:
        """A page of `templates`, by creation time."""
        stmt = self.templates()
        return await keyset_rows(
            self.session, stmt, SurveyTemplate, SurveyTemplate.created_at, limit, after
        )

    async def rule_page(self, limit: int, after: Keyset | None) -> KeysetPage[SurveyRule]:
        """A page of `rules`, by creation time."""
        stmt = self.rules()
        return await keyset_rows(
            self.session, stmt, SurveyRule, SurveyRule.created_at, limit, after
        )

    async def answer_page(
        self, scope: PatientScope, branch_id: uuid.UUID | None, limit: int, after: Keyset | None
    ) -> KeysetPage[SurveyAnswer]:
        """A page of `answers` within `scope`, by answer time."""
        stmt = self.answers(scope, branch_id)
        return await keyset_rows(
            self.session, stmt, SurveyAnswer, SurveyAnswer.answered_at, limit, after
        )
