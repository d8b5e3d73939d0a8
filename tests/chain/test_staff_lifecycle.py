"""Staff and branch lifecycles on a chain made by `tenant create` and the API: invitations
expire and work once, resets and deactivation cut every token, closed branches take nothing
new, bad input writes nothing, and each administrative change leaves exactly one entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.context import AppState
from auth.access_log import RequestInfo
from auth.models import StaffTokenPurpose
from auth.staff_tokens import redeem
from domain.patients import repository
from tests.chain.conftest import ACCEPT, INVITE, NEW_PASSWORD, Chain
from tests.support import codes, gql, ok

RESET = """mutation($s: ID!) { resetStaffPassword(staffId: $s) { resetToken } }"""
COMPLETE = (
    """mutation($t: String!, $p: String!) { completePasswordReset(token: $t, password: $p) }"""
)
REFRESH = """mutation($r: String!) { refreshTokens(refreshToken: $r) { accessToken } }"""
ME = "{ me { roles branches { code } } }"
CREATE_BRANCH = """mutation($i: CreateBranchInput!) { createBranch(input: $i) { id code } }"""
LAST_ADMIN = """{ accessLog(first: 1, filter: {actions: [ADMIN]}) {
  edges { node { actorId change target changeDetail } } } }"""


async def test_first_branch_from_tenant_create(chain: Chain) -> None:
    assert list(chain.branches) == ["main"]


async def test_invitation_works_once_and_expires(chain: Chain, chain_state: AppState) -> None:
    _email, token, _ = await chain.invite("doctor", [chain.branches["main"]])
    later = datetime.now(UTC) + timedelta(hours=73)
    with pytest.raises(Exception) as expired:
        await redeem(
            chain_state.sessions, StaffTokenPurpose.INVITATION, token, NEW_PASSWORD,
            RequestInfo(), now=later,
        )  # fmt: skip
    assert getattr(expired.value, "field", None) == "token"
    assert ok(await chain.q(ACCEPT, {"t": token, "p": NEW_PASSWORD}, token=""))
    again = await chain.q(ACCEPT, {"t": token, "p": NEW_PASSWORD}, token="")
    assert codes(again) == ["BAD_USER_INPUT"]
    assert again["errors"][0]["extensions"]["field"] == "token"
    short = await chain.q(ACCEPT, {"t": token, "p": "short"}, token="")
    assert codes(short) == ["BAD_USER_INPUT"]


async def test_resent_invitation_voids_the_old_token_and_revoked_ones_fail(chain: Chain):
    email, first, staff_id = await chain.invite("operator", [chain.branches["main"]])
    resend = "mutation($s: ID!) { resendInvitation(staffId: $s) { invitationToken } }"
    second = ok(await chain.q(resend, {"s": staff_id}))["resendInvitation"]["invitationToken"]
    assert codes(await chain.q(ACCEPT, {"t": first, "p": NEW_PASSWORD}, token="")) == [
        "BAD_USER_INPUT"
    ]
    revoke = "mutation($s: ID!) { revokeInvitation(staffId: $s) { invitationPending isActive } }"
    assert ok(await chain.q(revoke, {"s": staff_id}))["revokeInvitation"] == {
        "invitationPending": False,
        "isActive": False,
    }
    assert codes(await chain.q(ACCEPT, {"t": second, "p": NEW_PASSWORD}, token="")) == [
        "BAD_USER_INPUT"
    ]
    signin = await gql(
        chain.client,
        "mutation($t:String!,$e:String!,$p:String!){signIn(tenant:$t,email:$e,password:$p)"
        "{accessToken}}",
        {"t": chain.slug, "e": email, "p": NEW_PASSWORD},
    )
    assert codes(signin) == ["UNAUTHENTICATED"]


async def test_reset_cuts_password_refresh_and_access_tokens(chain: Chain) -> None:
    staff_id, pair = await chain.member("health_manager", [chain.branches["main"]])
    assert ok(await chain.q(ME, token=pair["accessToken"]))
    before = await chain.admin_entries()
    reset = ok(await chain.q(RESET, {"s": staff_id}))["resetStaffPassword"]["resetToken"]
    assert await chain.admin_entries() == before + 1
    assert codes(await chain.q(ME, token=pair["accessToken"])) == ["UNAUTHENTICATED"]
    refreshed = await gql(chain.client, REFRESH, {"r": pair["refreshToken"]})
    assert codes(refreshed) == ["UNAUTHENTICATED"]
    me = await gql(chain.client, "{ me { user { email } } }", token=pair["accessToken"])
    assert codes(me) == ["UNAUTHENTICATED"]
    new = "another long password"
    assert ok(await chain.q(COMPLETE, {"t": reset, "p": new}, token=""))
    assert codes(await chain.q(COMPLETE, {"t": reset, "p": new}, token="")) == ["BAD_USER_INPUT"]
    # An invitation token is not a reset token, nor the other way round.
    assert codes(await chain.q(ACCEPT, {"t": reset, "p": new}, token="")) == ["BAD_USER_INPUT"]


async def test_deactivation_cuts_refresh_and_access_tokens(chain: Chain) -> None:
    staff_id, pair = await chain.member("marketing")
    off = "mutation($s: ID!) { setStaffActive(staffId: $s, active: false) }"
    before = await chain.admin_entries()
    assert ok(await chain.q(off, {"s": staff_id}))["setStaffActive"] is False
    assert await chain.admin_entries() == before + 1
    assert codes(await chain.q(ME, token=pair["accessToken"])) == ["UNAUTHENTICATED"]
    refreshed = await gql(chain.client, REFRESH, {"r": pair["refreshToken"]})
    assert codes(refreshed) == ["UNAUTHENTICATED"]


async def test_bad_input_names_the_field_and_writes_nothing(chain: Chain) -> None:
    before = await chain.admin_entries()
    count = "{ branches { totalCount } staff { totalCount } }"
    totals = ok(await chain.q(count))
    dup = await chain.q(CREATE_BRANCH, {"i": {"code": "main", "name": "again"}})
    assert codes(dup) == ["CONFLICT"] and dup["errors"][0]["extensions"]["field"] == "code"
    region = "UmVnaW9uOjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMQ"  # Region:<unknown>
    lost = await chain.q(CREATE_BRANCH, {"i": {"code": "x1", "name": "x", "regionId": region}})
    assert codes(lost) == ["NOT_FOUND"]
    assert lost["errors"][0]["extensions"]["field"] == "input.regionId"
    taken = {"email": f"audit@{chain.slug}.test", "name": "n", "roles": ["doctor"]}
    again = await chain.q(INVITE, {"i": taken})
    assert codes(again) == ["CONFLICT"] and again["errors"][0]["extensions"]["field"] == "email"
    beyond = {"email": chain.email("x"), "name": "n", "roles": ["auditor"]}
    refused = await chain.q(INVITE, {"i": beyond})
    assert codes(refused) == ["FORBIDDEN"]
    assert refused["errors"][0]["extensions"]["field"] == "roles"
    unknown = {"email": chain.email("x"), "name": "n", "roles": ["king"]}
    bad = await chain.q(INVITE, {"i": unknown})
    assert codes(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "roles"
    assert ok(await chain.q(count)) == totals
    assert await chain.admin_entries() == before


async def test_closed_branch_takes_no_patients_or_visits_and_reopens(chain: Chain) -> None:
    made = ok(await chain.q(CREATE_BRANCH, {"i": {"code": "pop", "name": "快闪店"}}))
    branch = made["createBranch"]["id"]
    create = """mutation($b: ID!) { createPatient(input: {name: "张三", homeBranchId: $b}) {
      patient { id } } }"""
    patient = ok(await chain.q(create, {"b": branch}))["createPatient"]["patient"]["id"]
    before = await chain.admin_entries()
    close = "mutation($id: ID!) { closeBranch(id: $id) { isOpen closedAt } }"
    closed = ok(await chain.q(close, {"id": branch}))["closeBranch"]
    assert closed["isOpen"] is False and closed["closedAt"]
    assert await chain.admin_entries() == before + 1
    refused = await chain.q(create, {"b": branch})
    assert codes(refused) == ["BAD_USER_INPUT"]
    book = """mutation($p: ID!, $b: ID!) { bookVisit(patientId: $p, branchId: $b,
      scheduledAt: "2030-01-01T09:00:00+08:00") { id } }"""
    assert codes(await chain.q(book, {"p": patient, "b": branch})) == ["BAD_USER_INPUT"]
    # Its patients stay, and so do the filters that find it.
    closed_list = "{ branches(filter: {isOpen: false}) { edges { node { code } } } }"
    assert ok(await chain.q(closed_list))["branches"]["edges"] == [{"node": {"code": "pop"}}]
    get = "query($id: ID!) { patient(id: $id) { id } }"
    assert ok(await chain.q(get, {"id": patient}))["patient"]["id"] == patient
    reopen = "mutation($id: ID!) { reopenBranch(id: $id) { isOpen } }"
    assert ok(await chain.q(reopen, {"id": branch}))["reopenBranch"]["isOpen"] is True
    assert ok(await chain.q(book, {"p": patient, "b": branch}))


async def test_update_staff_takes_effect_on_the_next_request(chain: Chain) -> None:
    extra = ok(await chain.q(CREATE_BRANCH, {"i": {"code": "b2", "name": "二店"}}))
    second = extra["createBranch"]["id"]
    staff_id, pair = await chain.member("operator", [chain.branches["main"]])
    update = """mutation($s: ID!, $i: UpdateStaffInput!) { updateStaff(staffId: $s, input: $i) {
      roles branches { code } } }"""
    before = await chain.admin_entries()
    moved = await chain.q(update, {"s": staff_id, "i": {"branchIds": [second], "name": "新名"}})
    assert ok(moved)["updateStaff"]["branches"] == [{"code": "b2"}]
    assert await chain.admin_entries() == before + 1
    last = ok(await gql(chain.client, LAST_ADMIN, token=chain.auditor))["accessLog"]["edges"]
    assert last[0]["node"] == {
        "actorId": chain.hq_id,
        "change": "staff.update",
        "target": staff_id,
        "changeDetail": "name,branches",
    }
    me = ok(await chain.q(ME, token=pair["accessToken"]))["me"]
    assert me["branches"] == [{"code": "b2"}]
    beyond = await chain.q(update, {"s": staff_id, "i": {"roles": ["auditor"]}})
    assert codes(beyond) == ["FORBIDDEN"]
    own = await chain.q(update, {"s": chain.hq_id, "i": {"roles": ["operator"]}})
    assert codes(own) == ["FORBIDDEN"]
    assert await chain.admin_entries() == before + 1
    roles = await chain.q(update, {"s": staff_id, "i": {"roles": ["doctor"]}})
    assert ok(roles)["updateStaff"]["roles"] == ["doctor"]
    assert ok(await chain.q(ME, token=pair["accessToken"]))["me"]["roles"] == ["doctor"]


async def test_reassign_patients_moves_them_in_one_logged_change(chain: Chain) -> None:
    leaving, _ = await chain.member("doctor", [chain.branches["main"]])
    taking, pair = await chain.member("doctor", [chain.branches["main"]])
    create = """mutation($b: ID!, $s: ID!) { createPatient(input: {name: "李四",
      homeBranchId: $b, assignedStaffId: $s}) { patient { id } } }"""
    ids = []
    for _ in range(2):
        made = await chain.q(create, {"b": chain.branches["main"], "s": leaving})
        ids.append(ok(made)["createPatient"]["patient"]["id"])
    get = "query($id: ID!) { patient(id: $id) { id } }"
    assert codes(await chain.q(get, {"id": ids[0]}, token=pair["accessToken"])) == ["NOT_FOUND"]
    before = await chain.admin_entries()
    move = """mutation($f: ID!, $t: ID!) { reassignPatients(fromStaffId: $f, toStaffId: $t) {
      moved toStaff { id } } }"""
    moved = ok(await chain.q(move, {"f": leaving, "t": taking}))["reassignPatients"]
    assert moved == {"moved": 2, "toStaff": {"id": taking}}
    assert await chain.admin_entries() == before + 1
    last = ok(await gql(chain.client, LAST_ADMIN, token=chain.auditor))["accessLog"]["edges"]
    assert last[0]["node"]["change"] == "patients.reassign"
    assert last[0]["node"]["target"] == leaving
    # The access log names every patient moved, in one update entry of the same request.
    entries = """{ accessLog(first: 2, filter: {actions: [ADMIN, UPDATE]}) {
      edges { node { action patientIds requestId actorId changeDetail } } } }"""
    pair_of = ok(await gql(chain.client, entries, token=chain.auditor))["accessLog"]["edges"]
    by_action = {e["node"]["action"]: e["node"] for e in pair_of}
    assert sorted(by_action["UPDATE"]["patientIds"]) == sorted(ids)
    assert by_action["UPDATE"]["requestId"] == by_action["ADMIN"]["requestId"]
    assert by_action["UPDATE"]["actorId"] == chain.hq_id
    assert by_action["ADMIN"]["changeDetail"].startswith("to:")
    for pid in ids:
        assert ok(await chain.q(get, {"id": pid}, token=pair["accessToken"]))["patient"]
    same = await chain.q(move, {"f": taking, "t": taking})
    assert codes(same) == ["BAD_USER_INPUT"]


async def test_reassignment_in_batches_moves_everyone_once(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows move a batch per statement (here 2): all of them move, each once, and the update
    entry names each of them."""
    monkeypatch.setattr(repository, "REASSIGN_BATCH", 2)
    leaving, _ = await chain.member("doctor", [chain.branches["main"]])
    taking, pair = await chain.member("doctor", [chain.branches["main"]])
    create = """mutation($b: ID!, $s: ID!) { createPatient(input: {name: "李四",
      homeBranchId: $b, assignedStaffId: $s}) { patient { id } } }"""
    ids = set()
    for _ in range(5):
        made = await chain.q(create, {"b": chain.branches["main"], "s": leaving})
        ids.add(ok(made)["createPatient"]["patient"]["id"])
    move = """mutation($f: ID!, $t: ID!) { reassignPatients(fromStaffId: $f, toStaffId: $t) {
      moved } }"""
    assert ok(await chain.q(move, {"f": leaving, "t": taking}))["reassignPatients"]["moved"] == 5
    mine = "{ patients(first: 50) { edges { node { id } } } }"
    seen = ok(await chain.q(mine, token=pair["accessToken"]))["patients"]["edges"]
    assert {e["node"]["id"] for e in seen} == ids
    again = await chain.q(move, {"f": leaving, "t": taking})
    assert ok(again)["reassignPatients"]["moved"] == 0


async def test_staff_list_filters(chain: Chain) -> None:
    q = """query($f: StaffFilter) { staff(first: 100, filter: $f) {
      totalCount edges { node { email isActive roles } } } }"""
    everyone = ok(await chain.q(q))["staff"]
    assert everyone["totalCount"] >= 3
    auditors = ok(await chain.q(q, {"f": {"role": "auditor"}}))["staff"]["edges"]
    assert [e["node"]["email"] for e in auditors] == [f"audit@{chain.slug}.test"]
    found = ok(await chain.q(q, {"f": {"search": "AUDIT@"}}))["staff"]["edges"]
    assert [e["node"]["email"] for e in found] == [f"audit@{chain.slug}.test"]
    inactive = ok(await chain.q(q, {"f": {"active": False}}))["staff"]["edges"]
    assert all(e["node"]["isActive"] is False for e in inactive)
    # A doctor sees a colleague's name on a patient, not the staff list.
    _id, pair = await chain.member("doctor", [chain.branches["main"]])
    assert codes(await chain.q(q, token=pair["accessToken"])) == ["FORBIDDEN"]
