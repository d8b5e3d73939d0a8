"""All SQL over patients. Every query takes the caller's scope; the session adds the tenant."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.paging import Keyset
from domain.patients.models import ChannelTouch, Patient
from domain.patients.scope import PatientScope

# Rows per UPDATE when a leaver's patients are handed on (see `PatientRepository.reassign`).
REASSIGN_BATCH = 1000


@dataclass(frozen=True)
class PatientFilter:
    phone_bidx: bytes | None = None
    branch_ids: frozenset[uuid.UUID] = frozenset()
    stages: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    include_erased: bool = False
    extra: Sequence[object] = field(default_factory=tuple)


class PatientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _where(self, scope: PatientScope, flt: PatientFilter) -> list[object]:
        conds: list[object] = [scope.clause()]
        if flt.phone_bidx is not None:
            conds.append(Patient.phone_bidx == flt.phone_bidx)
        if flt.branch_ids:
            conds.append(Patient.home_branch_id.in_(sorted(flt.branch_ids)))
        if flt.stages:
            conds.append(Patient.lifecycle_stage.in_(sorted(flt.stages)))
        if flt.tiers:
            conds.append(Patient.pool_tier.in_(sorted(flt.tiers)))
        if flt.channels:
            conds.append(Patient.source_channel.in_(sorted(flt.channels)))
        if not flt.include_erased:
            conds.append(Patient.erased_at.is_(None))
            conds.append(Patient.merged_into_id.is_(None))
        conds.extend(flt.extra)
        return conds

    async def get(self, scope: PatientScope, patient_id: uuid.UUID) -> Patient | None:
        stmt = select(Patient).where(Patient.id == patient_id, scope.clause())
        return await self.session.scalar(stmt)

    async def holds(self, scope: PatientScope, patient_id: uuid.UUID) -> bool:
        """Whether `scope` covers the record as it now stands (pending changes are flushed
        first), by the scope's one rule, "seen by me" included."""
        await self.session.flush()
        stmt = select(Patient.id).where(Patient.id == patient_id, scope.clause())
        return await self.session.scalar(stmt) is not None

    async def follow(self, scope: PatientScope, patient_id: uuid.UUID) -> Patient | None:
        """The record `patient_id` names or, when it was merged, the record it was merged into
        (a merge points every retired record straight at the kept one), each within `scope`."""
        row = await self.get(scope, patient_id)
        if row is not None and row.merged_into_id is not None:
            return await self.get(scope, row.merged_into_id)
        return row

    async def follow_many(
        self, scope: PatientScope, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Patient]:
        """`follow` for many ids at once: {id as given: record acted on}."""
        found = await self.get_many(scope, ids)
        kept = await self.get_many(
            scope, [p.merged_into_id for p in found.values() if p.merged_into_id is not None]
        )
        out: dict[uuid.UUID, Patient] = {}
        for pid, row in found.items():
            target = row if row.merged_into_id is None else kept.get(row.merged_into_id)
            if target is not None:
                out[pid] = target
        return out

    async def get_many(
        self, scope: PatientScope, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Patient]:
        if not ids:
            return {}
        stmt = select(Patient).where(Patient.id.in_(sorted(set(ids))), scope.clause())
        return {p.id: p for p in (await self.session.scalars(stmt)).all()}

    def _page_stmt(
        self, scope: PatientScope, flt: PatientFilter, limit: int, after: Keyset | None
    ) -> Select[tuple[Patient]]:
        stmt = select(Patient).where(*self._where(scope, flt))
        if after is not None:
            # A row comparison, which an index on (tenant_id, created_at, id) serves as one
            # range: a page deep in the pool costs what the first does (the OR form of the same
            # predicate made PostgreSQL scan from the start, 35× slower at 100,000 patients).
            stmt = stmt.where(tuple_(Patient.created_at, Patient.id) < tuple_(after.at, after.id))
        return stmt.order_by(Patient.created_at.desc(), Patient.id.desc()).limit(limit)

    async def page(
        self, scope: PatientScope, flt: PatientFilter, limit: int, after: Keyset | None
    ) -> list[Patient]:
        return list((await self.session.scalars(self._page_stmt(scope, flt, limit, after))).all())

    async def count(self, scope: PatientScope, flt: PatientFilter) -> int:
        stmt = select(func.count()).select_from(Patient).where(*self._where(scope, flt))
        return int(await self.session.scalar(stmt) or 0)

    async def ids_after(
        self, scope: PatientScope, flt: PatientFilter, after: uuid.UUID | None, size: int
    ) -> list[uuid.UUID]:
        """Ids of the patients `page` would list, in id order from `after` (jobs that resume
        by id, such as exports)."""
        stmt = select(Patient.id).where(*self._where(scope, flt)).order_by(Patient.id).limit(size)
        if after is not None:
            stmt = stmt.where(Patient.id > after)
        return list((await self.session.scalars(stmt)).all())

    async def find_by_identifiers(
        self, digests: Mapping[str, Collection[bytes]], scope: PatientScope | None = None
    ) -> list[Patient]:
        """Live records (neither erased nor merged: a retired record is never matched again)
        holding any of these identifiers ({"phone": [blind index, …], …}), oldest first: one
        person's records across channels, or a whole import batch's matches in one statement.
        Across the whole tenant unless `scope` narrows it."""
        wanted = [
            getattr(Patient, f"{name}_bidx").in_(sorted(set(values)))
            for name, values in sorted(digests.items())
            if values
        ]
        if not wanted:
            return []
        stmt = select(Patient).where(
            or_(*wanted), Patient.erased_at.is_(None), Patient.merged_into_id.is_(None)
        )
        if scope is not None:
            stmt = stmt.where(scope.clause())
        return list(
            (await self.session.scalars(stmt.order_by(Patient.created_at, Patient.id))).all()
        )

    def add_touch(self, patient: Patient, channel: str, via: str) -> None:
        self.session.add(ChannelTouch(patient_id=patient.id, channel=channel[:64], via=via))

    async def touches(
        self, patient_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[ChannelTouch]]:
        """Each patient's channel history, oldest first."""
        out: dict[uuid.UUID, list[ChannelTouch]] = {pid: [] for pid in patient_ids}
        if not patient_ids:
            return out
        stmt = (
            select(ChannelTouch)
            .where(ChannelTouch.patient_id.in_(sorted(set(patient_ids))))
            .order_by(ChannelTouch.occurred_at, ChannelTouch.id)
        )
        for row in (await self.session.scalars(stmt)).all():
            out[row.patient_id].append(row)
        return out

    async def referral_codes_taken(self, codes: Sequence[str]) -> set[str]:
        stmt = select(Patient.referral_code).where(Patient.referral_code.in_(sorted(set(codes))))
        return set(await self.session.scalars(stmt))

    async def referral_code_taken(self, code: str) -> bool:
        stmt = select(func.count()).select_from(Patient).where(Patient.referral_code == code)
        return bool(await self.session.scalar(stmt))

    async def count_all(self) -> int:
        """Every patient of the bound tenant, erased and merged included (a job's progress)."""
        return int(await self.session.scalar(select(func.count()).select_from(Patient)) or 0)

    async def batch(self, after: uuid.UUID | None, size: int) -> list[Patient]:
        """Patients in id order, for background jobs (re-encryption) that resume by id."""
        stmt = select(Patient).order_by(Patient.id).limit(size)
        if after is not None:
            stmt = stmt.where(Patient.id > after)
        return list((await self.session.scalars(stmt)).all())

    async def reassign(
        self,
        scope: PatientScope,
        from_staff: uuid.UUID,
        to_staff: uuid.UUID,
        branch_id: uuid.UUID | None,
    ) -> list[uuid.UUID]:
        """Hand every patient assigned to one staff member (within `scope`, optionally one
        branch) to another, in the caller's one transaction; returns the ids moved (for the
        access log). The rows move in batches of `REASSIGN_BATCH` ids so that each statement
        stays well inside the statement timeout however many patients a leaver had; the
        transaction still makes it all or nothing."""
        conds = [scope.clause(), Patient.assigned_staff_id == from_staff]
        if branch_id is not None:
            conds.append(Patient.home_branch_id == branch_id)
        ids = sorted(await self.session.scalars(select(Patient.id).where(*conds)))
        moved: list[uuid.UUID] = []
        for start in range(0, len(ids), REASSIGN_BATCH):
            chunk = ids[start : start + REASSIGN_BATCH]
            moved.extend(
                await self.session.scalars(
                    update(Patient)
                    .where(Patient.id.in_(chunk), *conds)
                    .values(assigned_staff_id=to_staff)
                    .returning(Patient.id)
                    .execution_options(synchronize_session=False)
                )
            )
        return sorted(moved)
