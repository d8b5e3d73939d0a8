"""Creating, changing and reading patients; sealed fields go through the tenant's cipher."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import BadInput, Conflict
from domain.patients.models import (
    BLIND_INDEXED,
    SEALED_FIELDS,
    Gender,
    LifecycleStage,
    Patient,
    PoolTier,
    TrustLevel,
)
from domain.patients.repository import PatientRepository
from domain.patients.scope import PatientScope
from domain.pool.models import EventType
from domain.pool.service import NewEvent, PoolService
from domain.tenants.branches import BranchService
from tenancy.keyring import FieldCipher, normalise_phone

TABLE = Patient.__tablename__
MAX_TEXT = {"name": 100, "national_id": 40, "wechat_id": 100, "wecom_external_id": 100}
MAX_HEALTH_TEXT = 10_000
_ENUMS: dict[str, type] = {
    "gender": Gender,
    "pool_tier": PoolTier,
    "lifecycle_stage": LifecycleStage,
    "trust_level": TrustLevel,
}
PLAIN_FIELDS = (
    "gender",
    "birth_year",
    "source_channel",
    "pool_tier",
    "lifecycle_stage",
    "trust_level",
)


def seal(cipher: FieldCipher, patient: Patient, name: str, value: str | None) -> None:
    """Encrypt one field into `<name>_ct`, bound to tenant, table, column and row."""
    blob = None
    if value is not None:
        blob = cipher.encrypt(value, table=TABLE, column=name, row_id=patient.id)
    setattr(patient, f"{name}_ct", blob)
    if name in BLIND_INDEXED:
        # a national id's check digit x or X is one person (also for ids stored before)
        key = value.upper() if value is not None and name == "national_id" else value
        digest = None if key is None else cipher.blind_index(key, kind=name)
        setattr(patient, f"{name}_bidx", digest)


def unseal(cipher: FieldCipher, patient: Patient, name: str) -> str | None:
    blob = getattr(patient, f"{name}_ct")
    if blob is None:
        return None
    return cipher.decrypt(blob, table=TABLE, column=name, row_id=patient.id)


def phone_digest(cipher: FieldCipher, raw: str) -> bytes:
    try:
        return cipher.blind_index(normalise_phone(raw), kind="phone")
    except ValueError:
        raise BadInput("phone is not a phone number", field="phone") from None


def _clean_sealed(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{name} must be text", field=name)
    value = value.strip()
    if name == "phone":
        try:
            return normalise_phone(value)
        except ValueError:
            raise BadInput("phone is not a phone number", field=name) from None
    if name == "national_id":
        value = value.upper()  # 身份证号 end in X or x alike: one person, one blind index
    limit = MAX_TEXT.get(name, MAX_HEALTH_TEXT)
    if len(value) > limit:
        raise BadInput(f"{name} is longer than {limit} characters", field=name)
    if name == "name" and not value:
        raise BadInput("name must not be empty", field=name)
    return value or None


def _clean_plain(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _ENUMS:
        try:
            return str(_ENUMS[name](value))
        except ValueError:
            raise BadInput(f"{name} has an unknown value", field=name) from None
    if name == "birth_year" and not (1900 <= int(value) <= datetime.now(UTC).year):
        raise BadInput("birth_year is out of range", field=name)
    if name == "source_channel" and len(str(value)) > 64:
        raise BadInput("source_channel is longer than 64 characters", field=name)
    return value


class StaffRef(Protocol):
    """A staff member already looked up (tenant-filtered) by the caller; staff live in auth/."""

    id: uuid.UUID


@dataclass(frozen=True)
class Admitted:
    """What creating a patient came to: a new record, or a known person the caller can see
    (`existing`), found by one of their identifiers."""

    patient: Patient
    existing: bool


class PatientService:
    def __init__(self, session: AsyncSession, cipher: FieldCipher) -> None:
        self.session = session
        self.cipher = cipher
        self.repo = PatientRepository(session)

    async def _check_branch(self, branch_id: uuid.UUID) -> None:
        # A closed branch takes no new patients (nor patients moved there).
        await BranchService(self.session).check_open(branch_id, "home_branch_id")

    async def _unique_phone(
        self, phone: str | None, patient: Patient, visible: PatientScope | None
    ) -> None:
        """A phone may not move onto a second record the caller can see (they would merge
        instead). Records they cannot see do not refuse it: that answer would tell them the
        phone is known elsewhere in the chain (OneID); the pair shows in possibleDuplicates."""
        if phone is None or visible is None:
            return
        digest = self.cipher.blind_index(phone, kind="phone")
        if digest == patient.phone_bidx:
            return
        for other in await self.repo.find_by_identifiers({"phone": [digest]}, visible):
            if other.id != patient.id:
                raise Conflict("a patient with this phone already exists", field="phone")

    def identifier_digests(self, values: Mapping[str, Any]) -> dict[str, bytes]:
        """Blind indexes of the identifiers given (phone, WeChat, WeCom, national id)."""
        out = {}
        for name in BLIND_INDEXED:
            value = _clean_sealed(name, values.get(name))
            if value is not None:
                out[name] = self.cipher.blind_index(value, kind=name)
        return out

    async def admit(
        self, values: Mapping[str, Any], visible: PatientScope, actor: str, via: str
    ) -> Admitted:
        """Create a patient, unless one of its identifiers is already in the chain (OneID).

        A known person the caller can see (`visible`) comes back as they are, with the
        identifiers they lacked filled in and the new channel recorded as a touch (an event
        and a channel-history entry). A known person the caller cannot see changes nothing
        for the caller: a new record is made exactly as for a brand-new patient (a lead with
        its own id) and, sharing the identifier, is listed for HQ by possibleDuplicates."""
        channel = str(values.get("source_channel") or "")
        digests = self.identifier_digests(values)
        matches = await self.repo.find_by_identifiers({n: [d] for n, d in digests.items()})
        seen = await self.repo.get_many(visible, [m.id for m in matches])
        known = next((m for m in matches if m.id in seen), None)
        if known is None:
            patient = await self.create(values)
            self.repo.add_touch(patient, channel, via)
            await self.session.flush()
            return Admitted(patient, existing=False)
        for name in BLIND_INDEXED:
            value = _clean_sealed(name, values.get(name))
            if value is not None and getattr(known, f"{name}_ct") is None:
                seal(self.cipher, known, name, value)
        await self.touch(known, channel, actor, via)
        return Admitted(known, existing=True)

    async def touch(self, patient: Patient, channel: str, actor: str, via: str) -> None:
        """A known person came in again through `channel`: a channel-history entry and an
        interaction event (which scores like any other)."""
        self.repo.add_touch(patient, channel, via)
        now = datetime.now(UTC)
        event = NewEvent(
            client_event_id=f"touch:{uuid.uuid4()}",
            patient=patient,
            type=str(EventType.INTERACTION),
            occurred_at=now,
            source=(channel or via)[:64],
        )
        await PoolService(self.session, actor).record_events([event])
        await self.session.flush()

    async def _new_referral_code(self) -> str:
        while True:
            code = secrets.token_hex(4).upper()
            if not await self.repo.referral_code_taken(code):
                return code

    async def create(self, values: Mapping[str, Any]) -> Patient:
        if not values.get("name"):
            raise BadInput("name is required", field="name")
        if values.get("home_branch_id") is None:
            raise BadInput("home_branch_id is required", field="home_branch_id")
        patient = Patient(id=uuid.uuid4(), referral_code=await self._new_referral_code())
        await self._apply(patient, values, creating=True)
        self.session.add(patient)
        await self.session.flush()
        return patient

    async def update(
        self, patient: Patient, values: Mapping[str, Any], visible: PatientScope | None = None
    ) -> Patient:
        """Change a patient; `visible` is the caller's read scope (for the phone check)."""
        if patient.erased_at is not None:
            raise Conflict("this patient's data was erased")
        await self._apply(patient, values, creating=False, visible=visible)
        await self.session.flush()
        return patient

    async def _apply(
        self,
        patient: Patient,
        values: Mapping[str, Any],
        creating: bool,
        visible: PatientScope | None = None,
    ) -> None:
        sealed = {k: _clean_sealed(k, v) for k, v in values.items() if k in SEALED_FIELDS}
        plain = {k: _clean_plain(k, v) for k, v in values.items() if k in PLAIN_FIELDS}
        if "name" in values and sealed.get("name") is None:
            raise BadInput("name must not be empty", field="name")
        if "home_branch_id" in values:
            if values["home_branch_id"] is None:
                raise BadInput("home_branch_id is required", field="home_branch_id")
            if creating or values["home_branch_id"] != patient.home_branch_id:
                await self._check_branch(values["home_branch_id"])
            patient.home_branch_id = values["home_branch_id"]
        if "assigned_staff" in values:
            staff: StaffRef | None = values["assigned_staff"]
            patient.assigned_staff_id = None if staff is None else staff.id
        if "phone" in sealed and not creating:
            await self._unique_phone(sealed["phone"], patient, visible)
        for name, value in plain.items():
            if value is not None or name in ("birth_year",):
                setattr(patient, name, value)
        for name, value in sealed.items():
            seal(self.cipher, patient, name, value)
        if values.get("consent") is True and patient.consent_at is None:
            patient.consent_at = datetime.now(UTC)
        elif values.get("consent") is False:
            patient.consent_at = None

    async def erase(self, patient: Patient) -> None:
        """Right to erasure: every sealed field and blind index destroyed; the row (its id,
        branch, stage, dates) stays so counts, referral shapes and the access log hold."""
        for name in SEALED_FIELDS:
            seal(self.cipher, patient, name, None)
        patient.erased_at = datetime.now(UTC)
        await self.session.flush()
