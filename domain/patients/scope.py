"""Which patients a caller may see, as a value `auth/` builds and the repository turns into SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, or_, select, true

from domain.care.models import Visit, VisitStatus
from domain.patients.models import Patient


@dataclass(frozen=True)
class PatientScope:
    """Built only by `auth.guard`; domain code applies it and never widens it."""

    chain: bool = False
    branch_ids: frozenset[uuid.UUID] = frozenset()
    staff_id: uuid.UUID | None = None
    # A signed-in patient: their own record, nothing else.
    patient_id: uuid.UUID | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.chain or self.branch_ids or self.staff_id or self.patient_id)

    def admits(self, home_branch_id: uuid.UUID | None, assigned_staff_id: uuid.UUID | None) -> bool:
        """Whether a record not yet written, with this home branch and assignee, would fall in
        the scope: `clause()` for a record nobody has seen at a visit yet."""
        return (
            self.chain
            or home_branch_id in self.branch_ids
            or (self.staff_id is not None and assigned_staff_id == self.staff_id)
        )

    def clause(self) -> ColumnElement[bool]:
        if self.chain:
            return true()
        if self.patient_id is not None:
            return Patient.id == self.patient_id
        parts: list[ColumnElement[bool]] = []
        if self.branch_ids:
            parts.append(Patient.home_branch_id.in_(sorted(self.branch_ids)))
        if self.staff_id is not None:
            # "My patients": assigned to me, or seen by me (an arrived visit with me as doctor).
            parts.append(Patient.assigned_staff_id == self.staff_id)
            seen = select(Visit.patient_id).where(
                Visit.doctor_id == self.staff_id, Visit.status == VisitStatus.ARRIVED
            )
            parts.append(Patient.id.in_(seen))
        return or_(*parts) if parts else false()
