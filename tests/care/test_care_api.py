"""Visits, orders, follow-ups, referrals, rewards and metrics through GraphQL, end to end, on a
small scripted chain whose figures are worked out by hand below."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.context import AppState
from api.ids import parse_global_id
from auth.access_log import AccessLogEntry
from tenancy.session import bind_tenant
from tests.support import World, build_world, codes, gql, ok, sign_in

CREATE = """mutation($i: CreatePatientInput!) { createPatient(input: $i) { patient {
  id referralCode lifecycleStage } } }"""
BOOK = """mutation($p: ID!, $b: ID!, $at: DateTime!, $d: ID) {
  bookVisit(patientId: $p, branchId: $b, scheduledAt: $at, doctorId: $d) { id status } }"""
ARRIVE = "mutation($id: ID!) { markArrived(id: $id) { status isFirstVisit arrivedAt } }"
ORDER = """mutation($p: ID!, $b: ID!, $l: [OrderLineInput!]!) {
  createOrder(patientId: $p, branchId: $b, lines: $l) { id total status } }"""
PAY = "mutation($id: ID!) { payOrder(id: $id) { status isFirstOrder net } }"
REFUND = """mutation($id: ID!, $a: Decimal!) { refundOrder(id: $id, amount: $a, reason: "r") {
  status total refunded net refunds { amount } } }"""
LINK = """mutation($p: ID!, $c: String!) {
  linkReferral(patientId: $p, referralCode: $c) { eligible } }"""
RULE = """mutation($i: RewardRuleInput!) { setRewardRule(input: $i) { id trigger threshold } }"""
REWARDS = (
    "query($p: ID!) { rewards(patientId: $p) { totalCount edges { node { "
    "status points coupon reason } } } }"
)
METRICS = """query($f: DateTime!, $t: DateTime!) { metrics(from: $f, to: $t) {
  total { leads visitedLeads leadToVisitRate firstVisits convertedVisitors visitors
    returnVisitors returnVisitRate buyers repeatBuyers repurchaseRate referredLeads
    referralRate revenue referredRevenue followUpsDue followUpsDone }
  byBranch { branch { code } figures { leads visitors returnVisitors revenue } } } }"""


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"c-{unique}")


async def _new_patient(
    client: httpx.AsyncClient, token: str, world: World, name: str, **extra: Any
) -> dict[str, Any]:
    data = ok(
        await gql(
            client,
            CREATE,
            {"i": {"name": name, "homeBranchId": world.branch_gid("b1"), **extra}},
            token=token,
        )
    )
    return data["createPatient"]["patient"]


async def _visit(client: httpx.AsyncClient, token: str, world: World, pid: str) -> dict:
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    visit = ok(
        await gql(
            client,
            BOOK,
            {"p": pid, "b": world.branch_gid("b1"), "at": at, "d": world.staff_gid("doctor")},
            token=token,
        )
    )["bookVisit"]
    return ok(await gql(client, ARRIVE, {"id": visit["id"]}, token=token))["markArrived"]


async def test_scripted_chain(client: httpx.AsyncClient, world: World, state: AppState) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    hq = await sign_in(client, world, "hq_admin")
    ok(await gql(client, RULE, {"i": {"trigger": "FIRST_VISIT", "points": 100}}, token=hq))
    ok(
        await gql(
            client,
            RULE,
            {"i": {"trigger": "REFERRED_COUNT", "threshold": 2, "coupon": "洁牙券"}},
            token=hq,
        )
    )
    referrer = ok(
        await gql(
            client,
            "query($id: ID!) { patient(id: $id) { referralCode } }",
            {"id": world.gid("b1")},
            token=hq,
        )
    )["patient"]
    code = referrer["referralCode"]
    # Referrer's own WeChat id, so the third sign-up is a self-referral.
    ok(
        await gql(
            client,
            'mutation($id: ID!) { updatePatient(id: $id, input: {wechatId: "wx-self"}) '
            "{ patient { id } } }",
            {"id": world.gid("b1")},
            token=hq,
        )
    )

    x = await _new_patient(client, hq, world, "转介绍甲", referralCode=code, phone="+8613900000001")
    y = await _new_patient(client, hq, world, "转介绍乙", referralCode=code.lower())
    # The referrer signing up again with their own WeChat id: a caller who can see them gets
    # them back (OneID); a health manager, who sees only their own patients, makes a new
    # record, and the referral is refused as a self-referral.
    again_self = ok(
        await gql(
            client,
            CREATE.replace("patient {", "existing patient {"),
            {"i": {"name": "自己", "homeBranchId": world.branch_gid("b1"), "wechatId": "wx-self"}},
            token=hq,
        )
    )["createPatient"]
    assert again_self["existing"] is True and again_self["patient"]["id"] == world.gid("b1")
    hm = await sign_in(client, world, "health_manager")
    z = await _new_patient(
        client,
        hm,
        world,
        "自己",
        referralCode=code,
        wechatId="wx-self",
        assignedStaffId=world.staff_gid("health_manager"),
    )
    plain = await _new_patient(client, hq, world, "自然流量")

    # x: first visit, then a return visit; y: first visit; z: first visit (self-referral).
    first = await _visit(client, hq, world, x["id"])
    assert first["isFirstVisit"] is True
    again = await _visit(client, hq, world, x["id"])
    assert again["isFirstVisit"] is False
    await _visit(client, hq, world, y["id"])
    await _visit(client, hq, world, z["id"])

    # Orders: x pays 2 × 1280.50 + 99.99 = 2660.99, refunds 100.01 then 60.98 → 2500.00 net;
    # x repurchases 300.00; plain pays 88.88 and is refunded in full.
    order = ok(
        await gql(
            client,
            ORDER,
            {
                "p": x["id"],
                "b": world.branch_gid("b1"),
                "l": [
                    {"service": "种植牙", "quantity": 2, "unitPrice": "1280.50"},
                    {"service": "洁牙", "unitPrice": "99.99"},
                ],
            },
            token=hq,
        )
    )["createOrder"]
    assert Decimal(order["total"]) == Decimal("2660.99")
    paid = ok(await gql(client, PAY, {"id": order["id"]}, token=hq))["payOrder"]
    assert paid["isFirstOrder"] is True
    ok(await gql(client, REFUND, {"id": order["id"], "a": "100.01"}, token=hq))
    too_much = await gql(client, REFUND, {"id": order["id"], "a": "2560.99"}, token=hq)
    assert codes(too_much) == ["BAD_USER_INPUT"]
    assert codes(await gql(client, REFUND, {"id": order["id"], "a": "1.001"}, token=hq)) == [
        "BAD_USER_INPUT"
    ]
    after = ok(await gql(client, REFUND, {"id": order["id"], "a": "60.98"}, token=hq))
    refunded = after["refundOrder"]
    assert (refunded["status"], refunded["refunded"], refunded["net"]) == (
        "PAID",
        "160.99",
        "2500.00",
    )
    second = ok(
        await gql(
            client,
            ORDER,
            {
                "p": x["id"],
                "b": world.branch_gid("b1"),
                "l": [{"service": "复查", "unitPrice": "300"}],
            },
            token=hq,
        )
    )["createOrder"]
    assert (
        ok(await gql(client, PAY, {"id": second["id"]}, token=hq))["payOrder"]["isFirstOrder"]
        is False
    )
    small = ok(
        await gql(
            client,
            ORDER,
            {
                "p": plain["id"],
                "b": world.branch_gid("b1"),
                "l": [{"service": "咨询", "unitPrice": "88.88"}],
            },
            token=hq,
        )
    )["createOrder"]
    ok(await gql(client, PAY, {"id": small["id"]}, token=hq))
    full = ok(await gql(client, REFUND, {"id": small["id"], "a": "88.88"}, token=hq))
    assert full["refundOrder"]["status"] == "REFUNDED"
    assert codes(await gql(client, REFUND, {"id": small["id"], "a": "0.01"}, token=hq)) == [
        "CONFLICT"
    ]

    # Segments filter by the same money, in yuan: x spent 2800.00 net, plain nothing net.
    by_spend = (
        "query($min: Decimal, $max: Decimal) { previewSegment(filter: "
        "{orderTotalMin: $min, orderTotalMax: $max}) { members { edges { node { id } } } } }"
    )

    async def spenders(low: str | None, high: str | None) -> set[str]:
        found = ok(await gql(client, by_spend, {"min": low, "max": high}, token=hq))
        return {e["node"]["id"] for e in found["previewSegment"]["members"]["edges"]}

    assert await spenders("2800.00", None) == {x["id"]}
    assert x["id"] not in await spenders("2800.01", None)
    assert x["id"] in await spenders(None, "2800.00") and x["id"] not in await spenders(
        None, "2799.99"
    )
    assert codes(await gql(client, by_spend, {"min": "12.345"}, token=hq)) == ["BAD_USER_INPUT"]

    # Rewards on the referrer: x and y each earned FIRST_VISIT, z was refused as a
    # self-referral, and two eligible referrals (x, y) met the REFERRED_COUNT rule once.
    rewards = ok(await gql(client, REWARDS, {"p": world.gid("b1")}, token=hq))["rewards"]
    assert rewards["totalCount"] == 4
    got = sorted(
        (r["status"], r["points"], r["coupon"], r["reason"])
        for r in (e["node"] for e in rewards["edges"])
    )
    assert got == [
        ("GRANTED", 0, "洁牙券", ""),
        ("GRANTED", 100, "", ""),
        ("GRANTED", 100, "", ""),
        ("REFUSED", 0, "", "self_referral"),
    ]

    # Follow-ups: each of the four arrivals made one post-visit task, due in 3 days.
    tasks = ok(
        await gql(
            client,
            "{ followUps(first: 50) { totalCount edges { node { kind dueAt automatic "
            "assignee { id } } } } }",
            token=hq,
        )
    )["followUps"]
    post = [e["node"] for e in tasks["edges"] if e["node"]["kind"] == "POST_VISIT"]
    assert len(post) == 4 and all(t["automatic"] for t in post)
    assert {t["assignee"]["id"] for t in post} == {world.staff_gid("doctor")}

    # Metrics for the period, by hand: leads = the world's 4 (three in b1, one in b2) and our
    # 4 new ones (x, y, z, plain); x, y and z visited; referred = 3; first visits 3 (x, y, z),
    # converted after it: x only; visitors 3, of whom x returned; buyers: x (twice), plain;
    # x's second order is a repurchase; revenue = 2500.00 + 300.00 + 0 (plain refunded in
    # full) = 2800.00, all of it from a referred patient.
    until = datetime.now(UTC) + timedelta(days=10)
    m = ok(await gql(client, METRICS, {"f": start.isoformat(), "t": until.isoformat()}, token=hq))[
        "metrics"
    ]
    total = m["total"]
    assert (total["leads"], total["visitedLeads"], total["referredLeads"]) == (8, 3, 3)
    assert total["leadToVisitRate"] == 0.375
    assert (total["firstVisits"], total["convertedVisitors"]) == (3, 1)
    assert (total["visitors"], total["returnVisitors"]) == (3, 1)
    assert (total["buyers"], total["repeatBuyers"]) == (2, 1)
    assert total["repurchaseRate"] == 0.5
    assert (total["revenue"], total["referredRevenue"]) == ("2800.00", "2800.00")
    assert (total["followUpsDue"], total["followUpsDone"]) == (4, 0)
    by_branch = {b["branch"]["code"]: b["figures"] for b in m["byBranch"]}
    assert by_branch == {
        "b1": {"leads": 7, "visitors": 3, "returnVisitors": 1, "revenue": "2800.00"},
        "b2": {"leads": 1, "visitors": 0, "returnVisitors": 0, "revenue": "0.00"},
    }

    # Closing one task moves completion.
    first_task = ok(
        await gql(client, "{ followUps(first: 1) { edges { node { id } } } }", token=hq)
    )["followUps"]["edges"][0]["node"]["id"]
    assert codes(
        await gql(
            client,
            'mutation($id: ID!) { completeFollowUp(id: $id, outcome: " ") { status } }',
            {"id": first_task},
            token=hq,
        )
    ) == ["BAD_USER_INPUT"]
    ok(
        await gql(
            client,
            'mutation($id: ID!) { completeFollowUp(id: $id, outcome: "回访完成") { status } }',
            {"id": first_task},
            token=hq,
        )
    )
    m = ok(await gql(client, METRICS, {"f": start.isoformat(), "t": until.isoformat()}, token=hq))[
        "metrics"
    ]
    assert m["total"]["followUpsDone"] == 1

    # A cycle is refused: x (referred by b1) cannot become b1's referrer.
    cycle = await gql(
        client,
        LINK,
        {"p": world.gid("b1"), "c": x["referralCode"]},
        token=hq,
    )
    assert codes(cycle) == ["CONFLICT"]
    # Nor may a patient get a second referrer.
    second_ref = await gql(
        client,
        LINK,
        {"p": y["id"], "c": x["referralCode"]},
        token=hq,
    )
    assert codes(second_ref) == ["CONFLICT"]

    # Every patient whose data a mutation touched is in the access log.
    async with state.sessions() as session:
        await bind_tenant(session, world.tenant_id)
        logged = {
            str(pid)
            for entry in await session.scalars(select(AccessLogEntry))
            for pid in json.loads(entry.patient_ids)
        }
    for p in (x, y, z, plain):
        assert str(parse_global_id(p["id"], "Patient")) in logged


async def test_another_tenants_real_rows_are_not_found(
    client: httpx.AsyncClient, world: World, owner_state: AppState, unique: str
) -> None:
    """Tenant A aims every care mutation at tenant B's real visit, order and follow-up."""
    other = await build_world(owner_state, f"o-{unique}")
    b = await sign_in(client, other, "hq_admin")
    visit = ok(
        await gql(
            client,
            BOOK,
            {
                "p": other.gid("b1"),
                "b": other.branch_gid("b1"),
                "at": datetime.now(UTC).isoformat(),
                "d": None,
            },
            token=b,
        )
    )["bookVisit"]["id"]
    order = ok(
        await gql(
            client,
            ORDER,
            {
                "p": other.gid("b1"),
                "b": other.branch_gid("b1"),
                "l": [{"service": "x", "unitPrice": "10"}],
            },
            token=b,
        )
    )["createOrder"]["id"]
    task = ok(
        await gql(
            client,
            "mutation($p: ID!) { createFollowUp(patientId: $p, kind: HEALTH_EDUCATION, "
            'dueAt: "2026-12-01T09:00:00+08:00") { id } }',
            {"p": other.gid("b1")},
            token=b,
        )
    )["createFollowUp"]["id"]
    a = await sign_in(client, world, "hq_admin")
    attempts = [
        (ARRIVE, {"id": visit}),
        ("mutation($id: ID!) { cancelVisit(id: $id) { id } }", {"id": visit}),
        (PAY, {"id": order}),
        (REFUND, {"id": order, "a": "1.00"}),
        ("mutation($id: ID!) { cancelFollowUp(id: $id) { id } }", {"id": task}),
        (
            "mutation($p: ID!, $b: ID!) { bookVisit(patientId: $p, branchId: $b, "
            'scheduledAt: "2026-12-01T09:00:00+08:00") { id } }',
            {"p": world.gid("b1"), "b": other.branch_gid("b1")},
        ),
    ]
    for query, variables in attempts:
        assert codes(await gql(client, query, variables, token=a)) == ["NOT_FOUND"], query
    # B's rows are as B left them; A's lists hold none of them.
    state_b = ok(
        await gql(
            client,
            "{ visits { edges { node { status } } } orders { edges { node { status } } } "
            "followUps { edges { node { status } } } }",
            token=b,
        )
    )
    assert state_b == {
        "visits": {"edges": [{"node": {"status": "BOOKED"}}]},
        "orders": {"edges": [{"node": {"status": "PENDING"}}]},
        "followUps": {"edges": [{"node": {"status": "OPEN"}}]},
    }
    seen_a = ok(
        await gql(
            client,
            "{ visits { totalCount } orders { totalCount } followUps { totalCount } }",
            token=a,
        )
    )
    assert seen_a == {
        "visits": {"totalCount": 0},
        "orders": {"totalCount": 0},
        "followUps": {"totalCount": 0},
    }
