"""Scope changes made through one server process are enforced by another on its next request:
a branch moved out of a region, a branch manager moved to another branch, a role changed, a
staff member disabled. Two `patientpool serve` processes on one PostgreSQL database, a chain
made by `tenant create` and the API.

The bound is the next request after the change commits: each request loads the principal's
branches and regions from the database, and reads the tenant's policy version, reloading the
process's cached Casbin enforcer when it moved (auth/policy.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth.signing_keys import SigningKeys
from tenancy.keyring import generate_master_key_text
from tests.api.test_served import _free_port, _wait_ready
from tests.chain.conftest import NEW_PASSWORD, Operator, new_chain, sign_in_pair
from tests.conftest import Database, create_pg_database, drop_pg_database
from tests.support import codes, gql, ok

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "process.cli"]

INVITE = """mutation($i: InviteStaffInput!) {
  inviteStaff(input: $i) { invitationToken staff { id } } }"""
ACCEPT = """mutation($t: String!, $p: String!) { acceptInvitation(token: $t, password: $p) }"""
UPDATE = """mutation($s: ID!, $i: UpdateStaffInput!) { updateStaff(staffId: $s, input: $i) {
  roles } }"""
MOVE = """mutation($b: ID!, $r: ID) { updateBranch(id: $b, input: {regionId: $r}) { id } }"""
PATIENT = "query($id: ID!) { patient(id: $id) { id } }"
STAFF = "{ staff(first: 100) { edges { node { id } } } }"
ME = "{ me { roles } }"


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]


@dataclass
class Deployment:
    env: dict[str, str]
    a: Server
    b: Server


def _serve(env: dict[str, str], log: Path) -> Server:
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    server = Server(f"http://127.0.0.1:{port}", proc)
    _wait_ready(server.url, proc)
    return server


@pytest.fixture(scope="module")
def deployment(
    postgres_db: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("two")
    name = f"pp_two_{os.getpid()}"
    db = asyncio.run(create_pg_database(name))
    db.migrate()
    (tmp / "signing-keys.json").write_text(SigningKeys.generate_jwks_json())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENTPOOL_")}
    env.update(
        PATIENTPOOL_DATA_DIR=str(tmp),
        PATIENTPOOL_DATABASE_URL=db.app_url,
        PATIENTPOOL_MIGRATION_DATABASE_URL=db.owner_url,
        PATIENTPOOL_MASTER_KEY=generate_master_key_text(),
    )
    a = _serve(env, tmp / "a.log")
    b = _serve(env, tmp / "b.log")
    try:
        yield Deployment(env, a, b)
    finally:
        for server in (a, b):
            server.proc.terminate()
            server.proc.wait(timeout=60)
        asyncio.run(drop_pg_database(name))


class Chain:
    """A chain made by `tenant create`; `a` is where HQ changes things, `b` where staff work."""

    def __init__(self, slug: str, a: httpx.AsyncClient, b: httpx.AsyncClient, hq: str) -> None:
        self.slug, self.a, self.b, self.hq = slug, a, b, hq

    async def q(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return ok(await gql(self.a, query, variables, token=self.hq))

    async def member(self, role: str, **places: list[str]) -> tuple[str, str]:
        """Invited through a, accepted and signed in through b: (staff id, access token)."""
        email = f"{role}.{uuid.uuid4().hex[:6]}@{self.slug}.test"
        values = {"email": email, "name": "n", "roles": [role], **places}
        invited = (await self.q(INVITE, {"i": values}))["inviteStaff"]
        ok(await gql(self.b, ACCEPT, {"t": invited["invitationToken"], "p": NEW_PASSWORD}))
        pair = await sign_in_pair(self.b, self.slug, email, NEW_PASSWORD)
        return invited["staff"]["id"], pair["accessToken"]


async def test_scope_changes_through_one_process_hold_in_the_other_on_the_next_request(
    deployment: Deployment,
) -> None:
    slug = f"two-{uuid.uuid4().hex[:8]}"
    password = await new_chain(Operator(deployment.env), slug, "--branch-name", "总店")
    async with (
        httpx.AsyncClient(base_url=deployment.a.url, timeout=60) as a,
        httpx.AsyncClient(base_url=deployment.b.url, timeout=60) as b,
    ):
        hq = (await sign_in_pair(a, slug, f"admin@{slug}.test", password))["accessToken"]
        chain = Chain(slug, a, b, hq)
        main = (await chain.q("{ branches { edges { node { id } } } }"))["branches"]["edges"]
        main_id = main[0]["node"]["id"]
        made = await chain.q(
            """mutation { createBranch(input: {code: "b2", name: "二店"}) { id } }"""
        )
        b2 = made["createBranch"]["id"]
        region = await chain.q(
            """mutation($b: [ID!]) { createRegion(name: "华东", branchIds: $b) { id } }""",
            {"b": [main_id]},
        )
        east = region["createRegion"]["id"]
        other = await chain.q("""mutation { createRegion(name: "西南") { id } }""")
        west = other["createRegion"]["id"]
        _rm_id, rm = await chain.member("region_manager", regionIds=[east])
        bm_id, bm = await chain.member("branch_manager", branchIds=[main_id])
        op_id, op = await chain.member("operator", branchIds=[main_id])
        created = await gql(
            b,
            """mutation($b: ID!) { createPatient(input: {name: "李四", homeBranchId: $b}) {
              patient { id } } }""",
            {"b": main_id},
            token=op,
        )
        patient = ok(created)["createPatient"]["patient"]["id"]

        async def sees(token: str) -> bool:
            answer = await gql(b, PATIENT, {"id": patient}, token=token)
            # NOT_FOUND outside a scope; FORBIDDEN when the scope is empty (a region manager
            # whose region has no branch left).
            if codes(answer) in (["NOT_FOUND"], ["FORBIDDEN"]):
                return False
            return ok(answer)["patient"] is not None

        # Each of them sees the patient through b (b's enforcer and principals are warm) …
        assert await sees(rm) and await sees(bm) and await sees(op)
        bm_staff = {e["node"]["id"] for e in ok(await gql(b, STAFF, token=bm))["staff"]["edges"]}
        assert op_id in bm_staff

        # … the branch leaves the region through a: the region manager no longer sees it …
        await chain.q(MOVE, {"b": main_id, "r": west})
        assert not await sees(rm)
        await chain.q(MOVE, {"b": main_id, "r": east})
        assert await sees(rm)

        # … the branch manager moves to b2: neither the patient nor main's staff any more …
        await chain.q(UPDATE, {"s": bm_id, "i": {"branchIds": [b2]}})
        assert not await sees(bm)
        bm_staff = {e["node"]["id"] for e in ok(await gql(b, STAFF, token=bm))["staff"]["edges"]}
        assert op_id not in bm_staff and bm_id in bm_staff

        # … the operator becomes a doctor (assigned patients only): a role change …
        changed = await chain.q(UPDATE, {"s": op_id, "i": {"roles": ["doctor"]}})
        assert changed["updateStaff"]["roles"] == ["doctor"]
        assert ok(await gql(b, ME, token=op))["me"]["roles"] == ["doctor"]
        assert not await sees(op)

        # … and disabled through a, the region manager is signed out at b.
        ok(
            await gql(
                a,
                "mutation($s: ID!) { setStaffActive(staffId: $s, active: false) }",
                {"s": _rm_id},
                token=hq,
            )
        )
        assert codes(await gql(b, ME, token=rm)) == ["UNAUTHENTICATED"]
