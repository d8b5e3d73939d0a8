"""GraphQL inputs of the private pool: the segment filter language, events, scoring rules."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.utils.str_converters import to_camel_case

from api.consent.types import ContactChannelEnum
from api.ids import parse_global_id
from api.patients.types import Gender, LifecycleStage, PoolTier
from domain.care.orders import to_fen
from domain.pool.models import EventType

EventTypeEnum = strawberry.enum(
    EventType,
    description="What a patient did: read an article, downloaded material, signed up for or "
    "attended an event, attended a live stream (直播), interacted, or went quiet.",
)


@strawberry.input(
    description="A segment filter (人群筛选). Every field given must hold; `and`/`or`/`not` "
    "combine filters. Dates: `before` is strictly earlier, `after` at or later; a patient "
    "without that date never matches."
)
class SegmentFilterInput:
    and_: list[SegmentFilterInput] | None = strawberry.field(
        default=None, name="and", description="All of these."
    )
    or_: list[SegmentFilterInput] | None = strawberry.field(
        default=None, name="or", description="Any of these."
    )
    not_: SegmentFilterInput | None = strawberry.field(
        default=None, name="not", description="Not this."
    )
    tags_any: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Has at least one of these tags."
    )
    tags_all: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Has every one of these tags."
    )
    score_min: int | None = strawberry.field(default=None, description="Lead score ≥ this.")
    score_max: int | None = strawberry.field(default=None, description="Lead score ≤ this.")
    stages: list[LifecycleStage] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Lifecycle stage is one of these."
    )
    tiers: list[PoolTier] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Pool tier is one of these."
    )
    channels: list[str] | None = strawberry.field(
        default=None, description="Source channel code is one of these."
    )
    branch_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Home branch is one of these."
    )
    genders: list[Gender] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Gender is one of these."
    )
    age_min: int | None = strawberry.field(default=None, description="Age ≥ this (birth year).")
    age_max: int | None = strawberry.field(default=None, description="Age ≤ this (birth year).")
    last_interaction_before: datetime | None = strawberry.field(
        default=None, description="Last interaction strictly before this moment."
    )
    last_interaction_after: datetime | None = strawberry.field(
        default=None, description="Last interaction at or after this moment."
    )
    last_visit_before: datetime | None = strawberry.field(
        default=None, description="Last visit (就诊) strictly before this moment."
    )
    last_visit_after: datetime | None = strawberry.field(
        default=None, description="Last visit at or after this moment."
    )
    created_before: datetime | None = strawberry.field(
        default=None, description="Entered the pool strictly before this moment."
    )
    created_after: datetime | None = strawberry.field(
        default=None, description="Entered the pool at or after this moment."
    )
    has_referred: bool | None = strawberry.field(
        default=None, description="Has (true) or has not (false) referred anyone (转介绍)."
    )
    consent: bool | None = strawberry.field(
        default=None, description="Has (true) or has not (false) consented to contact."
    )
    reachable_by: list[ContactChannelEnum] | None = strawberry.field(  # type: ignore[valid-type]
        default=None,
        description="Marketing consent (营销同意) in force on any of these channels.",
    )
    in_group_chat: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="A customer in any of these WeCom customer groups (社群) now (matched by "
        "WeCom external user id).",
    )
    order_total_min: Decimal | None = strawberry.field(
        default=None, description="Paid orders' total (net of refunds) ≥ this, yuan."
    )
    order_total_max: Decimal | None = strawberry.field(
        default=None, description="Paid orders' total (net of refunds) ≤ this, yuan."
    )


_ID_LISTS = {
    "tags_any": ("Tag", "tagsAny"),
    "tags_all": ("Tag", "tagsAll"),
    "branch_ids": ("Branch", "branchIds"),
    "in_group_chat": ("GroupChat", "inGroupChat"),
}


_YUAN = {"order_total_min": "orderTotalMinFen", "order_total_max": "orderTotalMaxFen"}


def filter_to_json(flt: SegmentFilterInput) -> dict[str, Any]:
    """Input → the stored JSON form (raw ids, camelCase keys) that domain/pool/segments reads."""
    out: dict[str, Any] = {}
    for name, value in vars(flt).items():
        if value is None or name.startswith("_"):
            continue
        if name in ("and_", "or_"):
            out[name.rstrip("_")] = [filter_to_json(f) for f in value]
        elif name == "not_":
            out["not"] = filter_to_json(value)
        elif name in _YUAN:
            # stored in fen, as the orders are (domain/pool/segments)
            out[_YUAN[name]] = to_fen(value, to_camel_case(name))
        elif name in _ID_LISTS:
            type_name, key = _ID_LISTS[name]
            out[key] = [str(parse_global_id(v, type_name, key)) for v in value]
        else:
            key = to_camel_case(name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, list):
                value = [str(v) for v in value]
            out[key] = value
    return out


@strawberry.input(description="One interaction event (互动事件).")
class EventInput:
    client_event_id: str = strawberry.field(
        description="Your own unique id for this event: sending it again changes nothing."
    )
    patient_id: strawberry.ID = strawberry.field(description="Who did it.")
    type: EventTypeEnum = strawberry.field(description="What they did.")  # type: ignore[valid-type]
    occurred_at: datetime = strawberry.field(
        description="When it happened (may arrive late or out of order; more than 5 minutes "
        "ahead of the server's clock is refused, with the whole batch)."
    )
    source: str | None = strawberry.field(
        default=None, description="Where it was recorded (mini-program page, article id…)."
    )


@strawberry.input(description="Points for one event type.")
class ScoringRuleInput:
    event_type: EventTypeEnum = strawberry.field(description="The event type.")  # type: ignore[valid-type]
    points: int = strawberry.field(description="Points per event (may be negative).")
    cap: int | None = strawberry.field(
        default=None, description="At most this many points per period (none: no cap)."
    )
    cap_period_days: int = strawberry.field(default=1, description="Length of the cap period.")


@strawberry.input(description="A tenant's lead-scoring rules (线索评分).")
class ScoringRulesInput:
    rules: list[ScoringRuleInput] = strawberry.field(description="Points per event type.")
    idle_days: int = strawberry.field(default=7, description="Length of an idle period.")
    idle_points: int = strawberry.field(
        default=-10, description="Points per full idle period without any event."
    )
    threshold: int = strawberry.field(
        default=60, description="Score at which a lead is qualified and handed to its branch."
    )
