"""All SQL of the patient's door: the mini-program app, WeChat identities, and what a signed-in
patient reads of their own record (always through a scope `auth/` built for them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import Order, Visit
from domain.door.models import MiniProgramApp, PatientIdentity
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.pool.models import FollowUp, FollowUpStatus
from domain.referrals.models import Referral, Reward
from domain.tenants.models import Branch, Tenant
from tenancy.session import current_tenant


class DoorRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def tenant_id(self, slug: str) -> uuid.UUID | None:
        return await self.session.scalar(select(Tenant.id).where(Tenant.slug == slug))

    async def app(self) -> MiniProgramApp | None:
        return await self.session.scalar(select(MiniProgramApp))

    async def branch_exists(self, branch_id: uuid.UUID) -> bool:
        return (
            await self.session.scalar(select(Branch.id).where(Branch.id == branch_id)) is not None
        )

    async def identity(self, kind: str, digest: bytes) -> PatientIdentity | None:
        return await self.session.scalar(
            select(PatientIdentity).where(
                PatientIdentity.kind == kind, PatientIdentity.digest == digest
            )
        )

    async def identities_of(self, patient: Patient) -> Sequence[PatientIdentity]:
        stmt = select(PatientIdentity).where(PatientIdentity.patient_id == patient.id)
        return (await self.session.scalars(stmt)).all()

    async def forget_identities(self, patient_id: uuid.UUID) -> None:
        """The patient's WeChat identities, gone (erasure: the openid and unionid are theirs)."""
        await self.session.execute(
            delete(PatientIdentity)
            .where(PatientIdentity.patient_id == patient_id)
            .execution_options(synchronize_session=False)
        )

    async def patient(self, patient_id: uuid.UUID) -> Patient | None:
        return await self.session.scalar(select(Patient).where(Patient.id == patient_id))

    async def live_by_phone(self, digest: bytes) -> list[Patient]:
        stmt = (
            select(Patient)
            .where(
                Patient.phone_bidx == digest,
                Patient.erased_at.is_(None),
                Patient.merged_into_id.is_(None),
            )
            .order_by(Patient.created_at, Patient.id)
        )
        return list(await self.session.scalars(stmt))

    # --- a signed-in patient's own record (scope: PatientScope(patient_id=…)) ---

    async def own(self, scope: PatientScope) -> Patient | None:
        stmt = select(Patient).where(
            scope.clause(), Patient.erased_at.is_(None), Patient.merged_into_id.is_(None)
        )
        return await self.session.scalar(stmt)

    async def visits(self, patient: Patient) -> Sequence[Visit]:
        stmt = (
            select(Visit)
            .where(Visit.patient_id == patient.id)
            .order_by(Visit.scheduled_at.desc(), Visit.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def visit(self, patient: Patient, visit_id: uuid.UUID) -> Visit | None:
        stmt = select(Visit).where(Visit.id == visit_id, Visit.patient_id == patient.id)
        return await self.session.scalar(stmt)

    async def orders(self, patient: Patient) -> Sequence[Order]:
        stmt = (
            select(Order)
            .where(Order.patient_id == patient.id)
            .order_by(Order.created_at.desc(), Order.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def follow_ups_due(self, patient: Patient, until: datetime) -> Sequence[FollowUp]:
        stmt = (
            select(FollowUp)
            .where(
                FollowUp.patient_id == patient.id,
                FollowUp.status == FollowUpStatus.OPEN,
                FollowUp.due_at <= until,
            )
            .order_by(FollowUp.due_at, FollowUp.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def branches(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, Branch]:
        if not ids:
            return {}
        rows = await self.session.scalars(select(Branch).where(Branch.id.in_(sorted(ids))))
        return {b.id: b for b in rows}

    async def friends_joined(self, patient: Patient) -> int:
        stmt = select(func.count()).select_from(Referral).where(Referral.referrer_id == patient.id)
        return int(await self.session.scalar(stmt) or 0)

    async def rewards(self, patient: Patient) -> Sequence[Reward]:
        stmt = (
            select(Reward)
            .where(Reward.referrer_id == patient.id)
            .order_by(Reward.created_at, Reward.id)
        )
        return (await self.session.scalars(stmt)).all()

    async def tenant_name(self) -> str:
        # The tenant registry is not tenant-scoped: name the bound tenant.
        tenant_id = current_tenant(self.session)
        return str(await self.session.scalar(select(Tenant.name).where(Tenant.id == tenant_id)))

    async def shows_staff_names(self) -> bool:
        return bool(await self.session.scalar(select(MiniProgramApp.show_staff_names)))
