"""Merges keep the books (issue 24): chain metrics after merges against the oracle of
tests/care/test_chain_metrics.py applied to the history as one person per merged pair (their
visits and orders together, the earliest of each the first); pool metrics drop by exactly the
retired records; stored referral figures stay exact; the retired id answers NOT_FOUND with
mergedInto (only for a caller who may see the kept record) and calls naming it act on the kept
record; referral trees through a merged node. On SQLite and PostgreSQL."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from api.context import AppState
from api.ids import parse_global_id, to_global_id
from domain.care.models import OrderStatus, VisitStatus
from domain.patients.models import Patient
from domain.referrals import figures
from domain.referrals.tree import is_ancestor_or_self
from tenancy.session import bind_tenant
from tests.care.test_chain_metrics import METRICS, NOW, History, oracle, seed
from tests.care.test_referral_figures import TREE, Chain, assert_exact, expected
from tests.support import World, build_world, codes, gql, ok, sign_in

MERGE = "mutation($k: ID!, $m: ID!) { mergePatients(keepId: $k, mergeId: $m) { id } }"
POOL = """{ poolMetrics { total byTier { key count } byStage { key count }
  byBranch { key count } scoreDistribution { key count } } }"""
PATIENT = "query($id: ID!) { patient(id: $id) { id } }"
PERIODS = [
    (NOW - timedelta(days=365), NOW),
    (NOW - timedelta(days=500), NOW - timedelta(days=200)),
    (NOW - timedelta(days=730), NOW - timedelta(days=365)),
    (NOW - timedelta(days=90), NOW - timedelta(days=30)),
]


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"mb-{unique}")


def as_one(h: History, into: dict[uuid.UUID, uuid.UUID]) -> History:
    """The history with each retired record's rows on the kept one, the earliest arrived
    visit and the earliest paid order of each person their first."""
    m = lambda pid: into.get(pid, pid)  # noqa: E731
    out = History(
        joined=dict(h.joined),
        branch=dict(h.branch),
        merged=h.merged | set(into),
        referred={m(p) for p in h.referred},
    )
    visits = [(m(p), s, at, f) for p, s, at, f in h.visits]
    firsts: dict[uuid.UUID, datetime] = {}
    for p, s, at, _ in visits:
        if s == VisitStatus.ARRIVED and at is not None:
            firsts[p] = min(firsts.get(p, at), at)
    out.visits = [(p, s, at, None if f is None else at == firsts[p]) for p, s, at, f in visits]
    orders = [(m(p), s, at, f, n) for p, s, at, f, n in h.orders]
    first_paid: dict[uuid.UUID, datetime] = {}
    for p, s, at, _, _ in orders:
        if s in (OrderStatus.PAID, OrderStatus.REFUNDED) and at is not None:
            first_paid[p] = min(first_paid.get(p, at), at)
    out.orders = [
        (p, s, at, None if f is None else at == first_paid[p], n) for p, s, at, f, n in orders
    ]
    return out


async def metrics(client: httpx.AsyncClient, token: str) -> list[dict]:
    answers = []
    for since, until in PERIODS:
        got = ok(
            await gql(
                client, METRICS, {"f": since.isoformat(), "t": until.isoformat()}, token=token
            )
        )["metrics"]
        answers.append(
            {"total": got["total"]}
            | {
                b["branch"]["code"]: b["figures"]
                for b in got["byBranch"]
                if any(v not in (0, "0.00") for v in b["figures"].values())
            }
        )
    return answers


def buckets(pool: dict, name: str) -> Counter[str]:
    return Counter({b["key"]: b["count"] for b in pool[name]})


async def test_every_figure_after_merges_equals_the_oracle(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    h = await seed(owner_state, world, n=120, seed=24)
    hq = await sign_in(client, world, "hq_admin")
    before = await metrics(client, hq)
    for answer, (since, until) in zip(before, PERIODS, strict=True):
        assert answer == oracle(h, since, until, None)
    pool_before = ok(await gql(client, POOL, token=hq))["poolMetrics"]

    # Pairs of live seeded records with visits or orders, not in one referral line (that
    # case has its own test below), some within a branch and some across branches.
    rng = random.Random(7)
    busy = {p for p, *_ in h.visits} | {p for p, *_ in h.orders}
    live = sorted(p for p in busy if p not in h.merged and p in h.joined)
    rng.shuffle(live)
    into: dict[uuid.UUID, uuid.UUID] = {}
    async with owner_state.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        while len(into) < 8 and len(live) >= 2:
            keep, other = live.pop(), live.pop()
            if await is_ancestor_or_self(session, keep, other) or await is_ancestor_or_self(
                session, other, keep
            ):
                continue
            into[other] = keep
        retired = {
            p.id: p for p in await session.scalars(select(Patient).where(Patient.id.in_(into)))
        }
    assert len(into) == 8
    assert len({h.branch[o] != h.branch[k] for o, k in into.items()}) == 2  # both kinds

    for other, keep in into.items():
        ok(
            await gql(
                client,
                MERGE,
                {"k": to_global_id("Patient", keep), "m": to_global_id("Patient", other)},
                token=hq,
            )
        )

    after = await metrics(client, hq)
    merged = as_one(h, into)
    for answer, (since, until) in zip(after, PERIODS, strict=True):
        assert answer == oracle(merged, since, until, None), (since, until)
    # Money never moves: revenue per period is the same before and after (321.00 stayed 0.00
    # before this fix); distinct-patient counts never grow past what they were.
    for old, new in zip(before, after, strict=True):
        assert new["total"]["revenue"] == old["total"]["revenue"]
        assert new["total"]["buyers"] <= old["total"]["buyers"]
        assert new["total"]["visitors"] <= old["total"]["visitors"]
    assert any(old != new for old, new in zip(before, after, strict=True))

    pool_after = ok(await gql(client, POOL, token=hq))["poolMetrics"]
    assert pool_after["total"] == pool_before["total"] - len(into)
    gone = list(retired.values())
    for name, key in (
        ("byTier", lambda p: p.pool_tier),
        ("byStage", lambda p: p.lifecycle_stage),
        ("byBranch", lambda p: to_global_id("Branch", p.home_branch_id)),
        ("scoreDistribution", lambda p: str(p.lead_score // 20 * 20)),
    ):
        want = buckets(pool_before, name) - Counter(key(p) for p in gone)
        assert buckets(pool_after, name) == +want, name

    async with owner_state.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        assert (await figures.check(session)).drifted == 0


async def test_the_retired_id_answers_not_found_and_names_the_kept_record(
    client: httpx.AsyncClient, world: World
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    manager = await sign_in(client, world, "branch_manager")  # works in b1 only
    keep, retired = world.gid("b2"), world.gid("b1")
    ok(await gql(client, MERGE, {"k": keep, "m": retired}, token=hq))

    answer = await gql(client, PATIENT, {"id": retired}, token=hq)
    assert codes(answer) == ["NOT_FOUND"]
    assert answer["errors"][0]["extensions"]["mergedInto"] == keep
    # The manager sees the retired record's branch but not the kept record's.
    hidden = await gql(client, PATIENT, {"id": retired}, token=manager)
    assert codes(hidden) == ["NOT_FOUND"]
    assert "mergedInto" not in hidden["errors"][0]["extensions"]
    assert (
        hidden["errors"][0]["message"]
        == (
            await gql(client, PATIENT, {"id": to_global_id("Patient", uuid.uuid4())}, token=manager)
        )["errors"][0]["message"]
    )

    # Calls naming the retired id act on the kept record.
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    ok(
        await gql(
            client,
            "mutation($e: [EventInput!]!) { recordEvents(events: $e) { inserted } }",
            {
                "e": [
                    {
                        "clientEventId": "m-1",
                        "patientId": retired,
                        "type": "EVENT_ATTENDED",
                        "occurredAt": at,
                    }
                ]
            },
            token=hq,
        )
    )
    visit = ok(
        await gql(
            client,
            "mutation($p: ID!, $b: ID!, $at: DateTime!) { bookVisit(patientId: $p, "
            "branchId: $b, scheduledAt: $at) { patient { id } } }",
            {"p": retired, "b": world.branch_gid("b2"), "at": at},
            token=hq,
        )
    )["bookVisit"]
    assert visit["patient"]["id"] == keep
    shown = ok(
        await gql(
            client,
            "query($id: ID!) { patient(id: $id) { leadScore lastInteractionAt } }",
            {"id": keep},
            token=hq,
        )
    )["patient"]
    assert shown["leadScore"] > 0 and shown["lastInteractionAt"] is not None
    # Merging a retired record again, or into one, is refused and writes nothing.
    again = await gql(client, MERGE, {"k": keep, "m": retired}, token=hq)
    assert codes(again) == ["BAD_USER_INPUT"]
    assert again["errors"][0]["extensions"]["field"] == "mergeId"
    into_retired = await gql(client, MERGE, {"k": retired, "m": world.gid("hm")}, token=hq)
    assert codes(into_retired) == ["BAD_USER_INPUT"]
    assert into_retired["errors"][0]["extensions"]["field"] == "keepId"
    assert parse_global_id(keep, "Patient") != parse_global_id(retired, "Patient")


async def test_referral_trees_through_a_merged_node(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    chain = Chain(client, world, hq)
    await chain.patient("root")
    await chain.patient("a", "root")
    await chain.patient("b", "a")
    await chain.patient("other_root")
    await chain.patient("b2", "other_root")  # the same person as b, brought in twice
    await chain.patient("c", "b2")
    await chain.patient("d", "c")
    await chain.paid_order("b2", "321.00")
    await chain.paid_order("d", "99.99")
    # k was brought in by its own duplicate's record (k2 → k): one person cannot refer
    # themselves, so that link goes and k takes k2's referrer.
    await chain.patient("k2", "root")
    await chain.patient("k", "k2")
    await chain.patient("e", "k2")

    def tree_of(answer: dict) -> dict[str, tuple[int, int, str]]:
        name = {v: k for k, v in chain.ids.items()}
        return {
            name[n["patient"]["id"]]: (n["subtreeSize"], n["convertedCount"], n["convertedValue"])
            for n in answer["referralTree"]["nodes"]
        }

    ok(await gql(client, MERGE, {"k": chain.ids["b"], "m": chain.ids["b2"]}, token=hq))
    ok(await gql(client, MERGE, {"k": chain.ids["k"], "m": chain.ids["k2"]}, token=hq))
    await assert_exact(owner_state, world)
    assert await expected(owner_state, world)  # the oracle saw links

    got = tree_of(ok(await gql(client, TREE, {"p": chain.ids["root"]}, token=hq)))
    # root: a, b (with b2's payment), c, d (paid), k, e; b2 and k2 are gone from every tree.
    assert set(got) == {"root", "a", "b", "c", "d", "k", "e"}
    assert got["root"][:2] == (6, 2) and float(got["root"][2]) == 420.99
    assert got["a"][:2] == (3, 2) and float(got["a"][2]) == 420.99
    assert got["b"][:2] == (2, 1) and float(got["b"][2]) == 99.99
    assert got["k"][:2] == (1, 0)
    # The other root lost its only referral: that person's referrer is a (b's, kept).
    lone = tree_of(ok(await gql(client, TREE, {"p": chain.ids["other_root"]}, token=hq)))
    assert set(lone) == {"other_root"} and lone["other_root"][0] == 0
    # The retired id names the kept record's tree.
    via_retired = tree_of(ok(await gql(client, TREE, {"p": chain.ids["b2"]}, token=hq)))
    assert set(via_retired) == {"b", "c", "d"}
