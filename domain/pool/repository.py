"""All SQL of the pool feature: jobs and their leases, tags and channels, events and scoring,
stage history, segments and their filters, the pool's figures, and (`IdentityRepository`)
duplicate look-ups and merging two records. The session adds the tenant to every statement."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import Order, Visit, VisitStatus
from domain.care.repository import PAID_STATES
from domain.consent.models import ConsentState, ContactChannel, Purpose
from domain.consent.repository import reachable
from domain.errors import BadInput
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.pool.models import (
    Channel,
    InteractionEvent,
    Job,
    JobStatus,
    PatientTag,
    ScoringRule,
    ScoringSettings,
    Segment,
    StageChange,
    Tag,
    TagGroup,
)
from domain.referrals.models import Referral, Reward
from domain.wecom.repository import in_groups
from tenancy.session import stamp_rows

# Built once: every patient list reads its page's tags, and a request then only binds the ids.
_TAGS_OF_PATIENTS = (
    select(PatientTag.patient_id, Tag, TagGroup)
    .join(Tag, Tag.id == PatientTag.tag_id)
    .join(TagGroup, TagGroup.id == Tag.group_id)
    .where(PatientTag.patient_id.in_(bindparam("ids", expanding=True)))
    .order_by(TagGroup.name, Tag.name)
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

    async def locked_job(self, job_id: uuid.UUID) -> Job | None:
        """The job row, locked until the transaction ends."""
        return await self.session.scalar(select(Job).where(Job.id == job_id).with_for_update())

    async def job_status(self, job_id: uuid.UUID) -> str | None:
        return await self.session.scalar(select(Job.status).where(Job.id == job_id))

    async def claim_job(
        self, job_id: uuid.UUID, holder: str, now: datetime, until: datetime
    ) -> bool:
        """One conditional UPDATE: the running job becomes `holder`'s until `until` when
        nobody holds it, `holder` does already, or the holder's lease ran out before `now`."""
        result = await self.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.RUNNING,
                or_(
                    Job.claimed_by.is_(None),
                    Job.claimed_by == holder,
                    Job.lease_until.is_(None),
                    Job.lease_until < now,
                ),
            )
            .values(claimed_by=holder, lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def renew_job_lease(self, job_id: uuid.UUID, holder: str, until: datetime) -> bool:
        """Whether the job was still `holder`'s (and is now held until `until`)."""
        result = await self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == holder)
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def release_job(self, job_id: uuid.UUID, holder: str) -> None:
        await self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == holder)
            .values(claimed_by=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )

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

    async def tag_group_name_taken(self, name: str) -> bool:
        return bool(await self.session.scalar(select(TagGroup.id).where(TagGroup.name == name)))

    async def tag_name_taken(self, group_id: uuid.UUID, name: str) -> bool:
        """Whether the group already has a tag named `name` (names are unique per group)."""
        stmt = select(Tag.id).where(Tag.group_id == group_id, Tag.name == name)
        return bool(await self.session.scalar(stmt))

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
        found = await self.session.execute(_TAGS_OF_PATIENTS, {"ids": sorted(set(patient_ids))})
        return found.all()

    async def count_unerased(self, scope: PatientScope, patient_ids: Sequence[uuid.UUID]) -> int:
        """How many of `patient_ids` are records within `scope` that were not erased (bulk
        tagging refuses the call unless all are)."""
        stmt = (
            select(func.count())
            .select_from(Patient)
            .where(Patient.id.in_(patient_ids), scope.clause(), Patient.erased_at.is_(None))
        )
        return int(await self.session.scalar(stmt) or 0)

    async def tagged_among(
        self, tag_id: uuid.UUID, patient_ids: Sequence[uuid.UUID]
    ) -> Sequence[uuid.UUID]:
        """Those of `patient_ids` that have the tag already."""
        stmt = select(PatientTag.patient_id).where(
            PatientTag.tag_id == tag_id, PatientTag.patient_id.in_(patient_ids)
        )
        return (await self.session.scalars(stmt)).all()

    async def insert_patient_tags(self, rows: list[dict[str, Any]]) -> None:
        """Rows stamped with the bound tenant, one executemany for the batch."""
        await self.session.execute(PatientTag.__table__.insert(), stamp_rows(self.session, rows))

    async def untag(self, tag_id: uuid.UUID, patient_ids: Sequence[uuid.UUID]) -> int:
        """Remove the tag from those of `patient_ids` that have it; how many had it."""
        result = await self.session.execute(
            delete(PatientTag)
            .where(PatientTag.tag_id == tag_id, PatientTag.patient_id.in_(patient_ids))
            .execution_options(synchronize_session=False)
        )
        return result.rowcount or 0

    async def matching_rule(
        self, rule: Mapping[str, Any], now: datetime, within: PatientScope | None
    ) -> Sequence[uuid.UUID]:
        """Live records among those `within` covers (every one when None) that an automatic
        tag's rule matches at `now`."""
        stmt = select(Patient.id).where(
            compile_filter(rule, now),
            _among(within),
            Patient.erased_at.is_(None),
            Patient.merged_into_id.is_(None),
        )
        return (await self.session.scalars(stmt)).all()

    async def tagged_within(
        self, tag_id: uuid.UUID, within: PatientScope | None
    ) -> Sequence[uuid.UUID]:
        """Records among those `within` covers (every one when None) that have the tag."""
        stmt = (
            select(PatientTag.patient_id)
            .join(Patient, Patient.id == PatientTag.patient_id)
            .where(PatientTag.tag_id == tag_id, _among(within))
        )
        return (await self.session.scalars(stmt)).all()

    async def channels(self) -> Sequence[Channel]:
        return (await self.session.scalars(select(Channel))).all()

    async def channel_code_taken(self, code: str) -> bool:
        return bool(await self.session.scalar(select(Channel.id).where(Channel.code == code)))

    # --- events and scoring ---

    async def scoring_rule_rows(self) -> Sequence[Row[tuple[str, int, int | None, int]]]:
        """(event type, points, cap, cap period in days) of each scoring rule."""
        stmt = select(
            ScoringRule.event_type,
            ScoringRule.points,
            ScoringRule.cap,
            ScoringRule.cap_period_days,
        )
        return (await self.session.execute(stmt)).all()

    async def scoring_settings_row(self) -> Row[tuple[int, int, int]] | None:
        """(idle days, idle points, threshold), None when the tenant has set none."""
        stmt = select(
            ScoringSettings.idle_days,
            ScoringSettings.idle_points,
            ScoringSettings.threshold,
        )
        return (await self.session.execute(stmt)).first()

    async def scoring_settings(self) -> ScoringSettings | None:
        return await self.session.scalar(select(ScoringSettings))

    async def delete_scoring_rules(self) -> None:
        await self.session.execute(delete(ScoringRule))

    async def known_event_ids(self, client_event_ids: Sequence[str]) -> Sequence[str]:
        """Those of the client event ids already stored (an event is stored once)."""
        stmt = select(InteractionEvent.client_event_id).where(
            InteractionEvent.client_event_id.in_(client_event_ids)
        )
        return (await self.session.scalars(stmt)).all()

    async def insert_events(self, rows: list[dict[str, Any]]) -> None:
        """Rows stamped with the bound tenant, one executemany for the batch."""
        await self.session.execute(
            InteractionEvent.__table__.insert(), stamp_rows(self.session, rows)
        )

    async def event_rows(self, patient_id: uuid.UUID) -> Sequence[Row[tuple[str, str, datetime]]]:
        """(client event id, type, when) of each of a patient's events, for scoring."""
        stmt = select(
            InteractionEvent.client_event_id,
            InteractionEvent.type,
            InteractionEvent.occurred_at,
        ).where(InteractionEvent.patient_id == patient_id)
        return (await self.session.execute(stmt)).all()

    async def count_all_patients(self) -> int:
        """Every record of the bound tenant (a rescoring job's total)."""
        total = await self.session.scalar(select(func.count()).select_from(Patient))
        return int(total or 0)

    async def patients_after(self, cursor: uuid.UUID | None, limit: int) -> Sequence[Patient]:
        """The next `limit` records by id after `cursor` (from the first when None): a
        rescoring batch."""
        stmt = select(Patient).order_by(Patient.id).limit(limit)
        if cursor is not None:
            stmt = stmt.where(Patient.id > cursor)
        return (await self.session.scalars(stmt)).all()

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

    # --- figures ---

    def _month_of(self, column: ColumnElement[datetime]) -> ColumnElement[str]:
        """YYYY-MM of a timestamp, in each database's own words."""
        if self.session.get_bind().dialect.name == "postgresql":
            return func.to_char(func.timezone("UTC", column), "YYYY-MM")
        return func.strftime("%Y-%m", column)

    async def pool_groups(
        self, scope: PatientScope
    ) -> Sequence[Row[tuple[str, str, uuid.UUID | None, int, int]]]:
        """(tier, stage, home branch, score bucket of 20, count) of the live records in scope:
        one grouping by all four keys (a few hundred groups) serves the four breakdowns."""
        bucket = (Patient.lead_score // 20) * 20
        keys = (Patient.pool_tier, Patient.lifecycle_stage, Patient.home_branch_id, bucket)
        stmt = select(*keys, func.count()).where(*_live_in(scope)).group_by(*keys)
        return (await self.session.execute(stmt)).all()

    async def new_by_channel(
        self, scope: PatientScope, since: datetime
    ) -> Sequence[Row[tuple[str, str, int]]]:
        """(source channel, YYYY-MM, count) of the live records in scope created since
        `since`, by month and channel."""
        month = self._month_of(Patient.created_at)
        stmt = (
            select(Patient.source_channel, month, func.count())
            .where(*_live_in(scope), Patient.created_at >= since)
            .group_by(Patient.source_channel, month)
            .order_by(month, Patient.source_channel)
        )
        return (await self.session.execute(stmt)).all()


def _among(within: PatientScope | None) -> ColumnElement[bool]:
    return true() if within is None else within.clause()


def _live_in(scope: PatientScope) -> tuple[ColumnElement[bool], ...]:
    return (scope.clause(), Patient.erased_at.is_(None), Patient.merged_into_id.is_(None))


class IdentityRepository:
    """Duplicate look-ups by blind index, and the moves of a merge (domain/pool/identity.py)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- duplicates ---

    async def shared_digests(
        self,
        scope: PatientScope,
        name: str,
        narrowed: Mapping[str, PatientScope],
        limit: int,
    ) -> Sequence[bytes]:
        """The first `limit` blind-index values of `name` (in order) held by more than one
        live record in scope."""
        column = getattr(Patient, f"{name}_bidx")
        stmt = _shared_digests(name, scope, narrowed).order_by(column).limit(limit)
        return (await self.session.scalars(stmt)).all()

    async def digest_holders(
        self,
        scope: PatientScope,
        name: str,
        narrowed: Mapping[str, PatientScope],
        digests: Sequence[bytes],
    ) -> Sequence[Row[tuple[bytes, uuid.UUID]]]:
        """(blind-index value of `name`, record id) of the live records in scope holding one
        of `digests`, by id."""
        column = getattr(Patient, f"{name}_bidx")
        stmt = (
            select(column, Patient.id)
            .where(column.in_(digests), *_live(scope, name, narrowed))
            .order_by(Patient.id)
        )
        return (await self.session.execute(stmt)).all()

    async def count_shared_digests(
        self, scope: PatientScope, name: str, narrowed: Mapping[str, PatientScope]
    ) -> int:
        shared = _shared_digests(name, scope, narrowed).subquery()
        return int(await self.session.scalar(select(func.count()).select_from(shared)) or 0)

    # --- merging ---

    async def move_rows(self, model: Any, old: uuid.UUID, new: uuid.UUID) -> None:
        """Every row of `model` that belongs to patient `old` now belongs to `new`."""
        await self.session.execute(
            update(model)
            .where(model.patient_id == old)
            .values(patient_id=new)
            .execution_options(synchronize_session=False)
        )

    async def move_unique_rows(self, model: Any, key: str, old: uuid.UUID, new: uuid.UUID) -> None:
        """Move rows unique per (`key`, patient). A row whose `key` the kept record already has
        stays on the retired record: both messages were really sent, and the campaign's counts
        do not change."""
        column = getattr(model, key)
        taken = select(column).where(model.patient_id == new).scalar_subquery()
        await self.session.execute(
            update(model)
            .where(model.patient_id == old, column.not_in(taken))
            .values(patient_id=new)
            .execution_options(synchronize_session=False)
        )

    async def consent_states(self, patient_id: uuid.UUID) -> Sequence[ConsentState]:
        stmt = select(ConsentState).where(ConsentState.patient_id == patient_id)
        return (await self.session.scalars(stmt)).all()

    async def tag_ids_of(self, patient_id: uuid.UUID) -> Sequence[uuid.UUID]:
        stmt = select(PatientTag.tag_id).where(PatientTag.patient_id == patient_id)
        return (await self.session.scalars(stmt)).all()

    async def patient_tags(self, patient_id: uuid.UUID) -> Sequence[PatientTag]:
        stmt = select(PatientTag).where(PatientTag.patient_id == patient_id)
        return (await self.session.scalars(stmt)).all()

    async def earliest(
        self, model: type[Visit] | type[Order], patient_id: uuid.UUID
    ) -> uuid.UUID | None:
        """The patient's earliest arrived visit or earliest paid order (ties by id)."""
        if model is Visit:
            at, status = Visit.arrived_at, Visit.status == VisitStatus.ARRIVED
        else:
            at, status = Order.paid_at, Order.status.in_(PAID_STATES)
        return await self.session.scalar(
            select(model.id)
            .where(model.patient_id == patient_id, status, at.is_not(None))
            .order_by(at, model.id)
            .limit(1)
        )

    async def flag_first(
        self, model: type[Visit] | type[Order], patient_id: uuid.UUID, first_id: uuid.UUID
    ) -> None:
        """`first_id` becomes the patient's first visit (or order); the others that carry
        the flag lose it."""
        await self.session.execute(
            update(model)
            .where(model.patient_id == patient_id, model.is_first.is_not(None))
            .values(is_first=model.id == first_id)
            .execution_options(synchronize_session=False)
        )

    async def repoint_merged(self, old: uuid.UUID, new: uuid.UUID) -> None:
        """Records merged into `old` point at `new`: one hop from any retired id."""
        await self.session.execute(
            update(Patient)
            .where(Patient.merged_into_id == old)
            .values(merged_into_id=new)
            .execution_options(synchronize_session=False)
        )

    async def referral_of(self, referred_id: uuid.UUID) -> Referral | None:
        """The link that brought the patient in (a patient has at most one referrer)."""
        return await self.session.scalar(
            select(Referral).where(Referral.referred_id == referred_id)
        )

    async def move_referrals(self, old: uuid.UUID, new: uuid.UUID) -> None:
        """Everyone `old` brought is now brought by `new`."""
        await self.session.execute(
            update(Referral)
            .where(Referral.referrer_id == old)
            .values(referrer_id=new)
            .execution_options(synchronize_session=False)
        )

    async def move_rewards(self, old: uuid.UUID, new: uuid.UUID) -> None:
        """Rewards of `old`, as referrer and as referred, onto `new` (one UPDATE per side)."""
        for column in (Reward.referrer_id, Reward.referred_id):
            await self.session.execute(
                update(Reward)
                .where(column == old)
                .values({column.key: new})
                .execution_options(synchronize_session=False)
            )

    async def referral_counts(self, referrer_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """{referrer: links} for those of `referrer_ids` that brought anyone in."""
        stmt = (
            select(Referral.referrer_id, func.count())
            .where(Referral.referrer_id.in_(referrer_ids))
            .group_by(Referral.referrer_id)
        )
        return dict((await self.session.execute(stmt)).all())

    async def patients(self, patient_ids: Sequence[uuid.UUID]) -> Sequence[Patient]:
        """The records, whatever the caller's scope: a merge's bookkeeping reaches referrers
        the caller may not see."""
        stmt = select(Patient).where(Patient.id.in_(patient_ids))
        return (await self.session.scalars(stmt)).all()


def _live(
    scope: PatientScope, name: str, narrowed: Mapping[str, PatientScope]
) -> tuple[ColumnElement[bool], ...]:
    extra = (narrowed[name].clause(),) if name in narrowed else ()
    return (Patient.erased_at.is_(None), Patient.merged_into_id.is_(None), scope.clause(), *extra)


def _shared_digests(name: str, scope: PatientScope, narrowed: Mapping[str, PatientScope]) -> Select:
    """Blind-index values of `name` held by more than one live record in scope."""
    column = getattr(Patient, f"{name}_bidx")
    return (
        select(column)
        .where(column.is_not(None), *_live(scope, name, narrowed))
        .group_by(column)
        .having(func.count() > 1)
    )


# --- segment filters (the language is domain/pool/segments.py) ---

# Date keys of a filter: the column each compares and on which side.
DATE_KEYS = {
    "lastInteractionBefore": ("last_interaction_at", "before"),
    "lastInteractionAfter": ("last_interaction_at", "after"),
    "lastVisitBefore": ("last_visit_at", "before"),
    "lastVisitAfter": ("last_visit_at", "after"),
    "createdBefore": ("created_at", "before"),
    "createdAfter": ("created_at", "after"),
}


def parse_id(value: Any, key: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadInput(f"{key} holds an invalid id", field=key) from None


def parse_time(value: Any, key: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise BadInput(f"{key} must be an ISO date-time", field=key) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _has_tag(tag_id: uuid.UUID) -> ColumnElement[bool]:
    return exists(
        select(PatientTag.patient_id).where(
            PatientTag.patient_id == Patient.id, PatientTag.tag_id == tag_id
        )
    )


def compile_filter(flt: Mapping[str, Any], now: datetime) -> ColumnElement[bool]:
    """A segment filter as one WHERE clause over patients, as of `now`."""
    parts: list[ColumnElement[bool]] = []
    for key, value in flt.items():
        if key == "and":
            parts.append(and_(true(), *(compile_filter(sub, now) for sub in value)))
        elif key == "or":
            parts.append(or_(*(compile_filter(sub, now) for sub in value)) if value else true())
        elif key == "not":
            parts.append(not_(compile_filter(value, now)))
        elif key == "tagsAny":
            ids = sorted({parse_id(v, key) for v in value})
            parts.append(
                exists(
                    select(PatientTag.patient_id).where(
                        PatientTag.patient_id == Patient.id, PatientTag.tag_id.in_(ids)
                    )
                )
            )
        elif key == "tagsAll":
            parts.extend(_has_tag(t) for t in sorted({parse_id(v, key) for v in value}))
        elif key == "scoreMin":
            parts.append(Patient.lead_score >= value)
        elif key == "scoreMax":
            parts.append(Patient.lead_score <= value)
        elif key == "stages":
            parts.append(Patient.lifecycle_stage.in_([str(v) for v in value]))
        elif key == "tiers":
            parts.append(Patient.pool_tier.in_([str(v) for v in value]))
        elif key == "channels":
            parts.append(Patient.source_channel.in_([str(v) for v in value]))
        elif key == "genders":
            parts.append(Patient.gender.in_([str(v) for v in value]))
        elif key == "branchIds":
            parts.append(Patient.home_branch_id.in_(sorted({parse_id(v, key) for v in value})))
        elif key == "ageMin":  # age ≥ n  ⇔  birth_year ≤ year − n
            parts.append(Patient.birth_year <= now.year - value)
        elif key == "ageMax":
            parts.append(Patient.birth_year >= now.year - value)
        elif key in DATE_KEYS:
            column, side = DATE_KEYS[key]
            col = getattr(Patient, column)
            moment = parse_time(value, key)
            parts.append(col < moment if side == "before" else col >= moment)
        elif key == "hasReferred":
            parts.append(Patient.referral_count > 0 if value else Patient.referral_count == 0)
        elif key == "consent":
            parts.append(Patient.consent_at.is_not(None) if value else Patient.consent_at.is_(None))
        elif key == "reachableBy":
            channels = [ContactChannel(str(v)) for v in value]
            parts.append(reachable(Purpose.MARKETING, channels))
        elif key == "inGroupChat":
            parts.append(in_groups(sorted({parse_id(v, key) for v in value})))
        elif key == "orderTotalMinFen":
            parts.append(Patient.order_total_fen >= value)
        elif key == "orderTotalMaxFen":
            parts.append(Patient.order_total_fen <= value)
    return and_(true(), *parts)
