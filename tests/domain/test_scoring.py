"""Lead scoring: DESIGN.md's default table on a scripted history, and order-independence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.pool.scoring import DEFAULT_RULES, ScoredEvent, score

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def ev(n: int, kind: str, at: datetime) -> ScoredEvent:
    return ScoredEvent(f"e{n}", kind, at)


def test_design_table_on_a_scripted_history() -> None:
    history = [
        # read news 1–5 points: 1 each, at most 5 a day (7 reads on day one give 5)
        *(ev(i, "read_article", T0 + timedelta(minutes=i)) for i in range(7)),
        ev(10, "read_article", T0 + timedelta(days=1)),  # a new day: 1 more
        ev(11, "download_material", T0 + timedelta(days=1, hours=1)),  # 10
        ev(12, "event_signup", T0 + timedelta(days=2)),  # 10
        ev(13, "event_attended", T0 + timedelta(days=3)),  # 50
        ev(14, "live_stream_attended", T0 + timedelta(days=4)),  # 60
        ev(15, "interaction", T0 + timedelta(days=5)),  # frequent interaction 20
    ]
    as_of = T0 + timedelta(days=5)
    result = score(history, DEFAULT_RULES, as_of)
    assert dict((w, p) for w, _n, p in result.lines) == {
        "read_article": 6,
        "download_material": 10,
        "event_signup": 10,
        "event_attended": 50,
        "live_stream_attended": 60,
        "interaction": 20,
    }
    assert result.score == 156
    # a week without interaction: −10; two full weeks: −20
    assert score(history, DEFAULT_RULES, as_of + timedelta(days=7)).score == 146
    assert score(history, DEFAULT_RULES, as_of + timedelta(days=14, hours=1)).score == 136
    assert score([], DEFAULT_RULES, as_of).score == 0


def test_never_below_zero_and_future_events_ignored() -> None:
    one = [ev(1, "download_material", T0)]
    assert score(one, DEFAULT_RULES, T0 + timedelta(days=70)).score == 0
    assert score(one, DEFAULT_RULES, T0 - timedelta(days=1)).score == 0


kinds = st.sampled_from(sorted(DEFAULT_RULES.by_type))
events = st.lists(
    st.builds(
        ScoredEvent,
        client_event_id=st.text(alphabet="abcdef0123", min_size=1, max_size=4),
        type=kinds,
        occurred_at=st.integers(0, 60 * 24 * 40).map(lambda m: T0 + timedelta(minutes=m)),
    ),
    max_size=40,
    unique_by=lambda e: e.client_event_id,
)


@settings(max_examples=300, deadline=None)
@given(events, st.randoms(use_true_random=False), st.integers(0, 20))
def test_late_duplicate_and_out_of_order_events_give_the_same_score(
    history: list[ScoredEvent], rnd: object, extra_days: int
) -> None:
    as_of = T0 + timedelta(days=41 + extra_days)
    in_order = score(sorted(history, key=lambda e: e.occurred_at), DEFAULT_RULES, as_of)
    shuffled = list(history)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    duplicated = shuffled + shuffled[: len(shuffled) // 2]  # delivered twice
    again = score(duplicated, DEFAULT_RULES, as_of)
    assert (again.score, again.lines) == (in_order.score, in_order.lines)


def test_one_interaction_forty_and_a_half_days_ago_is_a_ledger() -> None:
    """+20 for the interaction, five idle weeks −50, and the floor +30: the lines add up to 0."""
    as_of = T0 + timedelta(days=40, hours=12)
    result = score([ev(1, "interaction", T0)], DEFAULT_RULES, as_of)
    assert result.lines == [("interaction", 1, 20), ("idle", 5, -50), ("floor", 1, 30)]
    assert result.score == 0 == sum(p for _w, _n, p in result.lines)
    # No floor line where none applies (decay that leaves the sum at or above zero).
    near = score([ev(1, "interaction", T0)], DEFAULT_RULES, T0 + timedelta(days=14))
    assert near.lines == [("interaction", 1, 20), ("idle", 2, -20)]
    assert near.score == 0


KINDS = ["read_article", "download_material", "event_signup", "interaction", "went_quiet"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(KINDS), st.integers(min_value=0, max_value=200 * 24)),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=400 * 24),
)
def test_the_score_is_always_the_sum_of_its_lines(
    history: list[tuple[str, int]], hours_after: int
) -> None:
    events = [ev(i, kind, T0 + timedelta(hours=h)) for i, (kind, h) in enumerate(history)]
    result = score(events, DEFAULT_RULES, T0 + timedelta(hours=hours_after))
    assert result.score == sum(p for _w, _n, p in result.lines)
    assert result.score >= 0
    assert [w for w, _n, _p in result.lines].count("floor") == (
        1 if sum(p for w, _n, p in result.lines if w != "floor") < 0 else 0
    )
