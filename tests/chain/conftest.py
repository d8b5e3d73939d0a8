"""A chain set up the way a customer sets one up: `patientpool tenant create` and `patientpool
staff invite` on the command line, then the GraphQL API through the ASGI app, on an app whose
master key the commands share (they read it from the environment, as in production)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from api.app import create_app
from api.context import AppState
from auth.ratelimit import WindowLimit
from auth.sessions import SignInLimits
from auth.signing_keys import SigningKeys
from process.cli import app as cli
from process.serve import app_state
from process.settings import Settings
from tenancy.keyring import LocalKeyProvider, generate_master_key_text
from tenancy.session import make_engine, session_factory
from tests.conftest import Database
from tests.support import gql, ok

NEW_PASSWORD = "a long new password 1"


class Operator:
    """Runs `patientpool …` as an operator would, with the deployment's environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def _run(self, args: list[str]) -> str:
        result = CliRunner().invoke(cli, args, env=self.env)
        assert result.exit_code == 0, (result.exit_code, result.output)
        return result.output

    async def run(self, *args: str) -> str:
        # The commands run their own event loop: give them a thread.
        return await asyncio.to_thread(self._run, list(args))

    async def fails(self, *args: str) -> str:
        result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=self.env)
        assert result.exit_code != 0, result.output
        return result.output


@pytest.fixture(scope="session")
def master_key_text() -> str:
    return generate_master_key_text()


@pytest.fixture(scope="session")
def chain_env(db: Database, master_key_text: str, tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("chain")
    env = {
        "PATIENTPOOL_DATA_DIR": str(data_dir),
        "PATIENTPOOL_DATABASE_URL": db.app_url,
        "PATIENTPOOL_MIGRATION_DATABASE_URL": db.owner_url,
        "PATIENTPOOL_MASTER_KEY": master_key_text,
    }
    return env, Settings(
        data_dir=data_dir,
        database_url=db.app_url,
        migration_database_url=db.owner_url,
        master_key=master_key_text,
    )


@pytest.fixture(scope="session")
def operator(chain_env: tuple[dict[str, str], Settings]) -> Operator:
    return Operator(chain_env[0])


@pytest.fixture(scope="session")
async def chain_state(
    db: Database,
    chain_env: tuple[dict[str, str], Settings],
    master_key_text: str,
    signing_keys: SigningKeys,
) -> AsyncIterator[AppState]:
    _, settings = chain_env
    engine = make_engine(db.app_url, pool_size=5)
    limits = SignInLimits(WindowLimit(10, 300, "account"), WindowLimit(100_000, 300, "address"))
    provider = LocalKeyProvider.from_text(master_key_text)
    yield app_state(settings, session_factory(engine), provider, signing_keys, limits)
    await engine.dispose()


@pytest.fixture
async def api(chain_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(chain_state.settings, chain_state)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


SIGN_IN = """mutation($t: String!, $e: String!, $p: String!) {
  signIn(tenant: $t, email: $e, password: $p) {
    accessToken refreshToken expiresIn secondFactorRequired challenge } }"""


async def sign_in_pair(
    client: httpx.AsyncClient, slug: str, email: str, password: str
) -> dict[str, Any]:
    result = await gql(client, SIGN_IN, {"t": slug, "e": email, "p": password})
    assert "errors" not in result, result
    return result["data"]["signIn"]


async def new_chain(operator: Operator, slug: str, *extra: str) -> str:
    """`patientpool tenant create`; returns the HQ admin's password it printed."""
    out = await operator.run(
        "tenant", "create", "--slug", slug, "--name", f"Chain {slug}",
        "--admin-email", f"admin@{slug}.test", *extra,
    )  # fmt: skip
    return out.split("password: ", 1)[1].split()[0]


INVITE = """mutation($i: InviteStaffInput!) {
  inviteStaff(input: $i) { invitationToken staff { id } } }"""
ACCEPT = """mutation($t: String!, $p: String!) { acceptInvitation(token: $t, password: $p) }"""
ADMIN_COUNT = "{ accessLog(filter: {actions: [ADMIN]}) { totalCount } }"


@dataclass
class Chain:
    slug: str
    client: httpx.AsyncClient
    hq: str
    hq_id: str
    auditor: str
    branches: dict[str, str] = field(default_factory=dict)
    n: int = 0

    def email(self, tag: str) -> str:
        self.n += 1
        return f"{tag}{self.n}@{self.slug}.test"

    async def q(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """As HQ by default; `token=""` sends no token (the public mutations)."""
        return await gql(self.client, query, variables, token=self.hq if token is None else token)

    async def admin_entries(self) -> int:
        result = await gql(self.client, ADMIN_COUNT, token=self.auditor)
        return int(ok(result)["accessLog"]["totalCount"])

    async def invite(self, role: str, branches: list[str] = ()) -> tuple[str, str, str]:
        email = self.email(role.split("_")[0])
        values = {"email": email, "name": "n", "roles": [role], "branchIds": list(branches)}
        invited = ok(await self.q(INVITE, {"i": values}))["inviteStaff"]
        return email, invited["invitationToken"], invited["staff"]["id"]

    async def member(self, role: str, branches: list[str] = ()) -> tuple[str, dict[str, Any]]:
        """A staff member who accepted; (staff id, their token pair)."""
        email, token, staff_id = await self.invite(role, branches)
        ok(await self.q(ACCEPT, {"t": token, "p": NEW_PASSWORD}, token=""))
        return staff_id, await sign_in_pair(self.client, self.slug, email, NEW_PASSWORD)


@pytest.fixture(scope="module")
async def chain(chain_state: AppState, operator: Operator) -> AsyncIterator[Chain]:
    """One chain per test module: `tenant create` with a first branch ("main"), its HQ admin
    signed in, and an auditor invited by `staff invite` on the command line."""
    slug = f"life-{uuid.uuid4().hex[:8]}"
    password = await new_chain(operator, slug, "--branch-name", "总店", "--branch-city", "上海")
    application = create_app(chain_state.settings, chain_state)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        hq = (await sign_in_pair(client, slug, f"admin@{slug}.test", password))["accessToken"]
        me = ok(await gql(client, "{ me { user { id } } }", token=hq))["me"]
        out = await operator.run(
            "staff", "invite", "--tenant", slug, "--email", f"audit@{slug}.test",
            "--role", "auditor",
        )  # fmt: skip
        token = out.strip().splitlines()[-1]
        ok(await gql(client, ACCEPT, {"t": token, "p": NEW_PASSWORD}))
        auditor = await sign_in_pair(client, slug, f"audit@{slug}.test", NEW_PASSWORD)
        c = Chain(slug, client, hq, me["user"]["id"], auditor["accessToken"])
        branches = ok(await gql(client, "{ branches { edges { node { id code } } } }", token=hq))
        c.branches = {e["node"]["code"]: e["node"]["id"] for e in branches["branches"]["edges"]}
        yield c
