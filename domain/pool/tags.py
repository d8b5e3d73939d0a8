"""Tags in groups; bulk tagging in one transaction; automatic tags from segment rules."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import BadInput, Conflict, NotFound
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.pool.models import PatientTag, Tag, TagGroup
from domain.pool.repository import PoolRepository
from domain.pool.segments import compile_filter, tag_ids, validate
from tenancy.session import stamp_rows

MAX_BULK = 10_000
CHUNK = 500  # stay under SQLite's bound-parameter limit


def _chunks(ids: Sequence[uuid.UUID]) -> list[list[uuid.UUID]]:
    return [list(ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK)]


class TagService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def health_flags(self, flt: Mapping[str, Any]) -> dict[uuid.UUID, bool]:
        """Each existing tag a filter names, at any depth, and whether its group holds health
        data (a tag missing here does not exist)."""
        mentioned = sorted(set(tag_ids(flt)))
        if not mentioned:
            return {}
        found = await PoolRepository(self.session).health_flags(mentioned)
        return {tag_id: is_health for tag_id, is_health in found}

    async def mentions_health(self, flt: Mapping[str, Any]) -> bool:
        """Whether a filter (a segment's, an automatic tag's rule) names a tag of a health
        group: such a condition reads health data."""
        return any((await self.health_flags(flt)).values())

    async def create_group(self, name: str, is_health: bool) -> TagGroup:
        name = name.strip()
        if not (0 < len(name) <= 100):
            raise BadInput("name must be 1-100 characters", field="name")
        if await self.session.scalar(select(TagGroup.id).where(TagGroup.name == name)):
            raise Conflict("a tag group with this name exists", field="name")
        group = TagGroup(name=name, is_health=is_health)
        self.session.add(group)
        await self.session.flush()
        return group

    async def create_tag(
        self, group: TagGroup, name: str, auto_rule: Mapping[str, Any] | None
    ) -> Tag:
        name = name.strip()
        if not (0 < len(name) <= 100):
            raise BadInput("name must be 1-100 characters", field="name")
        if auto_rule is not None:
            validate(auto_rule)
        exists = await self.session.scalar(
            select(Tag.id).where(Tag.group_id == group.id, Tag.name == name)
        )
        if exists:
            raise Conflict("this group already has a tag with this name", field="name")
        tag = Tag(group_id=group.id, name=name, auto_rule=dict(auto_rule) if auto_rule else None)
        self.session.add(tag)
        await self.session.flush()
        return tag

    async def _in_scope(self, scope: PatientScope, ids: Sequence[uuid.UUID]) -> None:
        found = 0
        for chunk in _chunks(ids):
            found += int(
                await self.session.scalar(
                    select(func.count())
                    .select_from(Patient)
                    .where(Patient.id.in_(chunk), scope.clause(), Patient.erased_at.is_(None))
                )
                or 0
            )
        if found != len(ids):
            raise NotFound("one or more patients do not exist", field="patientIds")

    async def tag(self, tag: Tag, scope: PatientScope, patient_ids: Sequence[uuid.UUID]) -> int:
        """Add a tag to many patients at once; any unknown id and nothing changes."""
        ids = sorted(set(patient_ids))
        if len(ids) > MAX_BULK:
            raise BadInput(f"at most {MAX_BULK} patients per call", field="patientIds")
        await self._in_scope(scope, ids)
        have: set[uuid.UUID] = set()
        for chunk in _chunks(ids):
            have |= set(
                (
                    await self.session.scalars(
                        select(PatientTag.patient_id).where(
                            PatientTag.tag_id == tag.id, PatientTag.patient_id.in_(chunk)
                        )
                    )
                ).all()
            )
        now = datetime.now(UTC)
        rows = [
            {"patient_id": pid, "tag_id": tag.id, "source": "manual", "added_at": now}
            for pid in ids
            if pid not in have
        ]
        if rows:
            await self.session.execute(
                PatientTag.__table__.insert(), stamp_rows(self.session, rows)
            )
        return len(rows)

    async def untag(self, tag: Tag, scope: PatientScope, patient_ids: Sequence[uuid.UUID]) -> int:
        ids = sorted(set(patient_ids))
        if len(ids) > MAX_BULK:
            raise BadInput(f"at most {MAX_BULK} patients per call", field="patientIds")
        await self._in_scope(scope, ids)
        removed = 0
        for chunk in _chunks(ids):
            result = await self.session.execute(
                delete(PatientTag)
                .where(PatientTag.tag_id == tag.id, PatientTag.patient_id.in_(chunk))
                .execution_options(synchronize_session=False)
            )
            removed += result.rowcount or 0
        return removed

    async def apply_auto_tag(self, tag: Tag, within: PatientScope | None = None) -> tuple[int, int]:
        """Make an automatic tag hold exactly for the patients its rule matches now, among
        those `within` covers (every patient when None; the rest keep the tag as it is)."""
        if tag.auto_rule is None:
            raise BadInput("this tag has no rule", field="tagId")
        now = datetime.now(UTC)
        among = true() if within is None else within.clause()
        matching = set(
            (
                await self.session.scalars(
                    select(Patient.id).where(
                        compile_filter(tag.auto_rule, now),
                        among,
                        Patient.erased_at.is_(None),
                        Patient.merged_into_id.is_(None),
                    )
                )
            ).all()
        )
        current = set(
            (
                await self.session.scalars(
                    select(PatientTag.patient_id)
                    .join(Patient, Patient.id == PatientTag.patient_id)
                    .where(PatientTag.tag_id == tag.id, among)
                )
            ).all()
        )
        stale = sorted(current - matching)
        for chunk in _chunks(stale):
            await self.session.execute(
                delete(PatientTag)
                .where(PatientTag.tag_id == tag.id, PatientTag.patient_id.in_(chunk))
                .execution_options(synchronize_session=False)
            )
        rows = [
            {"patient_id": pid, "tag_id": tag.id, "source": "auto", "added_at": now}
            for pid in sorted(matching - current)
        ]
        if rows:
            await self.session.execute(
                PatientTag.__table__.insert(), stamp_rows(self.session, rows)
            )
        return len(rows), len(stale)
