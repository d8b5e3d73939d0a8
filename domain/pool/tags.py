"""Tags in groups; bulk tagging in one transaction; automatic tags from segment rules."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import BadInput, Conflict, NotFound
from domain.patients.scope import PatientScope
from domain.pool.models import Tag, TagGroup
from domain.pool.repository import PoolRepository
from domain.pool.segments import tag_ids, validate

MAX_BULK = 10_000
CHUNK = 500  # stay under SQLite's bound-parameter limit


def _chunks(ids: Sequence[uuid.UUID]) -> list[list[uuid.UUID]]:
    return [list(ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK)]


class TagService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = PoolRepository(session)

    async def health_flags(self, flt: Mapping[str, Any]) -> dict[uuid.UUID, bool]:
        """Each existing tag a filter names, at any depth, and whether its group holds health
        data (a tag missing here does not exist)."""
        mentioned = sorted(set(tag_ids(flt)))
        if not mentioned:
            return {}
        found = await self.repo.health_flags(mentioned)
        return {tag_id: is_health for tag_id, is_health in found}

    async def mentions_health(self, flt: Mapping[str, Any]) -> bool:
        """Whether a filter (a segment's, an automatic tag's rule) names a tag of a health
        group: such a condition reads health data."""
        return any((await self.health_flags(flt)).values())

    async def create_group(self, name: str, is_health: bool) -> TagGroup:
        name = name.strip()
        if not (0 < len(name) <= 100):
            raise BadInput("name must be 1-100 characters", field="name")
        if await self.repo.tag_group_name_taken(name):
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
        if await self.repo.tag_name_taken(group.id, name):
            raise Conflict("this group already has a tag with this name", field="name")
        tag = Tag(group_id=group.id, name=name, auto_rule=dict(auto_rule) if auto_rule else None)
        self.session.add(tag)
        await self.session.flush()
        return tag

    async def _in_scope(self, scope: PatientScope, ids: Sequence[uuid.UUID]) -> None:
        found = 0
        for chunk in _chunks(ids):
            found += await self.repo.count_unerased(scope, chunk)
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
            have |= set(await self.repo.tagged_among(tag.id, chunk))
        now = datetime.now(UTC)
        rows = [
            {"patient_id": pid, "tag_id": tag.id, "source": "manual", "added_at": now}
            for pid in ids
            if pid not in have
        ]
        if rows:
            await self.repo.insert_patient_tags(rows)
        return len(rows)

    async def untag(self, tag: Tag, scope: PatientScope, patient_ids: Sequence[uuid.UUID]) -> int:
        ids = sorted(set(patient_ids))
        if len(ids) > MAX_BULK:
            raise BadInput(f"at most {MAX_BULK} patients per call", field="patientIds")
        await self._in_scope(scope, ids)
        removed = 0
        for chunk in _chunks(ids):
            removed += await self.repo.untag(tag.id, chunk)
        return removed

    async def apply_auto_tag(self, tag: Tag, within: PatientScope | None = None) -> tuple[int, int]:
        """Make an automatic tag hold exactly for the patients its rule matches now, among
        those `within` covers (every patient when None; the rest keep the tag as it is)."""
        if tag.auto_rule is None:
            raise BadInput("this tag has no rule", field="tagId")
        now = datetime.now(UTC)
        matching = set(await self.repo.matching_rule(tag.auto_rule, now, within))
        current = set(await self.repo.tagged_within(tag.id, within))
        stale = sorted(current - matching)
        for chunk in _chunks(stale):
            await self.repo.untag(tag.id, chunk)
        rows = [
            {"patient_id": pid, "tag_id": tag.id, "source": "auto", "added_at": now}
            for pid in sorted(matching - current)
        ]
        if rows:
            await self.repo.insert_patient_tags(rows)
        return len(rows), len(stale)
