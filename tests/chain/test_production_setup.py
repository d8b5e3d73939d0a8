"""A new chain set up in production, where only trusted documents run: every set-up call the
README's "Setting up your chain" shows is one of the project's own operations
(frontend-schema/operations, pushed by `patientpool migrate` as client `patientpool`), and
the whole set-up runs by those documents' hashes alone: `tenant create`, HQ's second factor,
regions, branches, staff in every role accepting and signing in, a branch manager inviting
into their branch, resets and reassignment."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from graphql import OperationDefinitionNode, parse

from api.context import AppState
from api.documents import sha256
from api.schema import OPERATIONS
from process.serve import app_state
from tests.api.production import production_client
from tests.chain.conftest import NEW_PASSWORD, Operator, new_chain
from tests.chain.test_two_factor import Clock
from tests.support import codes, ok

README = Path(__file__).resolve().parents[2] / "README.md"

# The root fields the README's set-up (and its two-factor part) has a chain call.
SETUP_FIELDS = {
    "signIn", "verifyTotp", "startTotpEnrolment", "confirmTotp", "setTwoFactorPolicy",
    "twoFactorPolicy", "resetTotp", "createRegion", "updateRegion", "createBranch",
    "updateBranch", "closeBranch", "reopenBranch", "branches", "inviteStaff",
    "resendInvitation", "revokeInvitation", "acceptInvitation", "staff", "updateStaff",
    "setStaffActive", "resetStaffPassword", "completePasswordReset", "reassignPatients",
}  # fmt: skip


def _registry() -> dict[str, tuple[str, set[str]]]:
    """Operation name → (its file's text, the root fields it selects)."""
    found: dict[str, tuple[str, set[str]]] = {}
    for path in sorted(OPERATIONS.glob("*.graphql")):
        text = path.read_text(encoding="utf-8")
        for op in parse(text).definitions:
            assert isinstance(op, OperationDefinitionNode) and op.name is not None
            fields = {s.name.value for s in op.selection_set.selections}  # type: ignore[attr-defined]
            found[op.name.value] = (text, fields)
    return found


def _readme_setup() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Setting up your chain")
    end = text.index("\n## ", text.index("### Two-factor sign-in", start))
    return text[start:end]


def test_every_setup_call_in_the_readme_is_a_trusted_operation() -> None:
    readme = _readme_setup()
    for name in SETUP_FIELDS:
        assert re.search(rf"\b{name}\b", readme), f"README set-up no longer shows {name}"
    # Every root field the README's set-up calls in a GraphQL block is in SETUP_FIELDS.
    for block in re.findall(r"```graphql\n(.*?)```", readme, flags=re.S):
        called = set(re.findall(r"(?:mutation|query)\s*\{\s*(\w+)", block))
        assert called <= SETUP_FIELDS, called - SETUP_FIELDS
    covered = set().union(*(fields for _text, fields in _registry().values()))
    assert covered >= SETUP_FIELDS, SETUP_FIELDS - covered


class Trusted:
    """Sends the project's operations by hash only (GraphQL over HTTP's documentId)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.ops = _registry()

    async def run(
        self, name: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        text, _fields = self.ops[name]
        body = {
            "documentId": f"sha256:{sha256(text)}",
            "operationName": name,
            "variables": variables or {},
        }
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post("/graphql", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def prod(chain_state: AppState, operator: Operator) -> AsyncIterator[tuple[Trusted, Clock]]:
    from auth.ratelimit import WindowLimit
    from auth.sessions import SignInLimits

    # `migrate` publishes frontend-schema/operations as the client `patientpool`.
    await operator.run("migrate")
    clock = Clock()
    limits = SignInLimits(
        WindowLimit(1000, 300, "account"),
        WindowLimit(100_000, 300, "address"),
        second_factor=WindowLimit(5, 300, "second_factor", clock=clock.tick),
        now=clock.now,
    )
    state = app_state(
        chain_state.settings,
        chain_state.sessions,
        chain_state.key_provider,
        chain_state.signing_keys,
        limits,
    )
    async with production_client(state, "only") as client:
        yield Trusted(client), clock


async def test_a_new_chain_is_set_up_in_production_by_trusted_documents_only(
    prod: tuple[Trusted, Clock], operator: Operator, unique: str
) -> None:
    api, clock = prod
    slug = f"prod-{unique}"
    password = await new_chain(operator, slug, "--branch-name", "总店", "--branch-city", "上海")
    # Nothing but the registry runs: a typed document is refused, an unknown hash not found.
    typed = await api.client.post("/graphql", json={"query": "{ me { roles } }"})
    assert codes(typed.json()) == ["FORBIDDEN"]
    unknown = await api.client.post("/graphql", json={"documentId": f"sha256:{'0' * 64}"})
    assert codes(unknown.json()) == ["PERSISTED_QUERY_NOT_FOUND"]

    async def sign_in(email: str, secret: str | None = None) -> str:
        signed = ok(await api.run("SignIn", {"tenant": slug, "email": email, "password": pw}))
        answer = signed["signIn"]
        if secret is None:
            assert answer["secondFactorRequired"] is False, answer
            return str(answer["accessToken"])
        assert answer["secondFactorRequired"] is True and answer["challenge"]
        code = pyotp.TOTP(secret).at(clock.at)
        done = ok(await api.run("VerifyTotp", {"challenge": answer["challenge"], "code": code}))
        return str(done["verifyTotp"]["accessToken"])

    pw = password
    admin = f"admin@{slug}.test"
    hq = await sign_in(admin)
    # HQ's second factor first, then the rule that administrators must use one.
    started = ok(await api.run("StartTotpEnrolment", token=hq))["startTotpEnrolment"]
    secret = started["secret"]
    code = pyotp.TOTP(secret).at(clock.at)
    confirmed = ok(await api.run("ConfirmTotp", {"code": code}, hq))["confirmTotp"]
    assert len(confirmed["recoveryCodes"]) == 10
    clock.at += timedelta(seconds=30)  # the confirming code is spent
    policy = ok(await api.run("SetTwoFactorPolicy", {"roles": None}, hq))["setTwoFactorPolicy"]
    assert policy["enforced"] and set(policy["requiredRoles"]) == {"hq_admin", "auditor"}
    assert ok(await api.run("TwoFactorPolicy", token=hq))["twoFactorPolicy"] == policy
    hq = await sign_in(admin, secret)

    # Regions and branches.
    east = ok(await api.run("CreateRegion", {"name": "华东"}, hq))["createRegion"]["id"]
    ok(await api.run("UpdateRegion", {"id": east, "name": "华东大区"}, hq))
    branches = ok(await api.run("Branches", {"first": 10}, hq))["branches"]["edges"]
    main = branches[0]["node"]["id"]
    ok(await api.run("UpdateBranch", {"id": main, "input": {"regionId": east}}, hq))
    made = await api.run(
        "CreateBranch",
        {"input": {"code": "hz1", "name": "杭州店", "city": "杭州", "regionId": east}},
        hq,
    )
    hz = ok(made)["createBranch"]
    assert hz["region"]["name"] == "华东大区"
    assert ok(await api.run("CloseBranch", {"id": hz["id"]}, hq))["closeBranch"]["isOpen"] is False
    assert ok(await api.run("ReopenBranch", {"id": hz["id"]}, hq))["reopenBranch"]["isOpen"]
    regions = ok(await api.run("Regions", token=hq))["regions"]["edges"]
    assert [e["node"]["name"] for e in regions] == ["华东大区"]

    # Staff in every branch role, each accepting (no sign-in) and signing in.
    places = {
        "branch_manager": {"branchIds": [main]},
        "region_manager": {"regionIds": [east]},
        "doctor": {"branchIds": [main]},
        "health_manager": {"branchIds": [main]},
        "operator": {"branchIds": [hz["id"]]},
        "marketing": {},
    }
    people: dict[str, tuple[str, str]] = {}
    for role, where in places.items():
        email = f"{role.replace('_', '')}@{slug}.test"
        values = {"email": email, "name": "n", "roles": [role], **where}
        invited = ok(await api.run("InviteStaff", {"input": values}, hq))["inviteStaff"]
        token = invited["invitationToken"]
        ok(await api.run("AcceptInvitation", {"token": token, "password": NEW_PASSWORD}))
        people[role] = (invited["staff"]["id"], email)
    pw = NEW_PASSWORD
    tokens = {role: await sign_in(email) for role, (_id, email) in people.items()}
    me = ok(await api.run("Me", token=tokens["doctor"]))["me"]
    assert me["roles"] == ["doctor"] and me["branches"][0]["id"] == main

    # A branch manager invites into their own branch; the list shows their branch's staff.
    by_manager = await api.run(
        "InviteStaff",
        {"input": {"email": f"op2@{slug}.test", "name": "n", "roles": ["operator"],
                   "branchIds": [main]}},
        tokens["branch_manager"],
    )  # fmt: skip
    pending = ok(by_manager)["inviteStaff"]["staff"]["id"]
    resent = ok(await api.run("ResendInvitation", {"staffId": pending}, tokens["branch_manager"]))
    assert resent["resendInvitation"]["invitationToken"]
    revoked = await api.run("RevokeInvitation", {"staffId": pending}, tokens["branch_manager"])
    assert ok(revoked)["revokeInvitation"]["invitationPending"] is False
    listed = ok(await api.run("StaffList", {"first": 50}, tokens["branch_manager"]))["staff"]
    assert people["operator"][0] not in {e["node"]["id"] for e in listed["edges"]}

    # Running the team: change, reset, reassign, disable.
    doctor_id = people["doctor"][0]
    changed = await api.run(
        "UpdateStaff", {"staffId": doctor_id, "input": {"branchIds": [main, hz["id"]]}}, hq
    )
    assert len(ok(changed)["updateStaff"]["branches"]) == 2
    reset = ok(await api.run("ResetStaffPassword", {"staffId": doctor_id}, hq))
    new = {"token": reset["resetStaffPassword"]["resetToken"], "password": "another long one"}
    assert ok(await api.run("CompletePasswordReset", new))["completePasswordReset"] is True
    moved = await api.run(
        "ReassignPatients",
        {"fromStaffId": doctor_id, "toStaffId": people["health_manager"][0]},
        hq,
    )
    assert ok(moved)["reassignPatients"]["moved"] == 0
    ok(await api.run("SetStaffActive", {"staffId": people["marketing"][0], "active": False}, hq))
    assert ok(await api.run("ResetTotp", {"staffId": doctor_id}, hq))["resetTotp"] is not None
