"""All SQL of stated purposes: the gate's look-ups and the auditors' review."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.paging import Keyset, KeysetPage, keyset_rows
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.reasons.models import DEFAULT_WINDOW_MINUTES, StatedPurpose
from domain.tenants.models import Tenant
from tenancy.session import current_tenant


@dataclass(frozen=True)
class ReasonFilter:
    staff_id: uuid.UUID | None = None
    branch_id: uuid.UUID | None = None
    purpose: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class ReasonRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def window_minutes(self) -> int:
        """The bound tenant's window (`tenants` is no tenant-scoped table: filter by hand)."""
        stmt = select(Tenant.reason_window_minutes).where(Tenant.id == current_tenant(self.session))
        return int(await self.session.scalar(stmt) or DEFAULT_WINDOW_MINUTES)

    async def set_window_minutes(self, minutes: int) -> None:
        await self.session.execute(
            update(Tenant)
            .where(Tenant.id == current_tenant(self.session))
            .values(reason_window_minutes=minutes)
        )

    async def in_scope(
        self, scope: PatientScope, patient_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of `patient_ids` that `scope` covers: with the caller's care scope
        (`auth.guard.care_scope`), the ones assigned to them or seen by them, by the scope's
        one rule."""
        if not patient_ids or scope.is_empty:
            return set()
        stmt = select(Patient.id).where(Patient.id.in_(sorted(set(patient_ids))), scope.clause())
        return set((await self.session.scalars(stmt)).all())

    async def open_for(
        self, staff_id: uuid.UUID, patient_ids: Sequence[uuid.UUID], now: datetime
    ) -> dict[uuid.UUID, StatedPurpose]:
        """This staff member's purposes still open at `now`, per patient (the latest stated)."""
        if not patient_ids:
            return {}
        stmt = (
            select(StatedPurpose)
            .where(
                StatedPurpose.staff_id == staff_id,
                StatedPurpose.patient_id.in_(sorted(set(patient_ids))),
                StatedPurpose.expires_at > now,
            )
            .order_by(StatedPurpose.stated_at)
        )
        return {r.patient_id: r for r in (await self.session.scalars(stmt)).all()}

    async def purposes(
        self, stated_ids: Sequence[uuid.UUID], patient_id: uuid.UUID
    ) -> dict[uuid.UUID, str]:
        """The purpose of each of these statements made for this patient, by statement id."""
        if not stated_ids:
            return {}
        stmt = select(StatedPurpose.id, StatedPurpose.purpose).where(
            StatedPurpose.id.in_(sorted(set(stated_ids))),
            StatedPurpose.patient_id == patient_id,
        )
        return {sid: purpose for sid, purpose in await self.session.execute(stmt)}

    def add(self, row: StatedPurpose) -> None:
        self.session.add(row)

    async def get(self, stated_id: uuid.UUID) -> StatedPurpose | None:
        return await self.session.scalar(select(StatedPurpose).where(StatedPurpose.id == stated_id))

    def review(self, flt: ReasonFilter) -> Select[tuple[StatedPurpose]]:
        """The statement of the auditors' review (paged by `review_page`)."""
        stmt = select(StatedPurpose)
        if flt.staff_id is not None:
            stmt = stmt.where(StatedPurpose.staff_id == flt.staff_id)
        if flt.branch_id is not None:
            stmt = stmt.where(StatedPurpose.branch_id == flt.branch_id)
        if flt.purpose is not None:
            stmt = stmt.where(StatedPurpose.purpose == flt.purpose)
        if flt.since is not None:
            stmt = stmt.where(StatedPurpose.stated_at >= flt.since)
        if flt.until is not None:
            stmt = stmt.where(StatedPurpose.stated_at < flt.until)
        return stmt

    # --- pages (GraphQL) ---

    async def review_page(
        self, flt: ReasonFilter, limit: int, after: Keyset | None
    ) -> KeysetPage[StatedPurpose]:
        """A page of the auditors' `review`, by time stated."""
        stmt = self.review(flt)
        return await keyset_rows(
            self.session, stmt, StatedPurpose, StatedPurpose.stated_at, limit, after
        )
