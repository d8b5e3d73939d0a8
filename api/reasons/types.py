"""GraphQL types of stated purposes (break the glass): what staff said, for auditors."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from api.ids import to_global_id
from api.rows import RowType
from api.tenants.loaders import branch_loader, staff_loader
from api.tenants.types import Branch, Staff
from auth.reasons import unseal_note
from domain.reasons import models as m
from domain.reasons.models import StatedPurpose as StatedRow

Purpose = strawberry.enum(
    m.Purpose,
    name="AccessPurpose",
    description="Why health fields outside your own care are needed: CARE (treating the "
    "patient, e.g. covering for a colleague), QUALITY_REVIEW, COMPLAINT, LEGAL, OTHER.",
)


@strawberry.input(description="Which stated purposes to review; every field narrows.")
class ReasonedAccessFilter:
    staff_id: strawberry.ID | None = strawberry.field(
        default=None, description="Stated by this staff member."
    )
    branch_id: strawberry.ID | None = strawberry.field(
        default=None, description="About patients of this home branch."
    )
    purpose: Purpose | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="With this purpose."
    )
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Stated at or after this moment."
    )
    to: datetime | None = strawberry.field(default=None, description="Stated strictly before.")


@strawberry.type(
    description="A purpose a staff member stated to open one patient's health fields for a "
    "while (break the glass), and an auditor's flag on it. The note is stored sealed."
)
class ReasonedAccess(RowType):
    _row: strawberry.Private[StatedRow]

    @strawberry.field(description="Opaque id (for flagReasonedAccess).")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("ReasonedAccess", self._row.id))

    @strawberry.field(description="The patient's id (no patient data).")
    def patient_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Patient", self._row.patient_id))

    @strawberry.field(description="Who stated it.")
    async def staff(self, info: Info) -> Staff | None:
        loader = info.context.loader("staff", lambda: staff_loader(info.context.session))
        row = await loader.load(self._row.staff_id)
        return None if row is None else Staff.of(row)

    @strawberry.field(description="The patient's home branch when it was stated.")
    async def branch(self, info: Info) -> Branch | None:
        if self._row.branch_id is None:
            return None
        loader = info.context.loader("branch", lambda: branch_loader(info.context.session))
        row = await loader.load(self._row.branch_id)
        return None if row is None else Branch.of(row)

    @strawberry.field(description="The purpose.")
    def purpose(self) -> Purpose:  # type: ignore[valid-type]
        return m.Purpose(self._row.purpose)

    @strawberry.field(description="What the staff member wrote.")
    async def note(self, info: Info) -> str | None:
        return unseal_note(await info.context.cipher(), self._row, "note")

    stated_at: datetime = strawberry.field(description="When it was stated.")
    expires_at: datetime = strawberry.field(
        description="Until when it opens the patient's health fields."
    )

    @strawberry.field(description="Whether an auditor flagged it for follow-up.")
    def flagged(self) -> bool:
        return self._row.flagged_at is not None

    flagged_at: datetime | None = strawberry.field(description="When it was flagged.")

    @strawberry.field(description="The auditor's note on the flag.")
    async def flag_note(self, info: Info) -> str | None:
        if self._row.flag_note_ct is None:
            return None
        return unseal_note(await info.context.cipher(), self._row, "flag_note")
