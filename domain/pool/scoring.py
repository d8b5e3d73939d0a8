"""Lead scoring: a pure function of a patient's events, the tenant's rules and a moment.

The score depends only on the *set* of events (deduplicated by the client's event id) and the
moment it is computed for, never on arrival order, so late, repeated or out-of-order events
give the same score as in-order ones. Rules: points per event type, an optional cap per
period (e.g. reading articles: 1 point each, at most 5 a day), and decay: every full idle
period (default 7 days) without an event costs `idle_points` (default −10). Scores do not go
below zero.

The explanation is a ledger: the score is always the sum of its lines. A type's line holds its
points after its cap; when decay would take the sum below zero, a `floor` line gives back
exactly what lifts it to zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from domain.pool.models import EventType

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Rule:
    points: int
    cap: int | None = None
    cap_period_days: int = 1


@dataclass(frozen=True)
class Rules:
    by_type: dict[str, Rule]
    idle_days: int = 7
    idle_points: int = -10
    threshold: int = 60


# The default table of DESIGN.md: read news 1–5 points (1 each, at most 5 a day), download
# material 10, sign up for an event 10, attend an event 50, attend a live stream 60, frequent
# interaction 20, a week without interaction −10; qualified from 60 points.
DEFAULT_RULES = Rules(
    by_type={
        EventType.READ_ARTICLE: Rule(1, cap=5, cap_period_days=1),
        EventType.DOWNLOAD_MATERIAL: Rule(10),
        EventType.EVENT_SIGNUP: Rule(10),
        EventType.EVENT_ATTENDED: Rule(50),
        EventType.LIVE_STREAM_ATTENDED: Rule(60),
        EventType.INTERACTION: Rule(20),
        EventType.WENT_QUIET: Rule(0),
    }
)


@dataclass(frozen=True)
class ScoredEvent:
    client_event_id: str
    type: str
    occurred_at: datetime


@dataclass
class Explanation:
    score: int
    lines: list[tuple[str, int, int]] = field(default_factory=list)  # (what, count, points)
    last_event_at: datetime | None = None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def score(events: Iterable[ScoredEvent], rules: Rules, as_of: datetime) -> Explanation:
    unique = {e.client_event_id: e for e in events}
    ordered = sorted(unique.values(), key=lambda e: (_aware(e.occurred_at), e.client_event_id))
    as_of = _aware(as_of)
    ordered = [e for e in ordered if _aware(e.occurred_at) <= as_of]
    # points per (type, period bucket), capped per bucket
    buckets: dict[tuple[str, int], int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for e in ordered:
        rule = rules.by_type.get(e.type)
        if rule is None:
            continue
        counts[e.type] += 1
        bucket = (_aware(e.occurred_at) - EPOCH).days // max(rule.cap_period_days, 1)
        buckets[(e.type, bucket)] += rule.points
    per_type: dict[str, int] = defaultdict(int)
    for (etype, _bucket), points in buckets.items():
        cap = rules.by_type[etype].cap
        per_type[etype] += min(points, cap) if cap is not None else points
    explanation = Explanation(score=0)
    for etype in sorted(per_type):
        explanation.lines.append((etype, counts[etype], per_type[etype]))
    # decay: full idle periods in each gap between events and after the last one
    idle = timedelta(days=rules.idle_days)
    idle_periods = 0
    times = [_aware(e.occurred_at) for e in ordered]
    for start, end in zip(times, [*times[1:], as_of], strict=False):
        idle_periods += int((end - start) / idle)
    if idle_periods:
        explanation.lines.append(("idle", idle_periods, idle_periods * rules.idle_points))
    total = sum(points for _what, _n, points in explanation.lines)
    if total < 0:
        explanation.lines.append(("floor", 1, -total))
    explanation.score = sum(points for _what, _n, points in explanation.lines)
    explanation.last_event_at = times[-1] if times else None
    return explanation


def rules_from_rows(
    rows: Sequence[tuple[str, int, int | None, int]], settings: tuple[int, int, int] | None
) -> Rules:
    """Rules from stored rows (event_type, points, cap, cap_period_days) and settings
    (idle_days, idle_points, threshold); the defaults where nothing is stored."""
    if not rows and settings is None:
        return DEFAULT_RULES
    by_type = {t: Rule(p, c, d) for t, p, c, d in rows} or DEFAULT_RULES.by_type
    idle_days, idle_points, threshold = settings or (7, -10, 60)
    return Rules(by_type, idle_days, idle_points, threshold)
