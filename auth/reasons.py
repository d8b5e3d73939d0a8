"""The care/reason gate on health fields (break the glass), on top of Casbin.

Casbin alone decides who may read health fields at all (`fields:health`). For a caller it
allows, this module adds: a patient in the caller's own care (assigned to them, or seen by
them at an arrived visit, the "my patients" rule of `PatientScope`) opens freely; any other
patient in their scope opens only while a purpose they stated for that patient is open
(`statePurpose`), and each such read carries the purpose in its access-log entry.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from auth.access_log import Action, Outcome
from auth.guard import care_scope, staff_care_scope
from auth.principal import Principal
from auth.trail import AccessTrail
from domain.errors import BadInput, ReasonRequired
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.reasons.models import MAX_NOTE, TABLE, Purpose, StatedPurpose
from domain.reasons.repository import ReasonRepository
from tenancy.keyring import FieldCipher

REASON_REQUIRED = "reason required"
# How an access-log entry names the statement behind it (`reason`), written and read only here.
_REF = re.compile(r"StatedPurpose:([0-9a-f-]{36})")


def stated_ref(stated_id: uuid.UUID) -> str:
    return f"StatedPurpose:{stated_id}"


def stated_id_in(reason: str) -> uuid.UUID | None:
    """The statement an entry's `reason` names (`stated_ref`), if any."""
    found = _REF.search(reason)
    return uuid.UUID(found.group(1)) if found else None


@dataclass(frozen=True)
class HealthGrant:
    """Why health fields of one patient open to the caller, or that they do not."""

    in_care: bool = False
    purpose: str | None = None
    stated_id: uuid.UUID | None = None

    @property
    def opens(self) -> bool:
        return self.in_care or self.purpose is not None

    @property
    def log_reason(self) -> str:
        if self.purpose is None or self.stated_id is None:
            return ""
        return f"purpose {self.purpose} {stated_ref(self.stated_id)}"


IN_CARE = HealthGrant(in_care=True)


def health_conditions_scope(principal: Principal) -> PatientScope:
    """Where a condition on health data is evaluated for the caller (a health tag in a
    segment's filter or an automatic tag's rule, an automatic tag of a health group): their
    own care only. A stated purpose opens one record to read, not a population to search, so
    it does not widen this; an HQ admin's health segment counts the patients in their care."""
    return care_scope(principal)


def in_own_care_at_once(principal: Principal, patient: Patient) -> bool:
    """Assigned to the caller: known from the row, with no query. `grants` asks it first; a
    hot path (a page of patients) may ask it alone to skip the gate's look-up altogether."""
    return principal.kind == "user" and patient.assigned_staff_id == principal.id


async def _look_up(
    session: AsyncSession,
    care: PatientScope,
    staff_id: uuid.UUID,
    patient_ids: Sequence[uuid.UUID],
    now: datetime | None,
) -> dict[uuid.UUID, HealthGrant]:
    """The gate's look-up: IN_CARE for those `care` covers (seen at an arrived visit, or
    assigned), else the purpose `staff_id` stated that is still open, else closed."""
    repo = ReasonRepository(session)
    seen = await repo.in_scope(care, patient_ids)
    open_ = await repo.open_for(
        staff_id, [p for p in patient_ids if p not in seen], now or datetime.now(UTC)
    )
    out: dict[uuid.UUID, HealthGrant] = {}
    for pid in patient_ids:
        stated = open_.get(pid)
        if pid in seen:
            out[pid] = IN_CARE
        elif stated is not None:
            out[pid] = HealthGrant(purpose=stated.purpose, stated_id=stated.id)
        else:
            out[pid] = HealthGrant()
    return out


async def grants(
    session: AsyncSession,
    principal: Principal,
    patients: Sequence[Patient],
    now: datetime | None = None,
) -> dict[uuid.UUID, HealthGrant]:
    """The gate for a batch of patient rows (a DataLoader's batch, an export's sheet): IN_CARE
    for those in the caller's own care (assigned, from the row; seen at an arrived visit, by
    `care_scope`), else the purpose they stated that is still open, else closed."""
    out = {p.id: IN_CARE for p in patients if in_own_care_at_once(principal, p)}
    rest = sorted({p.id for p in patients} - set(out))
    return out | await _look_up(session, care_scope(principal), principal.id, rest, now)


async def opens_to_staff(
    session: AsyncSession,
    staff_id: uuid.UUID,
    patient_ids: Sequence[uuid.UUID],
    now: datetime | None = None,
) -> set[uuid.UUID]:
    """Those of `patient_ids` whose health data opens to this staff member now, by the rule of
    `grants`: for work a staff member started that runs without their request (an import's
    batches). Purposes are not logged here: the work's own entry carries them."""
    found = await _look_up(session, staff_care_scope(staff_id), staff_id, patient_ids, now)
    return {pid for pid, grant in found.items() if grant.opens}


def check_grant(
    trail: AccessTrail, patient_id: uuid.UUID, grant: HealthGrant, action: Action | None = None
) -> None:
    """Record a health read (or, with `action`, a change) the gate let through under a
    purpose, or refuse it."""
    if grant.in_care:
        return
    if grant.purpose is None:
        trail.reasoned_field(patient_id, "health", Outcome.DENIED, REASON_REQUIRED, action)
        raise ReasonRequired(
            "health data of a patient outside your own care opens only after statePurpose"
        )
    trail.reasoned_field(patient_id, "health", Outcome.ALLOWED, grant.log_reason, action)


async def check_health(
    session: AsyncSession,
    principal: Principal,
    trail: AccessTrail,
    patients: Sequence[Patient],
    action: Action | None = None,
) -> None:
    """The gate for one operation on these patients' health data (Casbin has already let the
    caller read or write health fields): each in their own care, or under an open purpose
    (logged with it, as `action` when it is a change); else REASON_REQUIRED."""
    given = await grants(session, principal, patients)
    for patient in patients:
        check_grant(trail, patient.id, given[patient.id], action)


def clean_note(note: str, field: str = "note") -> str:
    note = note.strip()
    if not note:
        raise BadInput("say in a few words why you need this", field=field)
    if len(note) > MAX_NOTE:
        raise BadInput(f"at most {MAX_NOTE} characters", field=field)
    return note


async def state_purpose(
    session: AsyncSession,
    principal: Principal,
    trail: AccessTrail,
    cipher: FieldCipher,
    patient: Patient,
    purpose: Purpose,
    note: str,
    now: datetime | None = None,
) -> StatedPurpose:
    """Open `patient`'s health fields to the caller for the tenant's window, on the record.
    The caller must already hold `fields:health` read and the patient in their scope."""
    note = clean_note(note)
    repo = ReasonRepository(session)
    now = now or datetime.now(UTC)
    minutes = await repo.window_minutes()
    row = StatedPurpose(
        id=uuid.uuid4(),
        staff_id=principal.id,
        patient_id=patient.id,
        branch_id=patient.home_branch_id,
        purpose=str(purpose),
        stated_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    row.note_ct = cipher.encrypt(note, table=TABLE, column="note", row_id=row.id)
    repo.add(row)
    await session.flush()
    trail.purpose(Action.STATE_PURPOSE, patient.id, f"{row.purpose} {stated_ref(row.id)}")
    return row


async def flag(
    session: AsyncSession,
    principal: Principal,
    trail: AccessTrail,
    cipher: FieldCipher,
    row: StatedPurpose,
    note: str,
    now: datetime | None = None,
) -> StatedPurpose:
    """An auditor marks a stated purpose for follow-up; the flag goes on the record too."""
    note = clean_note(note)
    row.flagged_at = now or datetime.now(UTC)
    row.flagged_by = principal.id
    row.flag_note_ct = cipher.encrypt(note, table=TABLE, column="flag_note", row_id=row.id)
    await session.flush()
    trail.purpose(Action.FLAG_PURPOSE, row.patient_id, f"flag {stated_ref(row.id)}")
    return row


def unseal_note(cipher: FieldCipher, row: StatedPurpose, column: str) -> str | None:
    blob = row.note_ct if column == "note" else row.flag_note_ct
    if blob is None:
        return None
    return cipher.decrypt(blob, table=TABLE, column=column, row_id=row.id)
