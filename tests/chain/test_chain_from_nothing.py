"""A chain from nothing, through the command line and the served API only: `tenant create`,
the HQ admin's second factor (enrolled, then signed in with it), regions and branches, an
invitation in every role, each accepted and signed in, a patient made by an operator, read by
their doctor, seen by the region manager (with the region's metrics) and not by a branch
manager of the other region; the admin trail holds one entry per change and `audit verify`
holds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp

from tests.chain.conftest import NEW_PASSWORD, Operator, new_chain, sign_in_pair
from tests.support import codes, gql, ok

CREATE_REGION = """mutation($n: String!) { createRegion(name: $n) { id name } }"""
CREATE_BRANCH = """mutation($i: CreateBranchInput!) {
  createBranch(input: $i) { id code name city isOpen region { id name } } }"""
INVITE = """mutation($i: InviteStaffInput!) {
  inviteStaff(input: $i) { invitationToken expiresAt
    staff { id email isActive invitationPending roles branches { code } regions { name } } } }"""
ACCEPT = """mutation($t: String!, $p: String!) { acceptInvitation(token: $t, password: $p) }"""
CREATE_PATIENT = """mutation($i: CreatePatientInput!) {
  createPatient(input: $i) { patient { id name homeBranch { code } } } }"""
PATIENT = """query($id: ID!) { patient(id: $id) { id name } }"""
PATIENTS = """{ patients(first: 50) { totalCount edges { node { id homeBranch { code } } } } }"""
METRICS = """query($f: DateTime!, $t: DateTime!) { metrics(from: $f, to: $t) {
  total { leads } byBranch { branch { code } figures { leads } }
  byRegion { region { name } figures { leads } } } }"""
POOL = """{ poolMetrics { total byRegion { key count } } }"""
ADMIN_LOG = """query($after: String) {
  accessLog(first: 100, after: $after, filter: {actions: [ADMIN]}) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { actorType actorId change target changeDetail patientIds } } } }"""

BRANCH_ROLES = {"doctor", "health_manager", "operator"}


async def _admin_entries(api: httpx.AsyncClient, auditor: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = None
    while True:
        page = ok(await gql(api, ADMIN_LOG, {"after": after}, token=auditor))["accessLog"]
        out += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return out
        after = page["pageInfo"]["endCursor"]


async def test_a_chain_from_nothing(api: httpx.AsyncClient, operator: Operator, unique: str):
    slug = f"acme-{unique}"
    admin_password = await new_chain(operator, slug)
    first = (await sign_in_pair(api, slug, f"admin@{slug}.test", admin_password))["accessToken"]

    # The HQ admin's first step: a second factor, then signing in with it.
    started = ok(await gql(api, "mutation { startTotpEnrolment { otpauthUri } }", token=first))
    factor = pyotp.parse_uri(started["startTotpEnrolment"]["otpauthUri"])
    assert isinstance(factor, pyotp.TOTP)
    confirm = "mutation($k: String!) { confirmTotp(code: $k) { recoveryCodes } }"
    recovery = ok(await gql(api, confirm, {"k": factor.now()}, token=first))["confirmTotp"]
    assert len(recovery["recoveryCodes"]) == 10
    answer = await sign_in_pair(api, slug, f"admin@{slug}.test", admin_password)
    assert answer["accessToken"] is None and answer["secondFactorRequired"] is True
    verify = """mutation($c: String!, $k: String!) { verifyTotp(challenge: $c, code: $k) {
      accessToken } }"""
    # The next step's code: the one just used to confirm is spent (one step of drift is allowed).
    code = factor.at(time.time() + 30)
    done = await gql(api, verify, {"c": answer["challenge"], "k": code})
    hq = ok(done)["verifyTotp"]["accessToken"]

    east = ok(await gql(api, CREATE_REGION, {"n": "华东"}, token=hq))["createRegion"]
    west = ok(await gql(api, CREATE_REGION, {"n": "西南"}, token=hq))["createRegion"]
    branches: dict[str, dict[str, Any]] = {}
    for code, city, region in (("sh1", "上海", east), ("hz1", "杭州", east), ("cd1", "成都", west)):
        made = await gql(
            api,
            CREATE_BRANCH,
            {"i": {"code": code, "name": f"{city}店", "city": city, "regionId": region["id"]}},
            token=hq,
        )
        branches[code] = ok(made)["createBranch"]
        assert branches[code]["region"]["name"] == region["name"]
        assert branches[code]["isOpen"] is True

    # One member in every role. The auditor is appointed by the platform operator: HQ admins
    # do not hold the access log's permissions, so they cannot grant them.
    places: dict[str, dict[str, list[str]]] = {
        "hq_admin": {},
        "marketing": {},
        "region_manager": {"regionIds": [east["id"]]},
        "branch_manager": {"branchIds": [branches["cd1"]["id"]]},
        "doctor": {"branchIds": [branches["sh1"]["id"]]},
        "health_manager": {"branchIds": [branches["sh1"]["id"]]},
        "operator": {"branchIds": [branches["sh1"]["id"], branches["hz1"]["id"]]},
    }
    tokens: dict[str, str] = {}
    staff_ids: dict[str, str] = {}
    for role, where in places.items():
        email = f"{role.replace('_', '-')}@{slug}.test"
        answer = await gql(
            api,
            INVITE,
            {"i": {"email": email, "name": f"名 {role}", "roles": [role], **where}},
            token=hq,
        )
        invited = ok(answer)["inviteStaff"]
        assert invited["staff"]["isActive"] is False
        assert invited["staff"]["invitationPending"] is True
        assert invited["staff"]["roles"] == [role]
        tokens[role] = invited["invitationToken"]
        staff_ids[role] = invited["staff"]["id"]
    refused = await gql(
        api,
        INVITE,
        {"i": {"email": f"auditor@{slug}.test", "name": "审计", "roles": ["auditor"]}},
        token=hq,
    )
    assert codes(refused) == ["FORBIDDEN"]
    assert refused["errors"][0]["extensions"]["field"] == "roles"
    out = await operator.run(
        "staff", "invite", "--tenant", slug, "--email", f"auditor@{slug}.test",
        "--role", "auditor",
    )  # fmt: skip
    tokens["auditor"] = out.strip().splitlines()[-1]
    assert tokens["auditor"].startswith("ppi_")

    signed: dict[str, str] = {}
    for role, token in tokens.items():
        email = f"{role.replace('_', '-')}@{slug}.test"
        # Before accepting, the account cannot sign in.
        before = await gql(
            api, "mutation($t:String!,$e:String!,$p:String!){signIn(tenant:$t,email:$e,"
            "password:$p){accessToken}}", {"t": slug, "e": email, "p": NEW_PASSWORD},
        )  # fmt: skip
        assert codes(before) == ["UNAUTHENTICATED"]
        assert ok(await gql(api, ACCEPT, {"t": token, "p": NEW_PASSWORD}))["acceptInvitation"]
        signed[role] = (await sign_in_pair(api, slug, email, NEW_PASSWORD))["accessToken"]
        me = ok(await gql(api, "{ me { roles } }", token=signed[role]))["me"]
        assert me["roles"] == [role]

    # The operator adds a patient in each of their branches; the first is the doctor's.
    made = {}
    for code, assigned in (("sh1", staff_ids["doctor"]), ("hz1", None)):
        values = {"name": f"患者{code}", "homeBranchId": branches[code]["id"]}
        if assigned:
            values["assignedStaffId"] = assigned
        answer = await gql(api, CREATE_PATIENT, {"i": values}, token=signed["operator"])
        made[code] = ok(answer)["createPatient"]["patient"]
    # …but not at a branch that is not theirs.
    elsewhere = await gql(
        api,
        CREATE_PATIENT,
        {"i": {"name": "外店", "homeBranchId": branches["cd1"]["id"]}},
        token=signed["operator"],
    )
    assert "errors" in elsewhere

    read = ok(await gql(api, PATIENT, {"id": made["sh1"]["id"]}, token=signed["doctor"]))
    assert read["patient"]["name"] == "患者sh1"
    hidden = await gql(api, PATIENT, {"id": made["hz1"]["id"]}, token=signed["doctor"])
    assert codes(hidden) == ["NOT_FOUND"]

    seen = ok(await gql(api, PATIENTS, token=signed["region_manager"]))["patients"]
    assert seen["totalCount"] == 2
    assert {e["node"]["id"] for e in seen["edges"]} == {made["sh1"]["id"], made["hz1"]["id"]}
    now = datetime.now(UTC)
    day = timedelta(days=1)
    period = {"f": (now - day).isoformat(), "t": (now + day).isoformat()}
    metrics = ok(await gql(api, METRICS, period, token=signed["region_manager"]))["metrics"]
    assert metrics["total"]["leads"] == 2
    assert metrics["byRegion"] == [{"region": {"name": "华东"}, "figures": {"leads": 2}}]
    assert sorted(b["branch"]["code"] for b in metrics["byBranch"]) == ["hz1", "sh1"]
    pool = ok(await gql(api, POOL, token=signed["region_manager"]))["poolMetrics"]
    assert pool["total"] == 2
    assert pool["byRegion"] == [{"key": east["id"], "count": 2}]
    chain = ok(await gql(api, METRICS, period, token=hq))["metrics"]
    assert chain["byRegion"] == [{"region": {"name": "华东"}, "figures": {"leads": 2}}]

    other = ok(await gql(api, PATIENTS, token=signed["branch_manager"]))["patients"]
    assert other["totalCount"] == 0
    for patient in made.values():
        answer = await gql(api, PATIENT, {"id": patient["id"]}, token=signed["branch_manager"])
        assert codes(answer) == ["NOT_FOUND"]
    theirs = ok(await gql(api, METRICS, period, token=signed["branch_manager"]))["metrics"]
    assert theirs["total"]["leads"] == 0 and theirs["byRegion"] == []

    # The admin trail: one entry per administrative change, with actor and target.
    entries = await _admin_entries(api, signed["auditor"])
    changes = sorted(e["change"] for e in entries)
    assert changes == sorted(
        ["region.create"] * 2
        + ["branch.create"] * 3
        + ["staff.invite"] * 8
        + ["staff.invitation_accept"] * 8
        + ["staff.totp_enrol"]
    )
    invites = [e for e in entries if e["change"] == "staff.invite" and e["actorType"] == "user"]
    assert {e["target"] for e in invites} == set(staff_ids.values())
    assert all(e["patientIds"] == [] for e in entries)
    assert any(e["actorType"] == "system" for e in entries)  # the CLI's invitation

    out = await operator.run("audit", "verify", "--tenant", slug)
    assert f"{slug}: ok" in out
