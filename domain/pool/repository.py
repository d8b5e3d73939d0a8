"""SQL of the pool feature that its services (tags, scoring, segments) do not already hold:
background jobs' rows and the reads behind the pool's GraphQL fields."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.pool.models import (
    Channel,
    Job,
    JobStatus,
    PatientTag,
    Segment,
    StageChange,
    Tag,
    TagGroup,
)


class PoolRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- jobs ---

    async def running_jobs(self) -> Sequence[Job]:
        """The bound tenant's jobs left running (a process resumes them when it starts)."""
        stmt = select(Job).where(Job.status == JobStatus.RUNNING)
        return (await self.session.scalars(stmt)).all()

    async def job(self, job_id: uuid.UUID) -> Job | None:
        return await self.session.scalar(select(Job).where(Job.id == job_id))

    # --- tags and channels ---

    async def tag_with_group(self, tag_id: uuid.UUID) -> Row[tuple[Tag, TagGroup]] | None:
        stmt = (
            select(Tag, TagGroup)
            .join(TagGroup, TagGroup.id == Tag.group_id)
            .where(Tag.id == tag_id)
        )
        return (await self.session.execute(stmt)).first()

    async def tags(
        self, *, with_health: bool, tag_id: uuid.UUID | None = None
    ) -> Sequence[Row[tuple[Tag, TagGroup]]]:
        """Tags with their groups; without the health groups unless `with_health`."""
        stmt = select(Tag, TagGroup).join(TagGroup, TagGroup.id == Tag.group_id)
        if not with_health:
            stmt = stmt.where(TagGroup.is_health.is_(False))
        if tag_id is not None:
            stmt = stmt.where(Tag.id == tag_id)
        return (await self.session.execute(stmt)).all()

    async def tag_groups(self, *, with_health: bool) -> Sequence[TagGroup]:
        stmt = select(TagGroup)
        if not with_health:
            stmt = stmt.where(TagGroup.is_health.is_(False))
        return (await self.session.scalars(stmt)).all()

    async def tag_group(self, group_id: uuid.UUID) -> TagGroup | None:
        return await self.session.scalar(select(TagGroup).where(TagGroup.id == group_id))

    async def health_flags(
        self, tag_ids: Sequence[uuid.UUID]
    ) -> Sequence[Row[tuple[uuid.UUID, bool]]]:
        """(tag id, whether its group holds health data) for each of `tag_ids` that exists."""
        stmt = (
            select(Tag.id, TagGroup.is_health)
            .join(TagGroup, TagGroup.id == Tag.group_id)
            .where(Tag.id.in_(tag_ids))
        )
        return (await self.session.execute(stmt)).all()

    async def tags_of_patients(
        self, patient_ids: Sequence[uuid.UUID]
    ) -> Sequence[Row[tuple[uuid.UUID, Tag, TagGroup]]]:
        """(patient id, tag, group) for each of the patients' tags, by group and tag name."""
        stmt = (
            select(PatientTag.patient_id, Tag, TagGroup)
            .join(Tag, Tag.id == PatientTag.tag_id)
            .join(TagGroup, TagGroup.id == Tag.group_id)
            .where(PatientTag.patient_id.in_(sorted(set(patient_ids))))
            .order_by(TagGroup.name, Tag.name)
        )
        return (await self.session.execute(stmt)).all()

    async def channels(self) -> Sequence[Channel]:
        return (await self.session.scalars(select(Channel))).all()

    async def channel_code_taken(self, code: str) -> bool:
        return bool(await self.session.scalar(select(Channel.id).where(Channel.code == code)))

    # --- lifecycle ---

    async def stage_changes(self, patient_id: uuid.UUID) -> Sequence[StageChange]:
        """A patient's lifecycle stage changes, oldest first."""
        stmt = (
            select(StageChange)
            .where(StageChange.patient_id == patient_id)
            .order_by(StageChange.occurred_at)
        )
        return (await self.session.scalars(stmt)).all()

    # --- segments ---

    async def segments(self, after_name: str | None, limit: int) -> Sequence[Segment]:
        """Segments by name, after `after_name` (a page's keyset), at most `limit`."""
        stmt = select(Segment).order_by(Segment.name).limit(limit)
        if after_name is not None:
            stmt = stmt.where(Segment.name > after_name)
        return (await self.session.scalars(stmt)).all()

    async def count_segments(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(Segment)) or 0)

    async def segment(self, segment_id: uuid.UUID) -> Segment | None:
        return await self.session.scalar(select(Segment).where(Segment.id == segment_id))

    async def segment_name_taken(self, name: str) -> bool:
        return bool(await self.session.scalar(select(Segment.id).where(Segment.name == name)))
