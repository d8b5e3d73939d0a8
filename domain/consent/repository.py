"""All SQL of consent: the state in force (locked while it moves), the history, and the one
condition audiences and send paths use to ask who may be reached."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.consent.models import ConsentRecord, ConsentState, ContactChannel, Purpose
from domain.patients.models import Patient


def reachable(purpose: Purpose, channels: list[ContactChannel]) -> ColumnElement[bool]:
    """Patients with `purpose` consent in force on any of `channels` (and, since the product
    only reaches people about data it holds lawfully, never an erased patient)."""
    return Patient.erased_at.is_(None) & exists(
        select(ConsentState.patient_id).where(
            ConsentState.patient_id == Patient.id,
            ConsentState.purpose == str(purpose),
            ConsentState.channel.in_([str(c) for c in channels]),
            ConsentState.granted.is_(True),
        )
    )


class ConsentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- state in force ---

    async def state_for_update(
        self, patient: Patient, purpose: str, channel: str
    ) -> ConsentState | None:
        """The patient's state for one purpose and channel, locked until the transaction ends
        (two changes to the same consent apply one after the other)."""
        stmt = (
            select(ConsentState)
            .where(
                ConsentState.patient_id == patient.id,
                ConsentState.purpose == purpose,
                ConsentState.channel == channel,
            )
            .with_for_update()
        )
        return await self.session.scalar(stmt)

    async def states(self, patient_id: uuid.UUID) -> list[ConsentState]:
        """The patient's states, by purpose and channel."""
        stmt = (
            select(ConsentState)
            .where(ConsentState.patient_id == patient_id)
            .order_by(ConsentState.purpose, ConsentState.channel)
        )
        return list(await self.session.scalars(stmt))

    # --- history ---

    async def history(self, patient_id: uuid.UUID) -> list[ConsentRecord]:
        """Every consent recorded for the patient, oldest first."""
        stmt = (
            select(ConsentRecord)
            .where(ConsentRecord.patient_id == patient_id)
            .order_by(ConsentRecord.recorded_at, ConsentRecord.id)
        )
        return list(await self.session.scalars(stmt))
