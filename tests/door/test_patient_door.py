"""The patient's own door, end to end on a chain made by `patientpool tenant create` and the
served API: HQ configures the mini-program, a patient signs in through the stand-in WeChat,
is linked by phone to the record staff made, reads exactly their own record, books and
cancels, withdraws consent (the next campaign audience leaves them out), sees their referral
progress and who read their record; a patient token reaches no staff field and a staff token
no patient field, walked over the whole schema."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from graphql import parse
from sqlalchemy import select

from api.context import AppState
from api.door.fields import PATIENT_ROOT_FIELDS
from api.ids import parse_global_id, to_global_id
from api.schema import OPERATIONS, PUBLIC_ROOT_FIELDS, build_schema
from auth.access_log import AccessLogEntry
from auth.ratelimit import WindowLimit
from auth.signing_keys import TokenError
from auth.tokens import decode_access_token, decode_patient_token
from domain.tenants.models import Tenant
from tenancy.session import bind_tenant
from tests.attacks.test_isolation import ATTACKS
from tests.campaigns.conftest import campaign, launch, reach, segment
from tests.chain.conftest import Operator
from tests.door.conftest import CONFIGURE, Chain
from tests.door.standin import WeChat
from tests.support import SEEDED, codes, gql, ok

SIGN_IN = """mutation($t: String!, $c: String!, $p: String) {
  signInPatient(tenant: $t, code: $c, phoneCode: $p) { accessToken expiresIn newPatient } }"""
MY_RECORD = """{ myRecord { id name phone lifecycleStage referralCode homeBranch { id name } } }"""
MY_VISITS = """{ myVisits { id status scheduledAt branch { id name } } }"""
BOOK = """mutation($b: ID!, $at: DateTime!) { bookMyVisit(branchId: $b, at: $at) {
  id status branch { id } } }"""
CANCEL = """mutation($id: ID!) { cancelMyVisit(id: $id) { id status } }"""
GRANT = """mutation { grantMyConsent(purpose: MARKETING, channel: SMS, textVersion: "2026-12") {
  current { purpose channel granted } history { granted method } } }"""
WITHDRAW = """mutation { withdrawMyConsent(purpose: MARKETING, channel: SMS) {
  current { purpose channel granted } history { granted method } } }"""
REFERRAL = """{ myReferral { code friendsJoined pointsEarned rewards { points granted }
  poster { code page scene chainName } } }"""
SEEDED.add("note-door-why 投诉复核")  # a stated purpose's note: never in a log line
HISTORY = """query($after: String) { myAccessHistory(first: 100, after: $after) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { node { id occurredAt action fieldGroups byYou actorKind staffRoles staffName
    branches { name } purpose } } } }"""


async def _sign_in(
    api: httpx.AsyncClient, slug: str, code: str, phone_code: str | None = None
) -> dict[str, Any]:
    return ok(await gql(api, SIGN_IN, {"t": slug, "c": code, "p": phone_code}))["signInPatient"]


async def test_signed_in_by_phone_reads_exactly_their_own_record(
    api: httpx.AsyncClient, chain: Chain, wechat: tuple[WeChat, str], door_state: AppState
) -> None:
    fake, _ = wechat
    first = await _sign_in(api, chain.slug, fake.login("o-1", "u-1"), fake.phone_code(chain.phone))
    assert first["newPatient"] is False
    token = first["accessToken"]
    record = ok(await gql(api, MY_RECORD, token=token))["myRecord"]
    assert record["id"] == chain.patient
    assert (record["name"], record["phone"]) == (chain.name, chain.phone)
    assert record["homeBranch"]["id"] == chain.branch

    # The next sign-in finds the record by the WeChat identity alone (no phone shared).
    again = await _sign_in(api, chain.slug, fake.login("o-1", "u-1"))
    assert again["newPatient"] is False
    assert (
        ok(await gql(api, "{ myRecord { id } }", token=again["accessToken"]))["myRecord"]["id"]
        == chain.patient
    )
    # Same person through another app of the brand (same unionid, other openid): same record.
    other_app = await _sign_in(api, chain.slug, fake.login("o-other-app", "u-1"))
    assert (
        ok(await gql(api, "{ myRecord { id } }", token=other_app["accessToken"]))["myRecord"]["id"]
        == chain.patient
    )

    # A stranger: a new lead from the mini-program, never one of the existing records.
    stranger = await _sign_in(api, chain.slug, fake.login("o-2"))
    assert stranger["newPatient"] is True
    theirs = ok(await gql(api, "{ myRecord { id } }", token=stranger["accessToken"]))
    new_id = theirs["myRecord"]["id"]
    assert new_id not in (chain.patient, chain.other)
    seen = ok(
        await gql(api, "query($id: ID!) { patient(id: $id) { sourceChannel } }",
                  {"id": new_id}, token=chain.hq)
    )  # fmt: skip
    assert seen["patient"]["sourceChannel"] == "mini_program"
    # A code WeChat refuses (used, or made up) signs no one in.
    used = fake.login("o-3")
    await _sign_in(api, chain.slug, used)
    for code in (used, "made-up"):
        refused = await gql(api, SIGN_IN, {"t": chain.slug, "c": code, "p": None})
        assert codes(refused) == ["UNAUTHENTICATED"]
    # A chain without a mini-program, or none at all, answers the same.
    for slug in ("no-such-chain", f"{chain.slug}-x"):
        assert codes(await gql(api, SIGN_IN, {"t": slug, "c": fake.login("o-1")})) == [
            "UNAUTHENTICATED"
        ]

    # The token is a patient's: its own audience and type.
    keys = door_state.signing_keys
    assert decode_patient_token(keys, token).kind == "patient"
    with pytest.raises(TokenError):
        decode_access_token(keys, token)
    with pytest.raises(TokenError):
        decode_patient_token(keys, chain.hq)


def _bare(field: str) -> str:
    schema = build_schema()._schema
    kind = "query" if field in schema.query_type.fields else "mutation"
    return f"{kind} {{ {field} }}"


async def test_tokens_never_cross_over_the_whole_schema(
    api: httpx.AsyncClient, chain: Chain, wechat: tuple[WeChat, str], operator: Operator
) -> None:
    fake, _ = wechat
    patient = (await _sign_in(api, chain.slug, fake.login("o-walk"), fake.phone_code(chain.phone)))[
        "accessToken"
    ]
    schema = build_schema()._schema
    every = set(schema.query_type.fields) | set(schema.mutation_type.fields)
    staff_fields = every - PATIENT_ROOT_FIELDS - PUBLIC_ROOT_FIELDS
    assert len(staff_fields) > 50 and every >= PATIENT_ROOT_FIELDS

    # Every staff root field, aimed by the attack suite's own operations at real ids (this
    # chain's other patient, its branch): a patient token gets FORBIDDEN and nothing else.
    for field in sorted(staff_fields):
        query, variables = ATTACKS[field](_AimedAt(chain))
        result = await gql(api, query, variables, token=patient)
        assert codes(result) == ["FORBIDDEN"], (field, result)
        assert result.get("data") is None, (field, result)
        bare = await gql(api, _bare(field), token=patient)
        assert codes(bare) == ["FORBIDDEN"], (field, bare)

    # Every patient root field: the staff token (HQ, who may do anything staff may) is
    # refused alike, and so is no token at all.
    for field in sorted(PATIENT_ROOT_FIELDS):
        result = await gql(api, _bare(field), token=chain.hq)
        assert codes(result) == ["FORBIDDEN"], (field, result)
        assert codes(await gql(api, _bare(field))) == ["UNAUTHENTICATED"], field
    # And a patient's request that mixes in one staff field is refused whole.
    mixed = await gql(
        api,
        "query($p: ID!) { myRecord { id } patient(id: $p) { id } }",
        {"p": chain.other},
        token=patient,
    )
    assert codes(mixed) == ["FORBIDDEN"] and mixed.get("data") is None


class _AimedAt:
    """What the attack suite's operations read off a World, for this chain: another patient
    (HQ's second), the chain's branch, its staff (the HQ admin)."""

    def __init__(self, chain: Chain) -> None:
        self.slug = chain.slug
        self._chain = chain
        self.tenant_id = uuid.uuid4()
        self.patients = {"b1": _Ref(chain.other), "b2": _Ref(chain.other)}
        # The other patient's phone: the patients filter is aimed at it.
        self.plaintext = {"b1": {"phone": chain.other_phone}, "b2": {"phone": chain.other_phone}}

    def gid(self, key: str) -> str:
        return self._chain.other

    def branch_gid(self, key: str) -> str:
        return self._chain.branch

    def staff_gid(self, role: str) -> str:
        return to_global_id("Staff", uuid.uuid4())

    def email(self, role: str) -> str:
        return f"{role}@{self.slug}.test"


class _Ref:
    def __init__(self, gid: str) -> None:
        self.id = parse_global_id(gid, "Patient", "id")
        self.referral_code = "NOCODE00"


async def test_visits_consent_referral_and_export_are_their_own(
    api: httpx.AsyncClient, chain: Chain, wechat: tuple[WeChat, str]
) -> None:
    fake, _ = wechat
    token = (await _sign_in(api, chain.slug, fake.login("o-v"), fake.phone_code(chain.phone)))[
        "accessToken"
    ]
    at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    booked = ok(await gql(api, BOOK, {"b": chain.branch, "at": at}, token=token))["bookMyVisit"]
    assert booked["status"] == "BOOKED" and booked["branch"]["id"] == chain.branch
    assert [v["id"] for v in ok(await gql(api, MY_VISITS, token=token))["myVisits"]] == [
        booked["id"]
    ]
    # Staff see the booking on the patient's record.
    staff_view = ok(
        await gql(api, "query($p: ID!) { visits(filter: {patientId: $p}) { totalCount } }",
                  {"p": chain.patient}, token=chain.hq)
    )  # fmt: skip
    assert staff_view["visits"]["totalCount"] == 1
    # Someone else's visit (HQ books one for the other patient) is not theirs to cancel.
    theirs = ok(
        await gql(
            api,
            "mutation($p: ID!, $b: ID!, $at: DateTime!) { bookVisit(patientId: $p, branchId: $b, "
            "scheduledAt: $at) { id } }",
            {"p": chain.other, "b": chain.branch, "at": at},
            token=chain.hq,
        )
    )["bookVisit"]["id"]
    assert codes(await gql(api, CANCEL, {"id": theirs}, token=token)) == ["NOT_FOUND"]
    cancelled = ok(await gql(api, CANCEL, {"id": booked["id"]}, token=token))["cancelMyVisit"]
    assert cancelled["status"] == "CANCELLED"
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert codes(await gql(api, BOOK, {"b": chain.branch, "at": past}, token=token)) == [
        "BAD_USER_INPUT"
    ]

    # Referral: a friend scans the poster and signs in from its page (ref=code): linked as
    # referred by the patient, who sees a count, never who.
    code = ok(await gql(api, REFERRAL, token=token))["myReferral"]["code"]
    friend = ok(
        await gql(
            api,
            "mutation($t: String!, $c: String!, $r: String) { signInPatient(tenant: $t, "
            "code: $c, referralCode: $r) { accessToken newPatient } }",
            {"t": chain.slug, "c": fake.login("o-friend"), "r": code},
        )
    )["signInPatient"]
    assert friend["newPatient"] is True
    friend_id = ok(await gql(api, "{ myRecord { id } }", token=friend["accessToken"]))["myRecord"][
        "id"
    ]
    tree = ok(
        await gql(
            api,
            "query($p: ID!) { referralTree(patientId: $p, depth: 1) { nodes { patient { id } } } }",
            {"p": chain.patient},
            token=chain.hq,
        )
    )
    assert friend_id in json.dumps(tree)
    referral = ok(await gql(api, REFERRAL, token=token))["myReferral"]
    assert referral["friendsJoined"] == 1
    assert referral["poster"]["scene"] == f"ref={code}" and code in referral["poster"]["page"]
    assert friend_id not in json.dumps(referral)

    # Their copy of their data holds them, and no other patient.
    export = ok(await gql(api, "mutation { exportMyData { patientId content } }", token=token))
    copy = json.loads(export["exportMyData"]["content"])
    assert export["exportMyData"]["patientId"] == chain.patient
    assert copy["patient"]["phone"] == chain.phone
    assert (
        str(parse_global_id(chain.other, "Patient", "id")) not in export["exportMyData"]["content"]
    )


async def test_consent_withdrawn_by_the_patient_holds_for_the_next_audience(
    api: httpx.AsyncClient, chain: Chain, wechat: tuple[WeChat, str]
) -> None:
    fake, _ = wechat
    token = (await _sign_in(api, chain.slug, fake.login("o-c"), fake.phone_code(chain.phone)))[
        "accessToken"
    ]
    granted = ok(await gql(api, GRANT, token=token))["grantMyConsent"]
    assert granted["current"] == [{"purpose": "MARKETING", "channel": "SMS", "granted": True}]
    seg = await segment(api, chain.hq, {"stages": ["LEAD"]})
    first = await campaign(api, chain.hq, seg)
    before = await launch(api, chain.hq, first)
    # Both patients match the segment; the other never consented.
    assert (before["matched"], before["excludedNoConsent"]) == (2, 1)
    assert (await reach(api, chain.hq, first))["reach"]["audience"] == 1

    withdrawn = ok(await gql(api, WITHDRAW, token=token))["withdrawMyConsent"]
    assert withdrawn["current"][0]["granted"] is False
    assert [h["method"] for h in withdrawn["history"]] == ["mini_program", "mini_program"]
    # Staff see the same history.
    staff = ok(
        await gql(api, "query($p: ID!) { patientConsents(patientId: $p) { history { granted } } }",
                  {"p": chain.patient}, token=chain.hq)
    )  # fmt: skip
    assert [h["granted"] for h in staff["patientConsents"]["history"]] == [True, False]
    second = await campaign(api, chain.hq, seg)
    after = await launch(api, chain.hq, second)
    assert (after["matched"], after["excludedNoConsent"]) == (2, 2)
    assert (await reach(api, chain.hq, second))["reach"]["audience"] == 0


async def _entries_about(state: AppState, slug: str, patient_gid: str) -> set[str]:
    """The oracle: entries whose own patient list names the patient, read off the log."""
    pid = str(parse_global_id(patient_gid, "Patient", "id"))
    async with state.sessions() as s, s.begin():
        tid = await s.scalar(select(Tenant.id).where(Tenant.slug == slug))
        await bind_tenant(s, tid)
        rows = (await s.scalars(select(AccessLogEntry))).all()
        about = [r for r in rows if pid in json.loads(r.patient_ids)]
        return {to_global_id("AccessLogEntry", r.id) for r in about}


async def _history(api: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = None
    while True:
        page = ok(await gql(api, HISTORY, {"after": after}, token=token))["myAccessHistory"]
        out += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return out
        after = page["pageInfo"]["endCursor"]


async def test_my_access_history_holds_exactly_the_entries_of_their_record(
    api: httpx.AsyncClient, chain: Chain, wechat: tuple[WeChat, str], door_state: AppState
) -> None:
    fake, _ = wechat
    token = (await _sign_in(api, chain.slug, fake.login("o-h"), fake.phone_code(chain.phone)))[
        "accessToken"
    ]
    read = "query($id: ID!) { patient(id: $id) { name phone } }"
    ok(await gql(api, read, {"id": chain.patient}, token=chain.hq))
    ok(await gql(api, read, {"id": chain.other}, token=chain.hq))  # another patient's read
    ok(await gql(api, MY_RECORD, token=token))
    # HQ states why it needs the health data, then reads it: both show with the purpose.
    state = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: COMPLAINT,
      note: "note-door-why 投诉复核") { id } }"""
    ok(await gql(api, state, {"id": chain.patient}, token=chain.hq))
    ok(await gql(api, "query($id: ID!) { patient(id: $id) { notes } }", {"id": chain.patient},
                 token=chain.hq))  # fmt: skip

    # (Read before: reading the history is itself logged, after its answer is made.)
    expected = await _entries_about(door_state, chain.slug, chain.patient)
    history = await _history(api, token)
    assert {e["id"] for e in history} == expected
    assert await _entries_about(door_state, chain.slug, chain.patient) - expected
    # newest first; the HQ read is there as staff, without a name (the chain shows none) …
    staff = [e for e in history if e["actorKind"] == "staff" and e["action"] == "READ"]
    assert staff and staff[0]["staffRoles"] == ["hq_admin"] and staff[0]["staffName"] is None
    assert any("contact" in e["fieldGroups"] for e in staff)
    # … and the patient's own reads are logged with the patient as actor.
    assert any(e["byYou"] and e["actorKind"] == "patient" for e in history)
    reasoned = [(e["action"], e["fieldGroups"]) for e in history if e["purpose"] == "COMPLAINT"]
    assert reasoned == [("READ", ["health"]), ("STATE_PURPOSE", ["health"])], reasoned
    assert all(e["purpose"] is None for e in history if e["actorKind"] != "staff")
    assert "note-door-why" not in str(history)  # the note stays with the auditors
    # The other patient's read is in the log, and not in this history.
    assert await _entries_about(door_state, chain.slug, chain.other) - expected

    # Where the chain shows names, the staff member's display name appears.
    ok(await gql(api, CONFIGURE, {"b": chain.branch, "names": True}, token=chain.hq))
    named = [e for e in await _history(api, token) if e["actorKind"] == "staff"]
    assert named and all(e["staffName"] for e in named)


async def test_sign_in_is_rate_limited(
    door_state: AppState, chain: Chain, wechat: tuple[WeChat, str]
) -> None:
    from api.app import create_app

    fake, _ = wechat
    limits = dataclasses.replace(
        door_state.sign_in_limits, patient=WindowLimit(2, 300, f"patient-{uuid.uuid4().hex}")
    )
    tight = dataclasses.replace(door_state, sign_in_limits=limits)
    transport = httpx.ASGITransport(app=create_app(tight.settings, tight))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _ in range(2):
            await _sign_in(client, chain.slug, fake.login("o-r"))
        refused = await gql(client, SIGN_IN, {"t": chain.slug, "c": fake.login("o-r")})
        assert codes(refused) == ["RATE_LIMITED"]


async def test_the_example_operations_run_as_the_mini_program_sends_them(
    api: httpx.AsyncClient, chain: Chain, wechat: tuple[WeChat, str]
) -> None:
    """Every operation of frontend-schema/operations/patient-door.graphql, sent as a
    mini-program sends it (the file's text with an operation name), answers without errors."""
    fake, _ = wechat
    text = (OPERATIONS / "patient-door.graphql").read_text(encoding="utf-8")

    async def run(name: str, variables: dict[str, Any], token: str | None = None) -> Any:
        body = {"query": text, "operationName": name, "variables": variables}
        headers = {"authorization": f"Bearer {token}"} if token else {}
        answer = (await api.post("/graphql", json=body, headers=headers)).json()
        assert "errors" not in answer, (name, answer)
        return answer["data"]

    signed = await run(
        "PatientSignIn",
        {
            "tenant": chain.slug,
            "code": fake.login("o-ops"),
            "phoneCode": fake.phone_code(chain.phone),
        },
    )
    token = signed["signInPatient"]["accessToken"]
    home = await run("MyHome", {}, token)
    assert home["myRecord"]["id"] == chain.patient
    at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    booked = await run("BookMyVisit", {"branchId": chain.branch, "at": at}, token)
    assert booked["bookMyVisit"]["status"] == "BOOKED"
    withdrawn = await run("WithdrawMyConsent", {"purpose": "MARKETING", "channel": "SMS"}, token)
    assert withdrawn["withdrawMyConsent"]["current"] is not None
    history = await run("MyAccessHistory", {"first": 10}, token)
    assert history["myAccessHistory"]["totalCount"] >= 1
    names = {op.name.value for op in parse(text).definitions}  # type: ignore[attr-defined]
    assert names == {"PatientSignIn", "MyHome", "BookMyVisit", "WithdrawMyConsent",
                     "MyAccessHistory"}, "run the new operation here"  # fmt: skip
