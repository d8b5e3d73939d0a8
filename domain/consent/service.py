"""Recording consent and asking who may be reached.

`record` appends the history row and moves the state in force, in the caller's transaction;
a withdrawal takes effect for every audience computed and every send checked after it
commits. `reachable` is the one SQL condition audiences and send paths use (it lives, with
the rest of consent's SQL, in domain.consent.repository).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from domain.consent.models import ConsentRecord, ConsentState, ContactChannel, Purpose
from domain.consent.repository import ConsentRepository
from domain.errors import BadInput
from domain.patients.models import Patient
from tenancy.orm import utcnow


@dataclass(frozen=True)
class ConsentChange:
    purpose: Purpose
    channel: ContactChannel
    granted: bool
    text_version: str
    method: str


def _check(change: ConsentChange) -> None:
    if (change.purpose is Purpose.HEALTH_DATA) != (change.channel is ContactChannel.ANY):
        raise BadInput(
            "health_data consent takes channel ANY; care and marketing name a channel",
            field="channel",
        )
    if not 1 <= len(change.text_version.strip()) <= 40:
        raise BadInput("textVersion must be 1-40 characters", field="textVersion")
    if not 1 <= len(change.method.strip()) <= 40:
        raise BadInput("method must be 1-40 characters", field="method")


async def record(
    session: AsyncSession, patient: Patient, change: ConsentChange, actor: str
) -> ConsentState:
    _check(change)
    if patient.erased_at is not None:
        raise BadInput("the patient's data was erased", field="patientId")
    now = utcnow()
    entry = ConsentRecord(
        patient_id=patient.id,
        purpose=str(change.purpose),
        channel=str(change.channel),
        granted=change.granted,
        text_version=change.text_version.strip(),
        method=change.method.strip(),
        recorded_by=actor,
        recorded_at=now,
    )
    session.add(entry)
    await session.flush()
    state = await ConsentRepository(session).state_for_update(patient, entry.purpose, entry.channel)
    if state is None:
        state = ConsentState(patient_id=patient.id, purpose=entry.purpose, channel=entry.channel)
        session.add(state)
    state.granted = change.granted
    state.text_version = entry.text_version
    state.since = now
    state.record_id = entry.id
    await session.flush()
    return state


async def states(session: AsyncSession, patient_id: uuid.UUID) -> list[ConsentState]:
    return await ConsentRepository(session).states(patient_id)


async def history(session: AsyncSession, patient_id: uuid.UUID) -> list[ConsentRecord]:
    return await ConsentRepository(session).history(patient_id)
