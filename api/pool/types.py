"""GraphQL types of the private pool."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.ids import to_global_id
from api.imports.report import import_report, rejected_file
from api.imports.types import ImportReport
from api.node import Node
from api.rows import RowType
from api.wecom.group_figures import GroupChatFigures, group_chat_figures
from domain.imports.service import KIND as IMPORT_KIND
from domain.pool.models import Channel as ChannelRow
from domain.pool.models import Job as JobRow
from domain.pool.models import StageChange as StageChangeRow
from domain.pool.models import Tag as TagRow
from domain.pool.models import TagGroup as TagGroupRow


@strawberry.type(
    description="A group of tags (标签组); health groups are visible only to roles "
    "that may read health data."
)
class TagGroup(RowType):
    _row: strawberry.Private[TagGroupRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("TagGroup", self._row.id))

    name: str = strawberry.field(
        description="Group name, e.g. 项目 (treatment), 转化 (conversion)."
    )

    is_health: bool = strawberry.field(
        description="True when its tags are derived from health data."
    )


@strawberry.type(description="A label on patients (标签), manual or automatic.")
class Tag(RowType, Node):
    _row: strawberry.Private[TagRow]
    _group: strawberry.Private[TagGroupRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Tag", self._row.id))

    name: str = strawberry.field(
        description="Tag name, e.g. 正畸 (orthodontics), 未转化 (not converted)."
    )

    @strawberry.field(description="Its group.")
    def group(self) -> TagGroup:
        return TagGroup.of(self._group)

    auto_rule: JSON | None = strawberry.field(
        description="The segment rule of an automatic tag (null: manual)."
    )


@strawberry.type(
    description="Where patients come from (渠道): platform, campaign, event, "
    "referral or channel QR code (渠道活码)."
)
class Channel(RowType):
    _row: strawberry.Private[ChannelRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Channel", self._row.id))

    code: str = strawberry.field(
        description="Code patients carry in sourceChannel, e.g. xiaohongshu."
    )

    name: str = strawberry.field(description="Display name, e.g. 小红书.")
    kind: str = strawberry.field(
        description="platform, campaign, offline_event, referral or qr_code."
    )


@strawberry.type(description="One line of a score's explanation.")
class ScoreLine:
    what: str = strawberry.field(
        description="Event type, `idle` for inactivity decay, or `floor` for what lifts a "
        "negative sum to zero (scores do not go below zero)."
    )
    count: int = strawberry.field(description="How many events (or idle periods).")
    points: int = strawberry.field(description="Points they gave, after caps.")


@strawberry.type(description="A lead score (线索评分) and how it came about.")
class ScoreExplanation:
    score: int = strawberry.field(description="The score now: always the sum of the lines.")
    lines: list[ScoreLine] = strawberry.field(description="Which events gave which points.")


@strawberry.type(description="A change of lifecycle stage: who, when, why.")
class StageChange(RowType):
    _row: strawberry.Private[StageChangeRow]

    from_stage: str = strawberry.field(description="Stage before.")
    to_stage: str = strawberry.field(description="Stage after.")
    changed_by: str = strawberry.field(
        description="Who changed it: user:<id>, service:<id> or system."
    )

    reason: str = strawberry.field(description="Why.")
    occurred_at: datetime = strawberry.field(description="When.")


@strawberry.type(description="A background job (rescoring) and its progress.")
class Job(RowType, Node):
    _row: strawberry.Private[JobRow]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Job", self._row.id))

    kind: str = strawberry.field(description="What it does, e.g. rescore.")
    status: str = strawberry.field(description="running, done or failed.")
    total: int = strawberry.field(description="Patients to process.")
    done: int = strawberry.field(description="Patients processed so far.")

    @strawberry.field(
        description="For an import job (HQ): its counts and every rejected row; null for "
        "other kinds."
    )
    async def import_report(self, info: Info) -> ImportReport | None:
        if self._row.kind != IMPORT_KIND:
            return None
        return await import_report(info, self._row.id)

    @strawberry.field(
        description="For an import job (HQ): the rejected rows as CSV (the file's header and "
        "a reason column) to fix and import again. Personal data: made when asked, never "
        "stored in the clear, and logged as an export."
    )
    async def rejected_rows_csv(self, info: Info) -> str | None:
        if self._row.kind != IMPORT_KIND:
            return None
        return await rejected_file(info, self._row.id)


@strawberry.type(description="Result of recordEvents.")
class RecordEventsPayload:
    inserted: int = strawberry.field(description="New events stored.")
    duplicates: int = strawberry.field(description="Events already known (by clientEventId).")


@strawberry.type(description="Result of tagPatients / untagPatients / applyAutoTag.")
class TaggingPayload:
    added: int = strawberry.field(description="Patients newly tagged.")
    removed: int = strawberry.field(description="Patients untagged.")


@strawberry.type(description="Points for one event type.")
class ScoringRule:
    event_type: str = strawberry.field(description="The event type.")
    points: int = strawberry.field(description="Points per event.")
    cap: int | None = strawberry.field(description="Most points per period (null: no cap).")
    cap_period_days: int = strawberry.field(description="Length of the cap period in days.")


@strawberry.type(description="A tenant's scoring rules as stored (or the defaults).")
class ScoringRules:
    rules: list[ScoringRule] = strawberry.field(description="Points per event type.")
    idle_days: int = strawberry.field(description="Length of an idle period.")
    idle_points: int = strawberry.field(description="Points per full idle period.")
    threshold: int = strawberry.field(description="Qualification threshold.")


@strawberry.type(description="A count under one key.")
class Bucket:
    key: str = strawberry.field(description="Tier, stage, channel, branch id or score range.")
    period: str | None = strawberry.field(description="Month (YYYY-MM) for time series.")
    count: int = strawberry.field(description="How many patients.")


@strawberry.type(description="Pool metrics for HQ (私域池指标), within your scope.")
class PoolMetrics:
    total: int = strawberry.field(description="Patients in the pool.")
    by_tier: list[Bucket] = strawberry.field(description="Pool size by tier.")
    by_stage: list[Bucket] = strawberry.field(description="Pool size by lifecycle stage.")
    by_branch: list[Bucket] = strawberry.field(description="Pool size by home branch (id).")
    by_region: list[Bucket] = strawberry.field(
        description="Pool size by region (id): the sum of its branches (branches in no "
        "region are in none)."
    )
    new_by_channel: list[Bucket] = strawberry.field(
        description="New patients per channel per month, last 12 months."
    )
    score_distribution: list[Bucket] = strawberry.field(
        description="Lead scores in ranges of 20 (key: lower bound)."
    )

    @strawberry.field(description="Customer groups (社群): members and their activity.")
    async def group_chats(self, info: Info) -> GroupChatFigures:
        return await group_chat_figures(info)
