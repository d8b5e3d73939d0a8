"""Branch and region managers run the staff of their own branches, through the served API on a
chain made by `tenant create`: they invite, change, disable and reset only staff wholly in
their branches, grant only roles they hold (never one that manages staff), and see only their
branches' staff. Someone outside their scope answers NOT_FOUND, as a missing id does; someone
inside it whom they may not change answers FORBIDDEN. Refusals write nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.chain.conftest import ACCEPT, INVITE, NEW_PASSWORD, Chain
from tests.chain.test_staff_lifecycle import ME, RESET
from tests.support import codes, gql, ok

UPDATE = """mutation($s: ID!, $i: UpdateStaffInput!) { updateStaff(staffId: $s, input: $i) {
  roles branches { code } } }"""
ACTIVE = """mutation($s: ID!, $a: Boolean!) { setStaffActive(staffId: $s, active: $a) }"""
RESEND = """mutation($s: ID!) { resendInvitation(staffId: $s) { invitationToken } }"""
STAFF = """query($f: StaffFilter) { staff(first: 100, filter: $f) {
  edges { node { id email roles branches { code } } } } }"""
NODE = """query($id: ID!) { node(id: $id) { ... on Staff { id email } } }"""
ROLE = "{ roles(first: 100) { edges { node { name permissions { object action } } } } }"
SET_ROLE = """mutation($r: String!, $p: [PermissionInput!]!) {
  setRolePermissions(role: $r, permissions: $p) { name } }"""
REGION = """mutation($n: String!, $b: [ID!]) { createRegion(name: $n, branchIds: $b) { id } }"""
CREATE_BRANCH = """mutation($i: CreateBranchInput!) { createBranch(input: $i) { id } }"""
LAST_ADMIN = """{ accessLog(first: 1, filter: {actions: [ADMIN]}) {
  edges { node { actorId change target changeDetail } } } }"""


@dataclass
class Managers:
    chain: Chain
    bm_a: str  # branch manager of branch "main" (token)
    bm_a_id: str
    bm_b: str  # branch manager of branch "b2"
    colleague_id: str  # a second branch manager of "main"
    b2_operator_id: str


async def _invite(
    chain: Chain, token: str, role: str, branches: list[str], **extra: Any
) -> dict[str, Any]:
    values = {
        "email": chain.email(role.split("_")[0]),
        "name": "n",
        "roles": [role],
        "branchIds": branches,
        **extra,
    }
    return await chain.q(INVITE, {"i": values}, token=token)


@pytest.fixture(scope="module")
async def m(chain: Chain) -> Managers:
    made = ok(await chain.q(CREATE_BRANCH, {"i": {"code": "b2", "name": "二店"}}))
    chain.branches["b2"] = made["createBranch"]["id"]
    bm_a_id, bm_a = await chain.member("branch_manager", [chain.branches["main"]])
    _, bm_b = await chain.member("branch_manager", [chain.branches["b2"]])
    colleague_id, _ = await chain.member("branch_manager", [chain.branches["main"]])
    b2_operator_id, _ = await chain.member("operator", [chain.branches["b2"]])
    return Managers(
        chain, bm_a["accessToken"], bm_a_id, bm_b["accessToken"], colleague_id, b2_operator_id
    )


async def test_a_branch_manager_invites_an_operator_into_their_branch(m: Managers) -> None:
    chain = m.chain
    before = await chain.admin_entries()
    invited = ok(await _invite(chain, m.bm_a, "operator", [chain.branches["main"]]))
    staff_id = invited["inviteStaff"]["staff"]["id"]
    last = ok(await gql(chain.client, LAST_ADMIN, token=chain.auditor))["accessLog"]["edges"]
    assert last[0]["node"] == {
        "actorId": m.bm_a_id,
        "change": "staff.invite",
        "target": staff_id,
        "changeDetail": "roles=operator",
    }
    token = invited["inviteStaff"]["invitationToken"]
    ok(await chain.q(ACCEPT, {"t": token, "p": NEW_PASSWORD}, token=""))
    assert await chain.admin_entries() == before + 2  # the invitation and its acceptance
    listed = ok(await chain.q(STAFF, {"f": {"role": "operator"}}, token=m.bm_a))["staff"]
    assert [e["node"]["id"] for e in listed["edges"]] == [staff_id]


async def test_a_branch_manager_cannot_invite_beyond_their_branches_or_roles(
    m: Managers,
) -> None:
    chain = m.chain
    main, b2 = chain.branches["main"], chain.branches["b2"]
    before = await chain.admin_entries()
    tries = {
        "another branch": (await _invite(chain, m.bm_a, "operator", [b2]), "input.branchIds"),
        "both branches": (await _invite(chain, m.bm_a, "operator", [main, b2]), "input.branchIds"),
        "no branch": (await _invite(chain, m.bm_a, "operator", []), "input.branchIds"),
        "hq_admin": (await _invite(chain, m.bm_a, "hq_admin", [main]), "roles"),
        "auditor": (await _invite(chain, m.bm_a, "auditor", [main]), "roles"),
        "branch_manager": (await _invite(chain, m.bm_a, "branch_manager", [main]), "roles"),
        "region_manager": (await _invite(chain, m.bm_a, "region_manager", [main]), "roles"),
        # A doctor writes health records, which a branch manager does not (by default).
        "doctor": (await _invite(chain, m.bm_a, "doctor", [main]), "roles"),
    }
    for what, (answer, field) in tries.items():
        assert codes(answer) == ["FORBIDDEN"], what
        assert answer["errors"][0]["extensions"].get("field") == field, (what, answer)
    assert await chain.admin_entries() == before


async def test_a_manager_sees_only_the_staff_of_their_branches(m: Managers) -> None:
    chain = m.chain
    seen = ok(await chain.q(STAFF, token=m.bm_a))["staff"]["edges"]
    codes_seen = {b["code"] for e in seen for b in e["node"]["branches"]}
    assert codes_seen == {"main"}
    ids = {e["node"]["id"] for e in seen}
    assert m.b2_operator_id not in ids and chain.hq_id not in ids
    assert {m.bm_a_id, m.colleague_id} <= ids
    for hidden in (m.b2_operator_id, chain.hq_id):
        assert codes(await chain.q(NODE, {"id": hidden}, token=m.bm_a)) == ["NOT_FOUND"]
    assert ok(await chain.q(NODE, {"id": m.colleague_id}, token=m.bm_a))["node"]["email"]
    # HQ still sees everyone.
    everyone = {e["node"]["id"] for e in ok(await chain.q(STAFF))["staff"]["edges"]}
    assert {m.b2_operator_id, chain.hq_id, m.bm_a_id} <= everyone


async def test_a_manager_changes_only_staff_wholly_theirs(m: Managers) -> None:
    chain = m.chain
    main, b2 = chain.branches["main"], chain.branches["b2"]
    own_id, pair = await chain.member("operator", [main])
    before = await chain.admin_entries()
    # Invisible ids (another branch's staff, HQ) answer as missing ones do …
    for target in (m.b2_operator_id, chain.hq_id):
        for answer in (
            await chain.q(UPDATE, {"s": target, "i": {"name": "x"}}, token=m.bm_a),
            await chain.q(ACTIVE, {"s": target, "a": False}, token=m.bm_a),
            await chain.q(RESET, {"s": target}, token=m.bm_a),
        ):
            assert codes(answer) == ["NOT_FOUND"], (target, answer)
    # … a colleague manager in the same branch is visible but not theirs to change …
    for answer in (
        await chain.q(UPDATE, {"s": m.colleague_id, "i": {"name": "x"}}, token=m.bm_a),
        await chain.q(ACTIVE, {"s": m.colleague_id, "a": False}, token=m.bm_a),
        await chain.q(RESET, {"s": m.colleague_id}, token=m.bm_a),
        await chain.q(RESEND, {"s": m.colleague_id}, token=m.bm_a),
    ):
        assert codes(answer) == ["FORBIDDEN"], answer
    # … and their own operator cannot be given more, or moved out of their branches.
    for change, field in (
        ({"roles": ["hq_admin"]}, "roles"),
        ({"roles": ["doctor"]}, "roles"),
        ({"branchIds": [b2]}, "input.branchIds"),
        ({"branchIds": [main, b2]}, "input.branchIds"),
        ({"branchIds": []}, "input.branchIds"),
    ):
        answer = await chain.q(UPDATE, {"s": own_id, "i": change}, token=m.bm_a)
        assert codes(answer) == ["FORBIDDEN"], change
        assert answer["errors"][0]["extensions"].get("field") == field, change
    assert await chain.admin_entries() == before
    # What is theirs, they run: rename, reset, disable (each one entry).
    renamed = ok(await chain.q(UPDATE, {"s": own_id, "i": {"name": "新名"}}, token=m.bm_a))
    assert renamed["updateStaff"]["branches"] == [{"code": "main"}]
    assert ok(await chain.q(RESET, {"s": own_id}, token=m.bm_a))["resetStaffPassword"]
    assert ok(await chain.q(ACTIVE, {"s": own_id, "a": False}, token=m.bm_a)) == {
        "setStaffActive": False
    }
    assert await chain.admin_entries() == before + 3
    assert codes(await chain.q(ME, token=pair["accessToken"])) == ["UNAUTHENTICATED"]


async def test_the_rules_decide_what_a_manager_may_grant(m: Managers) -> None:
    """Give branch managers health-record writing (HQ, through the rules) and they can invite
    doctors; the scope of branches still holds."""
    chain = m.chain
    main, b2 = chain.branches["main"], chain.branches["b2"]
    roles = ok(await chain.q(ROLE))["roles"]["edges"]
    perms = next(e["node"]["permissions"] for e in roles if e["node"]["name"] == "branch_manager")
    wider = [*perms, {"object": "fields:health", "action": "write"}]
    ok(await chain.q(SET_ROLE, {"r": "branch_manager", "p": wider}))
    try:
        doctor = ok(await _invite(chain, m.bm_a, "doctor", [main]))["inviteStaff"]
        assert doctor["staff"]["id"]
        assert codes(await _invite(chain, m.bm_a, "doctor", [b2])) == ["FORBIDDEN"]
        assert codes(await _invite(chain, m.bm_a, "hq_admin", [main])) == ["FORBIDDEN"]
    finally:
        ok(await chain.q(SET_ROLE, {"r": "branch_manager", "p": perms}))
    assert codes(await _invite(chain, m.bm_a, "doctor", [main])) == ["FORBIDDEN"]


async def test_a_region_manager_runs_the_staff_of_their_regions_branches(m: Managers) -> None:
    chain = m.chain
    main, b2 = chain.branches["main"], chain.branches["b2"]
    region = ok(await chain.q(REGION, {"n": f"西区{chain.n}", "b": [b2]}))["createRegion"]["id"]
    _rm_id, rm = await chain.member("region_manager")
    ok(await chain.q(UPDATE, {"s": _rm_id, "i": {"regionIds": [region]}}))
    token = rm["accessToken"]
    seen = ok(await chain.q(STAFF, token=token))["staff"]["edges"]
    assert m.b2_operator_id in {e["node"]["id"] for e in seen}
    assert all(b["code"] == "b2" for e in seen for b in e["node"]["branches"])
    assert ok(await _invite(chain, token, "operator", [b2]))["inviteStaff"]
    assert codes(await _invite(chain, token, "operator", [main])) == ["FORBIDDEN"]
    assert codes(await _invite(chain, token, "region_manager", [b2])) == ["FORBIDDEN"]
    assert codes(await _invite(chain, token, "operator", [b2], regionIds=[region])) == ["FORBIDDEN"]
    # The branch manager of b2 is in their branches but manages staff: not theirs to change.
    b2_manager = next(e["node"]["id"] for e in seen if "branch_manager" in e["node"]["roles"])
    assert codes(await chain.q(ACTIVE, {"s": b2_manager, "a": False}, token=token)) == ["FORBIDDEN"]
    answer = await chain.q(UPDATE, {"s": m.b2_operator_id, "i": {"name": "区改"}}, token=token)
    assert ok(answer)["updateStaff"]["branches"] == [{"code": "b2"}]
