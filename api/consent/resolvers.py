"""Consent and patients' rights: record and read consent, and a patient's copy of their data.

Each is an access to one patient within the caller's scope, logged like any other."""

from __future__ import annotations

import json

import strawberry
from strawberry.types import Info

from api.consent.types import (
    Consent,
    ConsentRecord,
    ContactChannelEnum,
    PatientConsents,
    PatientDataExport,
    PurposeEnum,
)
from api.patients.loaders import patient_in_scope
from auth.access_log import Action
from auth.guard import require, require_patient_scope
from auth.reasons import check_health
from domain.consent import service as consent
from domain.patients.models import SEALED_FIELDS
from domain.patients.models import Patient as PatientRow
from domain.rights.export import patient_copy
from tenancy.orm import utcnow


async def _patient(info: Info, patient_id: strawberry.ID, act: str, action: Action) -> PatientRow:
    ctx = info.context
    scope = require_patient_scope(await ctx.principal(), ctx.trail, act, action)
    return await patient_in_scope(info, scope, patient_id)


async def _consents(info: Info, patient: PatientRow) -> PatientConsents:
    session = info.context.session
    return PatientConsents(
        current=[Consent.of(r) for r in await consent.states(session, patient.id)],
        history=[ConsentRecord.of(r) for r in await consent.history(session, patient.id)],
    )


async def patient_consents(info: Info, patient_id: strawberry.ID) -> PatientConsents:
    require(await info.context.principal(), "consents", "read")
    patient = await _patient(info, patient_id, "read", Action.READ)
    info.context.trail.returned(Action.READ, [patient.id])
    return await _consents(info, patient)


async def record_consent(
    info: Info,
    patient_id: strawberry.ID,
    purpose: PurposeEnum,  # type: ignore[valid-type]
    channel: ContactChannelEnum,  # type: ignore[valid-type]
    granted: bool,
    text_version: str,
    method: str,
) -> PatientConsents:
    """Record a grant or a withdrawal; it is in force as soon as this commits."""
    principal = await info.context.principal()
    require(principal, "consents", "write")
    patient = await _patient(info, patient_id, "write", Action.UPDATE)
    change = consent.ConsentChange(purpose, channel, granted, text_version, method)
    await consent.record(info.context.session, patient, change, principal.subject)
    info.context.trail.changed(Action.UPDATE, [patient.id])
    return await _consents(info, patient)


async def export_patient_data(info: Info, patient_id: strawberry.ID) -> PatientDataExport:
    """Everything held on one patient, decrypted, for their access request (logged as an
    export of their contact and health data)."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "patients", "export")
    patient = await _patient(info, patient_id, "read", Action.EXPORT)
    # The copy holds the health record: the reason gate applies as to any health read (a
    # data-subject request outside one's own care is stated as LEGAL first).
    await check_health(ctx.session, principal, ctx.trail, [patient])
    copy = await patient_copy(ctx.session, await ctx.cipher(), patient)
    groups = {str(g) for g in set(SEALED_FIELDS.values())}
    ctx.trail.changed(Action.EXPORT, [patient.id], groups)
    return PatientDataExport(
        patient_id=patient_id,
        exported_at=utcnow(),
        content=json.dumps(copy, ensure_ascii=False, sort_keys=True),
    )
