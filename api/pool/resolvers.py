"""Root fields of the private pool: tags, events, scoring, segments, identity and metrics."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import strawberry
from strawberry.types import Info

from api.chain.rollup import by_region
from api.ids import parse_global_id, to_global_id
from api.node import Node
from api.pagination import (
    Connection,
    check_first,
    decode_cursor,
    held_connection,
    make_connection,
    ranked_connection,
)
from api.patients.resolvers import page_patients
from api.patients.types import Patient
from api.pool.inputs import EventInput, ScoringRulesInput, SegmentFilterInput, filter_to_json
from api.pool.types import (
    Bucket,
    Channel,
    Job,
    PoolMetrics,
    RecordEventsPayload,
    ScoringRule,
    ScoringRules,
    Tag,
    TaggingPayload,
    TagGroup,
)
from api.rows import RowType
from api.wecom.group_resolvers import check_group_filter
from auth.access_log import Action
from auth.guard import (
    Visibility,
    event_scope,
    field_visibility,
    require,
    require_patient_scope,
    require_unmasked,
)
from auth.principal import Principal
from auth.reasons import check_grant, check_health, grants, health_conditions_scope
from domain.errors import BadInput, Conflict, Forbidden, NotFound
from domain.patients.models import FieldGroup
from domain.patients.models import Patient as PatientRow
from domain.patients.repository import PatientFilter, PatientRepository
from domain.patients.scope import PatientScope
from domain.pool import identity
from domain.pool.metrics import pool_figures
from domain.pool.models import Channel as ChannelRow
from domain.pool.models import ChannelKind
from domain.pool.models import Segment as SegmentRow
from domain.pool.models import Tag as TagRow
from domain.pool.models import TagGroup as TagGroupRow
from domain.pool.repository import PoolRepository, compile_filter
from domain.pool.segments import tag_ids, validate
from domain.pool.service import NewEvent, PoolService
from domain.pool.tags import TagService


def sees_health(principal: Principal) -> bool:
    return field_visibility(principal, FieldGroup.HEALTH) is Visibility.FULL


async def _tag(info: Info, tag_id: strawberry.ID) -> tuple[TagRow, TagGroupRow]:
    principal = await info.context.principal()
    tid = parse_global_id(tag_id, "Tag", "tagId")
    row = await PoolRepository(info.context.session).tag_with_group(tid)
    if row is None or (row[1].is_health and not sees_health(principal)):
        raise NotFound("no such tag", field="tagId")
    return row[0], row[1]


async def _visible_tags(info: Info, tag_id: uuid.UUID | None = None) -> Sequence[Any]:
    """Tags with their groups, without the health groups for a caller who may not see them."""
    principal = await info.context.principal()
    require(principal, "tags", "read")
    return await PoolRepository(info.context.session).tags(
        with_health=sees_health(principal), tag_id=tag_id
    )


async def tags(info: Info, first: int | None = None, after: str | None = None) -> Connection[Tag]:
    rows = await _visible_tags(info)
    found = [((g.name, t.name, str(t.id)), Tag.of(t, _group=g)) for t, g in rows]
    return held_connection(found, 3, first, after)


async def tag(info: Info, id: strawberry.ID) -> Tag:
    """One tag by id (for `node(id:)`), hidden like in `tags` when it reveals health data."""
    found = await _visible_tags(info, parse_global_id(id, "Tag"))
    row = found[0] if found else None
    if row is None:
        raise NotFound("no such node")
    return Tag.of(row[0], _group=row[1])


async def tag_groups(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[TagGroup]:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "tags", "read")
    groups = await PoolRepository(ctx.session).tag_groups(with_health=sees_health(principal))
    found = [((g.name,), TagGroup.of(g)) for g in groups]
    return held_connection(found, 1, first, after)


async def channels(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[Channel]:
    ctx = info.context
    await ctx.principal()
    rows = await PoolRepository(ctx.session).channels()
    return held_connection([((c.code,), Channel.of(c)) for c in rows], 1, first, after)


async def create_channel(info: Info, code: str, name: str, kind: str = "platform") -> Channel:
    ctx = info.context
    require(await ctx.principal(), "segments", "write")
    try:
        kind = str(ChannelKind(kind))
    except ValueError:
        raise BadInput("unknown channel kind", field="kind") from None
    if not (0 < len(code) <= 64) or not code.replace("_", "").replace("-", "").isalnum():
        raise BadInput("code must be 1-64 letters, digits, - or _", field="code")
    if await PoolRepository(ctx.session).channel_code_taken(code):
        raise Conflict("a channel with this code exists", field="code")
    row = ChannelRow(code=code, name=name.strip()[:200] or code, kind=kind)
    ctx.session.add(row)
    await ctx.session.flush()
    return Channel.of(row)


async def create_tag_group(info: Info, name: str, is_health: bool = False) -> TagGroup:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "tags", "write")
    if is_health and not sees_health(principal):
        raise Forbidden("not allowed to create health tag groups")
    return TagGroup.of(await TagService(ctx.session).create_group(name, is_health))


async def create_tag(
    info: Info, group_id: strawberry.ID, name: str, auto_rule: SegmentFilterInput | None = None
) -> Tag:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "tags", "write")
    group = await PoolRepository(ctx.session).tag_group(
        parse_global_id(group_id, "TagGroup", "groupId")
    )
    if group is None or (group.is_health and not sees_health(principal)):
        raise NotFound("no such tag group", field="groupId")
    rule = filter_to_json(auto_rule) if auto_rule is not None else None
    if rule is not None:
        await _check_filter(ctx.session, principal, rule)
    tag = await TagService(ctx.session).create_tag(group, name, rule)
    return Tag.of(tag, _group=group)


def _patient_ids(values: list[strawberry.ID]) -> list[uuid.UUID]:
    return [parse_global_id(v, "Patient", "patientIds") for v in values]


async def _tagging(
    info: Info, tag_id: strawberry.ID, patient_ids: list[strawberry.ID]
) -> tuple[TagService, TagRow, PatientScope, list[uuid.UUID]]:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "tags", "write")
    scope = require_patient_scope(principal, ctx.trail, "write", Action.UPDATE)
    tag, group = await _tag(info, tag_id)
    ids = _patient_ids(patient_ids)
    if group.is_health:  # a health tag is health data: the care/reason gate, as for writes
        rows = await PatientRepository(ctx.session).get_many(scope, ids)
        await check_health(ctx.session, principal, ctx.trail, list(rows.values()), Action.UPDATE)
    ctx.trail.changed(Action.UPDATE, ids)
    return TagService(ctx.session), tag, scope, ids


async def tag_patients(
    info: Info, tag_id: strawberry.ID, patient_ids: list[strawberry.ID]
) -> TaggingPayload:
    service, tag, scope, ids = await _tagging(info, tag_id, patient_ids)
    return TaggingPayload(added=await service.tag(tag, scope, ids), removed=0)


async def untag_patients(
    info: Info, tag_id: strawberry.ID, patient_ids: list[strawberry.ID]
) -> TaggingPayload:
    service, tag, scope, ids = await _tagging(info, tag_id, patient_ids)
    return TaggingPayload(added=0, removed=await service.untag(tag, scope, ids))


async def apply_auto_tag(info: Info, tag_id: strawberry.ID) -> TaggingPayload:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "tags", "write")
    require(principal, "patients:chain", "write", "automatic tags run over the whole chain")
    tag, group = await _tag(info, tag_id)
    service = TagService(ctx.session)
    # A rule over health tags reads health data, a tag of a health group writes it: either
    # way it runs over the caller's own care only (the rest keep the tag as it is).
    health = group.is_health or (
        tag.auto_rule is not None and await service.mentions_health(tag.auto_rule)
    )
    within = health_conditions_scope(principal) if health else None
    added, removed = await service.apply_auto_tag(tag, within)
    return TaggingPayload(added=added, removed=removed)


async def record_events(info: Info, events: list[EventInput]) -> RecordEventsPayload:
    """Staff record events for patients in their scope; a service token with events:write
    (a mini-program backend) for any patient of its tenant."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "events", "write")
    scope = event_scope(principal, ctx.trail)
    ids = [parse_global_id(e.patient_id, "Patient", "patientId") for e in events]
    patients = await PatientRepository(ctx.session).follow_many(scope, ids)
    if set(ids) - set(patients):
        raise NotFound("one or more patients do not exist", field="patientId")
    result = await PoolService(ctx.session, principal.subject).record_events(
        [
            NewEvent(e.client_event_id, patients[pid], str(e.type), e.occurred_at, e.source or "")
            for e, pid in zip(events, ids, strict=True)
        ]
    )
    ctx.trail.changed(Action.UPDATE, sorted({p.id for p in patients.values()}))
    return RecordEventsPayload(inserted=result.inserted, duplicates=result.duplicates)


async def scoring_rules(info: Info) -> ScoringRules:
    ctx = info.context
    require(await ctx.principal(), "segments", "read")
    rules = await PoolService(ctx.session, "").rules()
    return ScoringRules(
        rules=[
            ScoringRule(event_type=t, points=r.points, cap=r.cap, cap_period_days=r.cap_period_days)
            for t, r in sorted(rules.by_type.items())
        ],
        idle_days=rules.idle_days,
        idle_points=rules.idle_points,
        threshold=rules.threshold,
    )


async def set_scoring_rules(info: Info, input: ScoringRulesInput) -> Job:
    """Replace the rules; the tenant is rescored in the background (see `job`)."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "scoring", "write")
    job = await PoolService(ctx.session, principal.subject).set_rules(
        [(str(r.event_type), r.points, r.cap, r.cap_period_days) for r in input.rules],
        (input.idle_days, input.idle_points, input.threshold),
    )
    ctx.after_commit(lambda: ctx.app.jobs.start(job, principal.subject))
    return Job.of(job)


async def job(info: Info, id: strawberry.ID) -> Job:
    ctx = info.context
    require(await ctx.principal(), "segments", "read")
    row = await PoolRepository(ctx.session).job(parse_global_id(id, "Job"))
    if row is None:
        raise NotFound("no such job")
    return Job.of(row)


async def change_stage(
    info: Info, patient_id: strawberry.ID, stage: str, reason: str = ""
) -> Patient:
    ctx = info.context
    principal = await ctx.principal()
    scope = require_patient_scope(principal, ctx.trail, "write", Action.UPDATE)
    row = await PatientRepository(ctx.session).follow(
        scope, parse_global_id(patient_id, "Patient", "patientId")
    )
    if row is None:
        raise NotFound("no such patient")
    try:
        await PoolService(ctx.session, principal.subject).change_stage(row, stage, reason)
    except ValueError:
        raise BadInput("unknown stage", field="stage") from None
    ctx.trail.changed(Action.UPDATE, [row.id])
    return Patient.of(row, _ctx=ctx)


async def merge_patients(info: Info, keep_id: strawberry.ID, merge_id: strawberry.ID) -> Patient:
    ctx = info.context
    principal = await ctx.principal()
    scope = require_patient_scope(principal, ctx.trail, "write", Action.MERGE)
    require(principal, "fields:contact", "write")
    repo = PatientRepository(ctx.session)
    keep = await repo.get(scope, parse_global_id(keep_id, "Patient", "keepId"))
    other = await repo.get(scope, parse_global_id(merge_id, "Patient", "mergeId"))
    if keep is None or other is None:
        raise NotFound("no such patient")
    await _check_merged_health(ctx, principal, keep, other)
    await identity.merge(ctx.session, await ctx.cipher(), keep, other)
    await PoolService(ctx.session, principal.subject).rescore(
        keep, await PoolService(ctx.session, "").rules()
    )
    ctx.trail.changed(Action.MERGE, [keep.id, other.id], ["contact", "health"])
    return Patient.of(keep, _ctx=ctx)


async def _check_merged_health(
    ctx: Any, principal: Principal, keep: PatientRow, other: PatientRow
) -> None:
    """A merge moves the merged record's health fields and tags onto the kept one. Where the
    kept record's health data opens to the caller, the merged one's must open too (their own
    care, or a purpose they stated for it, logged as part of the merge), or merging would
    show it to them without a reason: REASON_REQUIRED. Asked whatever the records hold, so
    the answer tells nothing of whether the merged record has health data."""
    if field_visibility(principal, FieldGroup.HEALTH) is Visibility.DENIED:
        return  # a role that never reads health data learns none by merging
    given = await grants(ctx.session, principal, [keep, other])
    if given[keep.id].opens:
        check_grant(ctx.trail, other.id, given[other.id], Action.MERGE)


@strawberry.type(
    description="Records that look like one person (same phone, WeChat, WeCom or national id)."
)
class DuplicateGroup:
    matched_on: str = strawberry.field(
        description="phone, wechat_id, wecom_external_id or national_id (the last only for "
        "roles that read health fields in full)."
    )
    patients: list[Patient] = strawberry.field(description="The records.")


async def possible_duplicates(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[DuplicateGroup]:
    ctx = info.context
    principal = await ctx.principal()
    scope = require_patient_scope(principal, ctx.trail, "read", Action.LIST)
    # Groups are made by equal phones and WeChat/WeCom ids: as telling as filtering by them.
    require_unmasked(principal, FieldGroup.CONTACT, "possibleDuplicates")
    # An equal national id is a health-group fact: only for roles that read it in full.
    names = [
        n
        for n in identity.MATCHED_ON
        if n != "national_id" or field_visibility(principal, FieldGroup.HEALTH) is Visibility.FULL
    ]
    # ... and, as a condition on health data, compared within the caller's own care only.
    narrowed = {"national_id": health_conditions_scope(principal)}

    async def fetch(n: int) -> list[identity.DuplicateGroup]:
        return await identity.possible_duplicates(ctx.session, scope, n, names, narrowed)

    async def count() -> int:
        return await identity.count_duplicate_groups(ctx.session, scope, names, narrowed)

    async def present(groups: list[identity.DuplicateGroup]) -> list[DuplicateGroup]:
        rows = await PatientRepository(ctx.session).get_many(
            scope, [pid for g in groups for pid in g.patient_ids]
        )
        ctx.trail.returned(Action.LIST, sorted(rows))
        return [
            DuplicateGroup(
                matched_on=g.matched_on,
                patients=[Patient.of(rows[p], _ctx=ctx) for p in g.patient_ids if p in rows],
            )
            for g in groups
        ]

    return await ranked_connection(fetch, present, count, first, after)


async def pool_metrics(info: Info) -> PoolMetrics:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "metrics", "read")
    scope = require_patient_scope(principal, ctx.trail, "read", Action.LIST)
    figures = await pool_figures(ctx.session, scope)

    def buckets(counts: Sequence[Any], as_branch: bool = False) -> list[Bucket]:
        return [
            Bucket(
                key=to_global_id("Branch", uuid.UUID(c.key)) if as_branch else c.key,
                period=c.period,
                count=c.count,
            )
            for c in counts
        ]

    def add(into: list[int], count: Any) -> None:
        into[0] += count.count

    regions = await by_region(
        ctx.session, [(uuid.UUID(c.key), c) for c in figures.by_branch], lambda: [0], add
    )
    return PoolMetrics(
        total=figures.total,
        by_region=[
            Bucket(key=to_global_id("Region", r.id), period=None, count=n[0]) for r, n in regions
        ],
        by_tier=buckets(figures.by_tier),
        by_stage=buckets(figures.by_stage),
        by_branch=buckets(figures.by_branch, as_branch=True),
        new_by_channel=buckets(figures.new_by_channel),
        score_distribution=buckets(figures.score_distribution),
    )


# --- segments ---


async def _check_filter(session: Any, principal: Principal, flt: dict[str, Any]) -> bool:
    """Refuse (never silently ignore) a filter on data the caller may not see; True when it
    names a health tag (a condition on health data: see `health_conditions_scope`)."""
    validate(flt)
    await check_group_filter(session, flt)
    flags = await TagService(session).health_flags(flt)
    if len(flags) != len(set(tag_ids(flt))):
        raise NotFound("a tag in the filter does not exist", field="filter")
    health = any(flags.values())
    if health and not sees_health(principal):
        raise Forbidden("not allowed to filter by health tags")
    return health


@dataclass(frozen=True)
class SegmentQuery:
    """A filter as the caller may evaluate it: their scope, the compiled filter, and (when it
    names a health tag) their own care, where alone a health condition is evaluated."""

    scope: PatientScope
    row_filter: PatientFilter


async def segment_members(
    info: Info, query: SegmentQuery, first: int | None, after: str | None
) -> Connection[Patient]:
    return await page_patients(info, query.scope, query.row_filter, first, after)


async def segment_count(info: Info, flt: dict[str, Any]) -> int:
    query = await _segment_query(info, flt)
    return await PatientRepository(info.context.session).count(query.scope, query.row_filter)


@strawberry.type(description="A saved, named filter over patients (人群分组), evaluated live.")
class Segment(RowType, Node):
    _row: strawberry.Private[SegmentRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Segment", self._row.id))

    name: str = strawberry.field(description="Name.")
    filter: strawberry.scalars.JSON = strawberry.field(
        description="The filter, as stored (ids are raw)."
    )

    @strawberry.field(description="How many patients match now, within your scope.")
    async def count(self, info: Info) -> int:
        return await segment_count(info, self._row.filter)

    @strawberry.field(description="The patients who match now, within your scope.")
    async def members(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Patient]:
        return await segment_members(
            info, await _segment_query(info, self._row.filter), first, after
        )


async def _segment_query(info: Info, flt: dict[str, Any]) -> SegmentQuery:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "segments", "read")
    health = await _check_filter(ctx.session, principal, flt)
    scope = require_patient_scope(principal, ctx.trail, "read", Action.LIST)
    clauses = [compile_filter(flt, datetime.now(UTC))]
    if health:
        clauses.append(health_conditions_scope(principal).clause())
    return SegmentQuery(scope, PatientFilter(extra=tuple(clauses)))


@strawberry.type(description="A filter tried before saving: count and members.")
class SegmentPreview:
    _filter: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="How many patients match, within your scope.")
    async def count(self, info: Info) -> int:
        return await segment_count(info, self._filter)

    @strawberry.field(description="The patients who match, within your scope.")
    async def members(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Patient]:
        return await segment_members(info, await _segment_query(info, self._filter), first, after)


async def preview_segment(info: Info, filter: SegmentFilterInput) -> SegmentPreview:
    flt = filter_to_json(filter)
    await _segment_query(info, flt)
    return SegmentPreview(_filter=flt)


async def segments(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[Segment]:
    ctx = info.context
    require(await ctx.principal(), "segments", "read")
    limit = check_first(first)
    key = decode_cursor(after, 1)
    repo = PoolRepository(ctx.session)
    rows = list(await repo.segments(None if key is None else key[0], limit + 1))
    has_next = len(rows) > limit
    rows = rows[:limit]

    async def count() -> int:
        return await repo.count_segments()

    return make_connection([Segment.of(r) for r in rows], [[r.name] for r in rows], has_next, count)


async def segment(info: Info, id: strawberry.ID) -> Segment:
    ctx = info.context
    require(await ctx.principal(), "segments", "read")
    row = await PoolRepository(ctx.session).segment(parse_global_id(id, "Segment"))
    if row is None:
        raise NotFound("no such segment")
    return Segment.of(row)


async def create_segment(info: Info, name: str, filter: SegmentFilterInput) -> Segment:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "segments", "write")
    flt = filter_to_json(filter)
    await _check_filter(ctx.session, principal, flt)
    name = name.strip()
    if not (0 < len(name) <= 100):
        raise BadInput("name must be 1-100 characters", field="name")
    if await PoolRepository(ctx.session).segment_name_taken(name):
        raise Conflict("a segment with this name exists", field="name")
    row = SegmentRow(name=name, filter=flt, created_by=principal.subject)
    ctx.session.add(row)
    await ctx.session.flush()
    return Segment.of(row)
