"""One patient, one record: duplicate candidates by blind index, and merging two records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import BadInput
from domain.patients.models import SEALED_FIELDS, Patient
from domain.patients.scope import PatientScope
from domain.patients.service import seal, unseal
from domain.pool.models import FollowUp, InteractionEvent, PatientTag, StageChange
from domain.referrals import figures
from tenancy.keyring import FieldCipher

MATCHED_ON = ("phone", "wechat_id", "wecom_external_id")


@dataclass(frozen=True)
class DuplicateGroup:
    matched_on: str
    patient_ids: list[uuid.UUID]


def _live(scope: PatientScope) -> tuple[ColumnElement[bool], ...]:
    return (Patient.erased_at.is_(None), Patient.merged_into_id.is_(None), scope.clause())


def _shared_digests(name: str, scope: PatientScope) -> Select:
    """Blind-index values of `name` held by more than one live record in scope."""
    column = getattr(Patient, f"{name}_bidx")
    return (
        select(column)
        .where(column.is_not(None), *_live(scope))
        .group_by(column)
        .having(func.count() > 1)
    )


async def possible_duplicates(
    session: AsyncSession, scope: PatientScope, limit: int
) -> list[DuplicateGroup]:
    """Groups of live records (within scope) sharing an exact identifier."""
    groups: list[DuplicateGroup] = []
    for name in MATCHED_ON:
        column = getattr(Patient, f"{name}_bidx")
        shared = _shared_digests(name, scope).order_by(column).limit(limit)
        digests = (await session.scalars(shared)).all()
        if not digests:
            continue
        rows = (
            await session.execute(
                select(column, Patient.id)
                .where(column.in_(digests), *_live(scope))
                .order_by(Patient.id)
            )
        ).all()
        by_digest: dict[bytes, list[uuid.UUID]] = {}
        for digest, pid in rows:
            by_digest.setdefault(digest, []).append(pid)
        groups += [DuplicateGroup(name, ids) for ids in by_digest.values()]
    return groups[:limit]


async def count_duplicate_groups(session: AsyncSession, scope: PatientScope) -> int:
    """How many groups `possible_duplicates` would list with no limit."""
    total = 0
    for name in MATCHED_ON:
        shared = _shared_digests(name, scope).subquery()
        total += int(await session.scalar(select(func.count()).select_from(shared)) or 0)
    return total


async def merge(session: AsyncSession, cipher: FieldCipher, keep: Patient, other: Patient) -> None:
    """Move `other`'s events, tags, tasks and stage history onto `keep`, fill `keep`'s empty
    sealed fields from `other` (re-sealed for keep's row), then retire `other`."""
    if keep.id == other.id:
        raise BadInput("cannot merge a patient with itself", field="mergeId")
    if other.merged_into_id is not None or other.erased_at is not None:
        raise BadInput("that record was already merged or erased", field="mergeId")
    for model in (InteractionEvent, FollowUp, StageChange):
        await session.execute(
            update(model)
            .where(model.patient_id == other.id)
            .values(patient_id=keep.id)
            .execution_options(synchronize_session=False)
        )
    keep_tags = set(
        await session.scalars(select(PatientTag.tag_id).where(PatientTag.patient_id == keep.id))
    )
    for tag in await session.scalars(select(PatientTag).where(PatientTag.patient_id == other.id)):
        if tag.tag_id not in keep_tags:
            session.add(PatientTag(patient_id=keep.id, tag_id=tag.tag_id, source=tag.source))
        await session.delete(tag)
    for name in SEALED_FIELDS:
        if getattr(keep, f"{name}_ct") is None and getattr(other, f"{name}_ct") is not None:
            seal(cipher, keep, name, unseal(cipher, other, name))
        seal(cipher, other, name, None)
    if keep.consent_at is None:
        keep.consent_at = other.consent_at
    keep.referral_count += other.referral_count
    old_total = await figures.lock_paid_total(session, keep.id)
    keep.order_total_fen = old_total + other.order_total_fen
    other.merged_into_id = keep.id
    await session.flush()
    await figures.paid_total_changed(session, keep.id, old_total, keep.order_total_fen)
