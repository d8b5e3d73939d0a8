"""A per-request loader of patients within the caller's scope (one query per batch)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api.patients.types import Patient
from auth.access_log import Action
from auth.guard import patient_scope
from domain.patients.models import Patient as PatientRow
from domain.patients.repository import PatientRepository


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
    return Patient(_row=row)
