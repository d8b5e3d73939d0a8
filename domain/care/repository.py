"""The reads behind care's GraphQL fields (visits, orders, follow-ups): each row joined to its
patient and kept to the caller's `PatientScope`, list statements with their filters (paged by
the caller), and an order page's lines and refunds."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import Order, OrderLine, Refund, Visit
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.pool.models import FollowUp


@dataclass(frozen=True)
class VisitCriteria:
    patient_id: uuid.UUID | None = None
    branch_id: uuid.UUID | None = None
    doctor_id: uuid.UUID | None = None
    statuses: Sequence[str] = ()
    since: datetime | None = None  # booked at or after
    until: datetime | None = None  # booked before


@dataclass(frozen=True)
class OrderCriteria:
    patient_id: uuid.UUID | None = None
    branch_id: uuid.UUID | None = None
    statuses: Sequence[str] = ()


@dataclass(frozen=True)
class FollowUpCriteria:
    statuses: Sequence[str]
    assignee_id: uuid.UUID | None = None
    due_before: Sequence[datetime] = ()  # each bound applies
    kinds: Sequence[str] = ()
    patient_id: uuid.UUID | None = None


class CareRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _listed(model: Any, scope: PatientScope) -> Select[Any]:
        return select(model).join(Patient, Patient.id == model.patient_id).where(scope.clause())

    async def owned(
        self, model: Any, row_id: uuid.UUID, scope: PatientScope
    ) -> tuple[Any, Patient] | None:
        """A visit, order or follow-up with its patient, if the patient is within `scope`."""
        row = (
            await self.session.execute(
                select(model, Patient)
                .join(Patient, Patient.id == model.patient_id)
                .where(model.id == row_id, scope.clause())
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def one(self, model: Any, row_id: uuid.UUID, scope: PatientScope) -> Any:
        """One visit, order or follow-up by id, under the same scope as its list."""
        return await self.session.scalar(self._listed(model, scope).where(model.id == row_id))

    def visits(self, scope: PatientScope, c: VisitCriteria) -> Select[Any]:
        """The visits `c` asks for within `scope`, as a statement to page."""
        stmt = self._listed(Visit, scope)
        if c.patient_id is not None:
            stmt = stmt.where(Visit.patient_id == c.patient_id)
        if c.branch_id is not None:
            stmt = stmt.where(Visit.branch_id == c.branch_id)
        if c.doctor_id is not None:
            stmt = stmt.where(Visit.doctor_id == c.doctor_id)
        if c.statuses:
            stmt = stmt.where(Visit.status.in_(list(c.statuses)))
        if c.since is not None:
            stmt = stmt.where(Visit.scheduled_at >= c.since)
        if c.until is not None:
            stmt = stmt.where(Visit.scheduled_at < c.until)
        return stmt

    def orders(self, scope: PatientScope, c: OrderCriteria) -> Select[Any]:
        """The orders `c` asks for within `scope`, as a statement to page."""
        stmt = self._listed(Order, scope)
        if c.patient_id is not None:
            stmt = stmt.where(Order.patient_id == c.patient_id)
        if c.branch_id is not None:
            stmt = stmt.where(Order.branch_id == c.branch_id)
        if c.statuses:
            stmt = stmt.where(Order.status.in_(list(c.statuses)))
        return stmt

    def follow_ups(self, scope: PatientScope, c: FollowUpCriteria) -> Select[Any]:
        """The follow-ups `c` asks for within `scope`, as a statement to page."""
        stmt = self._listed(FollowUp, scope).where(FollowUp.status.in_(list(c.statuses)))
        if c.assignee_id is not None:
            stmt = stmt.where(FollowUp.assignee_id == c.assignee_id)
        for bound in c.due_before:
            stmt = stmt.where(FollowUp.due_at < bound)
        if c.kinds:
            stmt = stmt.where(FollowUp.kind.in_(list(c.kinds)))
        if c.patient_id is not None:
            stmt = stmt.where(FollowUp.patient_id == c.patient_id)
        return stmt

    async def order_details(
        self, order_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, list[OrderLine]], dict[uuid.UUID, list[Refund]]]:
        """Lines (by line number) and refunds (by time) of the orders: two queries."""
        lines: dict[uuid.UUID, list[OrderLine]] = {i: [] for i in order_ids}
        refunds: dict[uuid.UUID, list[Refund]] = {i: [] for i in order_ids}
        if not order_ids:
            return lines, refunds
        ids = list(order_ids)
        for line in await self.session.scalars(
            select(OrderLine).where(OrderLine.order_id.in_(ids)).order_by(OrderLine.line_no)
        ):
            lines[line.order_id].append(line)
        for refund in await self.session.scalars(
            select(Refund).where(Refund.order_id.in_(ids)).order_by(Refund.refunded_at)
        ):
            refunds[refund.order_id].append(refund)
        return lines, refunds
