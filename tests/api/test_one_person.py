"""One person across channels (OneID, issue 24): a phone, WeChat id, WeCom external id or
national id already in the chain never makes createPatient answer CONFLICT. A caller who can
see the known person gets them back (`existing`) with the channel recorded as a touch; a caller
who cannot gets an answer shaped exactly like a brand-new patient's, and HQ sees the pair in
possibleDuplicates. The WeCom contact callback finds the same person. A retired (merged) id
answers NOT_FOUND with mergedInto, and calls naming it act on the kept record. Served API, on
tenants made as a customer makes them; SQLite and PostgreSQL.

(Bulk import is another helper's; once it lands, the same phone through import must find the
same person too: add it to `test_the_same_phone_through_every_door_is_one_patient`.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.context import AppState
from api.ids import to_global_id
from tests.support import SEEDED, World, build_world, codes, gql, ok, sign_in
from tests.wecom.test_callbacks import Wecom, _configure

FIELDS = """id name phone wechatId wecomExternalId gender birthYear sourceChannel poolTier
  lifecycleStage trustLevel referralCode consented erased createdAt updatedAt leadScore
  lastInteractionAt lastVisitAt homeBranch { code } assignedStaff { id } tags { name }
  channelHistory { channel via } scoreExplanation { score lines { what count points } }
  stageHistory { fromStage toStage }"""
CREATE = (
    "mutation($in: CreatePatientInput!) { createPatient(input: $in) { existing patient { "
    + FIELDS
    + " } } }"
)
PATIENT = "query($id: ID!) { patient(id: $id) { " + FIELDS + " } }"
DUPLICATES = """{ possibleDuplicates(first: 50) { totalCount edges { node { matchedOn
  patients { id } } } } }"""
NAME = "测试患者同一人"
PHONE = "+8613912340001"
OTHER_PHONE = "+8613912340002"
THIRD_PHONE = "+8613912340003"
NATIONAL = "11010519491231002x"
SEEDED.update({NAME, PHONE, OTHER_PHONE, THIRD_PHONE, NATIONAL, NATIONAL.upper(), "138****0001"})


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"op-{unique}")


async def create(client: httpx.AsyncClient, token: str, **values: Any) -> dict[str, Any]:
    return await gql(client, CREATE, {"in": values}, token=token)


async def test_the_same_phone_through_every_door_is_one_patient(
    client: httpx.AsyncClient, world: World
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    wecom = Wecom(world.slug, "oneid")
    ok(await _configure(client, world, wecom))
    # WeCom first: a customer adds a staff member; a lead joins (placeholder name, no phone).
    url, body = wecom.request(wecom.event("add_external_contact", "wmONE1", state="qr-a"))
    assert (await client.post(url, content=body)).text == "success"
    found = ok(
        await gql(
            client, "{ patients(first: 50) { edges { node { id wecomExternalId } } } }", token=hq
        )
    )
    lead = next(
        e["node"]["id"]
        for e in found["patients"]["edges"]
        if e["node"]["wecomExternalId"] == "wmONE1"
    )
    # The front desk registers the person with their phone and the WeCom id: the same record,
    # with the phone filled in (the input's name is not applied to a known person).
    first = ok(
        await create(
            client,
            hq,
            name=NAME,
            phone=PHONE,
            wecomExternalId="wmONE1",
            homeBranchId=world.branch_gid("b1"),
            sourceChannel="xiaohongshu",
        )
    )["createPatient"]
    assert first["existing"] is True and first["patient"]["id"] == lead
    assert first["patient"]["phone"] == PHONE and first["patient"]["name"] == "企业微信客户"
    # The phone alone, spaced differently, through another channel: still that person.
    again = ok(
        await create(
            client,
            hq,
            name="别名",
            phone="139 1234 0001",
            homeBranchId=world.branch_gid("b2"),
            sourceChannel="douyin",
        )
    )["createPatient"]
    assert again["existing"] is True and again["patient"]["id"] == lead
    # WeCom again (the contact re-added): linked, a touch, no new record.
    url, body = wecom.request(
        wecom.event("add_external_contact", "wmONE1", state="qr-b", at=1_764_000_100)
    )
    assert (await client.post(url, content=body)).text == "success"
    shown = ok(await gql(client, PATIENT, {"id": lead}, token=hq))["patient"]
    assert shown["channelHistory"] == [
        {"channel": "qr-a", "via": "wecom"},
        {"channel": "xiaohongshu", "via": "create"},
        {"channel": "douyin", "via": "create"},
        {"channel": "qr-b", "via": "wecom"},
    ]
    # Each touch is an interaction event, scored like any other.
    lines = {line["what"]: line["count"] for line in shown["scoreExplanation"]["lines"]}
    assert sum(lines.values()) == 3 and shown["lastInteractionAt"] is not None
    total = ok(await gql(client, "{ patients { totalCount } }", token=hq))["patients"]
    assert total["totalCount"] == len(world.patients) + 1
    # The national id (its check digit in either case) and the WeChat id find them as well.
    # (A national id is health data: HQ, outside the lead's care, states why it writes one.)
    purpose = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: CARE,
      note: "one person check") { id } }"""
    ok(await gql(client, purpose, {"id": lead}, token=hq))
    ok(
        await gql(
            client,
            "mutation($id: ID!, $in: UpdatePatientInput!) { updatePatient(id: $id, input: $in)"
            " { patient { id } } }",
            {"id": lead, "in": {"nationalId": NATIONAL, "wechatId": "wx-oneid-1"}},
            token=hq,
        )
    )
    for values in ({"nationalId": NATIONAL.upper()}, {"wechatId": "wx-oneid-1"}):
        answer = ok(
            await create(client, hq, name=NAME, homeBranchId=world.branch_gid("b1"), **values)
        )["createPatient"]
        assert (answer["existing"], answer["patient"]["id"]) == (True, lead)
    assert ok(await gql(client, DUPLICATES, token=hq))["possibleDuplicates"]["totalCount"] == 0


def _without_ids(payload: dict[str, Any]) -> dict[str, Any]:
    """The answer minus what differs between any two new records: ids, codes, clocks, and
    the phone the caller typed."""
    patient = {
        k: v
        for k, v in payload["patient"].items()
        if k not in ("id", "referralCode", "createdAt", "updatedAt", "phone")
    }
    return {"existing": payload["existing"], "patient": patient}


@pytest.mark.parametrize("role", ["branch_manager", "operator"])
async def test_a_caller_who_cannot_see_the_known_person_learns_nothing(
    client: httpx.AsyncClient, world: World, role: str
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    caller = await sign_in(client, world, role)  # works in b1; `b2` lives in b2
    known_phone = world.plaintext["b2"]["phone"]
    base = {"name": NAME, "homeBranchId": world.branch_gid("b1"), "sourceChannel": "douyin"}
    dup = await create(client, caller, phone=known_phone, **base)
    fresh = await create(client, caller, phone=OTHER_PHONE, **base)
    assert "errors" not in dup and "errors" not in fresh
    assert set(dup["data"]) == set(fresh["data"])
    assert _without_ids(dup["data"]["createPatient"]) == _without_ids(
        fresh["data"]["createPatient"]
    )
    lead = dup["data"]["createPatient"]["patient"]
    assert (
        lead["id"] != world.gid("b2")
        and lead["id"] != fresh["data"]["createPatient"]["patient"]["id"]
    )
    assert lead["phone"] == known_phone and lead["channelHistory"] == [
        {"channel": "douyin", "via": "create"}
    ]
    # The known person is untouched, and the caller's own duplicate list shows nothing.
    known = ok(await gql(client, PATIENT, {"id": world.gid("b2")}, token=hq))["patient"]
    assert known["channelHistory"] == [] and known["leadScore"] == 0
    if role == "branch_manager":
        mine = ok(await gql(client, DUPLICATES, token=caller))["possibleDuplicates"]
        assert mine["totalCount"] == 0
    # HQ sees the pair.
    groups = ok(await gql(client, DUPLICATES, token=hq))["possibleDuplicates"]["edges"]
    pairs = [
        (g["node"]["matchedOn"], sorted(p["id"] for p in g["node"]["patients"])) for g in groups
    ]
    assert pairs == [("phone", sorted([world.gid("b2"), lead["id"]]))]
    # Moving a record's phone onto one known only outside the caller's scope is no CONFLICT
    # either (that too would tell); onto one they can see, it is.
    hidden = ok(
        await create(client, hq, name=NAME, phone=THIRD_PHONE, homeBranchId=world.branch_gid("b2"))
    )["createPatient"]
    assert hidden["existing"] is False
    update = (
        "mutation($id: ID!, $in: UpdatePatientInput!) { updatePatient(id: $id, input: $in)"
        " { patient { id } } }"
    )
    fresh_id = fresh["data"]["createPatient"]["patient"]["id"]
    moved = await gql(client, update, {"id": fresh_id, "in": {"phone": THIRD_PHONE}}, token=caller)
    assert "errors" not in moved
    clash = await gql(
        client,
        update,
        {"id": fresh_id, "in": {"phone": world.plaintext["b1"]["phone"]}},
        token=caller,
    )
    assert codes(clash) == ["CONFLICT"]


async def test_a_caller_who_can_see_the_known_person_gets_them_back(
    client: httpx.AsyncClient, world: World
) -> None:
    manager = await sign_in(client, world, "branch_manager")
    answer = ok(
        await create(
            client,
            manager,
            name="另一个名字",
            phone=world.plaintext["b1"]["phone"],
            homeBranchId=world.branch_gid("b1"),
            sourceChannel="event-2026",
        )
    )["createPatient"]
    assert answer["existing"] is True
    assert answer["patient"]["id"] == world.gid("b1")
    assert answer["patient"]["name"] == world.plaintext["b1"]["name"]
    assert answer["patient"]["channelHistory"] == [{"channel": "event-2026", "via": "create"}]
    # Still not outside their scope: a known person is no way into another branch.
    denied = await create(
        client,
        manager,
        name=NAME,
        phone=world.plaintext["b1"]["phone"],
        homeBranchId=world.branch_gid("b2"),
    )
    assert codes(denied) == ["FORBIDDEN"]


MERGE = "mutation($k: ID!, $m: ID!) { mergePatients(keepId: $k, mergeId: $m) { id } }"


async def test_a_retired_id_answers_not_found_and_calls_naming_it_act_on_the_kept_record(
    client: httpx.AsyncClient, world: World
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    manager = await sign_in(client, world, "branch_manager")  # b1 only
    keep, retired = world.gid("b1"), world.gid("hm")  # both b1: the manager sees both
    ok(await gql(client, MERGE, {"k": keep, "m": retired}, token=hq))
    unknown = to_global_id("Patient", world.tenant_id)  # a well-formed id of nobody

    reads = {
        "patient": ("query($id: ID!) { patient(id: $id) { id } }", {}),
        "node": ("query($id: ID!) { node(id: $id) { id } }", {}),
        "updatePatient": (
            "mutation($id: ID!, $in: UpdatePatientInput!) { updatePatient(id: $id, input: $in)"
            " { patient { id } } }",
            {"in": {"notes": "note-oneid"}},
        ),
        "erasePatient": (
            "mutation($id: ID!) { erasePatient(id: $id) { patient { id } } }",
            {},
        ),
    }
    SEEDED.add("note-oneid")
    for name, (query, extra) in reads.items():
        answer = await gql(client, query, {"id": retired, **extra}, token=hq)
        assert codes(answer) == ["NOT_FOUND"], name
        assert answer["errors"][0]["extensions"]["mergedInto"] == keep, name
        assert answer["data"] is None or answer["data"].get(name) is None
        missing = await gql(client, query, {"id": unknown, **extra}, token=hq)
        assert (
            codes(missing) == ["NOT_FOUND"]
            and "mergedInto" not in missing["errors"][0]["extensions"]
        )
    # The kept record was neither changed nor erased through the retired id (HQ reads its
    # notes, a health field, under a stated purpose: the reason gate).
    purpose = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: QUALITY_REVIEW,
      note: "merge check") { id } }"""
    ok(await gql(client, purpose, {"id": keep}, token=hq))
    shown = ok(
        await gql(
            client, "query($id: ID!) { patient(id: $id) { notes erased } }", {"id": keep}, token=hq
        )
    )
    assert shown["patient"] == {"notes": world.plaintext["b1"]["notes"], "erased": False}

    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    ok(
        await gql(
            client,
            "mutation($e: [EventInput!]!) { recordEvents(events: $e) { inserted } }",
            {
                "e": [
                    {
                        "clientEventId": f"ret-{time.time_ns()}",
                        "patientId": retired,
                        "type": "EVENT_ATTENDED",
                        "occurredAt": at,
                    }
                ]
            },
            token=manager,
        )
    )
    b1 = world.branch_gid("b1")
    visit = ok(
        await gql(
            client,
            "mutation($p: ID!, $b: ID!, $at: DateTime!) { bookVisit(patientId: $p, branchId: $b,"
            " scheduledAt: $at) { id patient { id } } }",
            {"p": retired, "b": b1, "at": later},
            token=manager,
        )
    )["bookVisit"]
    order = ok(
        await gql(
            client,
            "mutation($p: ID!, $b: ID!, $l: [OrderLineInput!]!) { createOrder(patientId: $p,"
            " branchId: $b, lines: $l) { id patient { id } } }",
            {
                "p": retired,
                "b": b1,
                "l": [{"service": "洁牙", "quantity": 1, "unitPrice": "199.00"}],
            },
            token=manager,
        )
    )["createOrder"]
    follow_up = ok(
        await gql(
            client,
            "mutation($p: ID!, $at: DateTime!) { createFollowUp(patientId: $p, kind:"
            " RETURN_VISIT_REMINDER, dueAt: $at) { id patient { id } } }",
            {"p": retired, "at": later},
            token=manager,
        )
    )["createFollowUp"]
    assert visit["patient"]["id"] == order["patient"]["id"] == follow_up["patient"]["id"] == keep
    # Lists filtered by the retired id show the kept record's rows.
    for field, query in (
        ("visits", "query($p: ID!) { visits(filter: {patientId: $p}) { edges { node { id } } } }"),
        ("orders", "query($p: ID!) { orders(filter: {patientId: $p}) { edges { node { id } } } }"),
        (
            "followUps",
            "query($p: ID!) { followUps(filter: {patientId: $p}) { edges { node { id } } } }",
        ),
    ):
        by_retired = ok(await gql(client, query, {"p": retired}, token=manager))[field]
        by_kept = ok(await gql(client, query, {"p": keep}, token=manager))[field]
        assert by_retired == by_kept and by_kept["edges"], field
    scored = ok(
        await gql(
            client, "query($id: ID!) { patient(id: $id) { leadScore } }", {"id": keep}, token=hq
        )
    )
    assert scored["patient"]["leadScore"] > 0
