"""A per-request loader of patients within the caller's scope (one query per batch)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api.ids import parse_global_id
from api.patients.types import Patient
from auth.access_log import Action
from auth.guard import patient_scope
from domain.errors import NotFound
from domain.patients.models import Patient as PatientRow
from domain.patients.repository import PatientRepository
from domain.patients.scope import PatientScope


async def scoped_patient(info: Info, patient_id: uuid.UUID) -> Patient | None:
    """The patient if the caller may read them (else None); a returned one is logged."""
    ctx = info.context
    scope = patient_scope(await ctx.principal(), "read")

    def make() -> DataLoader[uuid.UUID, PatientRow | None]:
        async def load(ids: Sequence[uuid.UUID]) -> list[PatientRow | None]:
            found = await PatientRepository(ctx.session).get_many(scope, list(ids))
            return [found.get(i) for i in ids]

        return DataLoader(load_fn=load)

    row = await ctx.loader("scoped_patient", make).load(patient_id)
    if row is None:
        return None
    ctx.trail.returned(Action.READ, [row.id])
    return Patient.of(row, _ctx=ctx)


async def patient_in_scope(
    info: Info, scope: PatientScope, patient_id: strawberry.ID, field: str = "patientId"
) -> PatientRow:
    """The patient `patient_id` names if it lies in `scope` (a merged record's id names the
    record it was merged into); else NOT_FOUND on `field`, the same for another tenant's id as
    for a missing one."""
    row = await PatientRepository(info.context.session).follow(
        scope, parse_global_id(patient_id, "Patient", field)
    )
    if row is None:
        raise NotFound("no such patient", field=field)
    return row
