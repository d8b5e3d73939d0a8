"""Stored referral figures (domain.referrals.figures) stay equal to a recomputation from the
tables through everything that moves them, made through GraphQL: links (also of a patient
who already brought others), payments, partial and full refunds, merges; and on PostgreSQL
under links and payments racing each other."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.context import AppState
from api.ids import parse_global_id
from domain.patients.models import Patient
from domain.referrals import figures
from domain.referrals.models import Referral, ReferralFigures
from domain.tenants.models import Tenant
from process.demo import load_demo
from process.settings import Settings
from tenancy.session import bind_tenant, make_engine, session_factory
from tests.care.test_referral_tree import oracle
from tests.conftest import Database
from tests.support import World, build_world, gql, ok, sign_in

CREATE = """mutation($i: CreatePatientInput!) { createPatient(input: $i) { patient {
  id referralCode } } }"""
LINK = """mutation($p: ID!, $c: String!) {
  linkReferral(patientId: $p, referralCode: $c) { eligible } }"""
ORDER = """mutation($p: ID!, $b: ID!, $l: [OrderLineInput!]!) {
  createOrder(patientId: $p, branchId: $b, lines: $l) { id } }"""
PAY = "mutation($id: ID!) { payOrder(id: $id) { status } }"
REFUND = """mutation($id: ID!, $a: Decimal!) { refundOrder(id: $id, amount: $a, reason: "r") {
  status } }"""
MERGE = "mutation($k: ID!, $m: ID!) { mergePatients(keepId: $k, mergeId: $m) { id } }"
TREE = """query($p: ID!) { referralTree(patientId: $p, depth: 50, maxNodes: 1000) {
  nodes { patient { id } subtreeSize convertedCount convertedValue } } }"""


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"f-{unique}")


Figures = dict[uuid.UUID, tuple[int, int, int]]


async def stored_in(session: AsyncSession) -> Figures:
    """The bound tenant's stored figures (all-zero rows left out, as the oracle has none)."""
    rows = await session.execute(
        select(
            ReferralFigures.patient_id,
            ReferralFigures.descendants,
            ReferralFigures.converted,
            ReferralFigures.converted_fen,
        )
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows if (r[1], r[2], r[3]) != (0, 0, 0)}


async def expected_in(session: AsyncSession) -> Figures:
    """The Python oracle over the bound tenant's links and paid totals as they are stored."""
    parent = dict((await session.execute(select(Referral.referred_id, Referral.referrer_id))).all())
    fen = dict((await session.execute(select(Patient.id, Patient.order_total_fen))).all())
    return oracle(parent, fen)


async def stored(owner: AppState, world: World) -> Figures:
    async with owner.sessions() as session:
        await bind_tenant(session, world.tenant_id)
        return await stored_in(session)


async def expected(owner: AppState, world: World) -> Figures:
    async with owner.sessions() as session:
        await bind_tenant(session, world.tenant_id)
        return await expected_in(session)


async def assert_exact(owner: AppState, world: World) -> None:
    want = await expected(owner, world)
    assert await stored(owner, world) == want
    # and `rebuild` (what bulk loads use) lands on the same figures
    async with owner.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        await figures.rebuild(session)
    assert await stored(owner, world) == want


class Chain:
    """Patients made and moved through the API by an HQ admin."""

    def __init__(self, client: httpx.AsyncClient, world: World, token: str) -> None:
        self.client, self.world, self.token = client, world, token
        self.codes: dict[str, str] = {}
        self.ids: dict[str, str] = {}

    async def patient(self, name: str, referrer: str | None = None) -> str:
        extra = {"referralCode": self.codes[referrer]} if referrer else {}
        made = ok(
            await gql(
                self.client,
                CREATE,
                {"i": {"name": name, "homeBranchId": self.world.branch_gid("b1"), **extra}},
                token=self.token,
            )
        )["createPatient"]["patient"]
        self.codes[name], self.ids[name] = made["referralCode"], made["id"]
        return made["id"]

    async def link(self, name: str, referrer: str) -> None:
        ok(
            await gql(
                self.client,
                LINK,
                {"p": self.ids[name], "c": self.codes[referrer]},
                token=self.token,
            )
        )

    async def paid_order(self, name: str, yuan: str) -> str:
        order = ok(
            await gql(
                self.client,
                ORDER,
                {
                    "p": self.ids[name],
                    "b": self.world.branch_gid("b1"),
                    "l": [{"service": "洁牙", "quantity": 1, "unitPrice": yuan}],
                },
                token=self.token,
            )
        )["createOrder"]["id"]
        ok(await gql(self.client, PAY, {"id": order}, token=self.token))
        return order

    async def refund(self, order: str, yuan: str) -> None:
        ok(await gql(self.client, REFUND, {"id": order, "a": yuan}, token=self.token))


async def test_figures_follow_links_payments_refunds_and_merges(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    chain = Chain(client, world, hq)
    await chain.patient("root")
    await chain.patient("a", "root")
    await chain.patient("b", "a")
    await chain.patient("c", "b")
    await chain.patient("d", "root")
    # a patient who brought others before being referred themselves
    await chain.patient("e")
    await chain.patient("f", "e")
    await chain.patient("g", "f")
    await assert_exact(owner_state, world)

    first = await chain.paid_order("c", "1280.50")
    await chain.paid_order("g", "99.99")
    await chain.paid_order("c", "300.00")  # a repurchase: converted stays, fen grows
    await assert_exact(owner_state, world)

    await chain.link("e", "b")  # e's subtree (f, g and g's payment) moves under b
    figures_of = await stored(owner_state, world)
    root = parse_global_id(chain.ids["root"], "Patient")
    assert figures_of[root] == (7, 2, 128050 + 9999 + 30000)
    await assert_exact(owner_state, world)

    await chain.refund(first, "100.01")  # partial: still converted
    await assert_exact(owner_state, world)
    await chain.refund(first, "1180.49")  # the first order in full; the repurchase remains
    await assert_exact(owner_state, world)

    # A duplicate record of d with a payment, merged into g: g's total grows, d's stays.
    await chain.patient("d2")
    await chain.paid_order("d2", "50.00")
    ok(await gql(client, MERGE, {"k": chain.ids["g"], "m": chain.ids["d2"]}, token=hq))
    await assert_exact(owner_state, world)

    # What the API answers is what is stored.
    answer = ok(await gql(client, TREE, {"p": chain.ids["root"]}, token=hq))["referralTree"]
    want = await expected(owner_state, world)
    for node in answer["nodes"]:
        pid = parse_global_id(node["patient"]["id"], "Patient")
        got = (
            node["subtreeSize"],
            node["convertedCount"],
            round(float(node["convertedValue"]) * 100),
        )
        assert got == want.get(pid, (0, 0, 0))
    assert answer["nodes"][0]["subtreeSize"] == 7


async def test_links_and_payments_racing_keep_figures_exact(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    """Each round links a patient whose subtree is paying at that moment; the link reads the
    subtree's figures, so on PostgreSQL, without the shared lock, a payment committed between
    that read and the write would be lost above the new referrer (SQLite runs them in turn)."""
    hq = await sign_in(client, world, "hq_admin")
    chain = Chain(client, world, hq)
    await chain.patient("top")
    for n in range(8):
        await chain.patient(f"head{n}")
        orders = []
        for k in range(3):  # different patients: one patient's payments conflict by design
            await chain.patient(f"leaf{n}.{k}", f"head{n}")
            made = await gql(
                client,
                ORDER,
                {
                    "p": chain.ids[f"leaf{n}.{k}"],
                    "b": world.branch_gid("b1"),
                    "l": [{"service": "种植", "quantity": 1, "unitPrice": f"{k + 1}.00"}],
                },
                token=hq,
            )
            orders.append(ok(made)["createOrder"]["id"])
        _, *paid = await asyncio.gather(
            chain.link(f"head{n}", "top"),
            *(gql(client, PAY, {"id": o}, token=hq) for o in orders),
        )
        for result in paid:
            ok(result)
    await assert_exact(owner_state, world)
    top = parse_global_id(chain.ids["top"], "Patient")
    assert (await stored(owner_state, world))[top] == (32, 24, 8 * 600)


async def test_demo_chain_figures_are_exact(tmp_path: Path) -> None:
    """The demo writes its links directly, then pays orders through the service: both paths
    must leave exact figures (the demo is what a newcomer first looks at)."""
    from migrations.runner import upgrade

    cfg = Settings(data_dir=tmp_path)
    await asyncio.to_thread(upgrade, cfg.owner_database_url)
    assert await load_demo(cfg)
    engine = make_engine(cfg.owner_database_url)
    try:
        async with session_factory(engine)() as session:
            tenants = (await session.scalars(select(Tenant.id))).all()
        checked = 0
        for tenant_id in tenants:
            async with session_factory(engine)() as session:
                await bind_tenant(session, tenant_id)
                have, want = await stored_in(session), await expected_in(session)
            assert have == want
            checked += sum(1 for f in have.values() if f[1])
        assert checked > 0  # some referrers have paying descendants
    finally:
        await engine.dispose()


def _cli(db: Database, owner: AppState, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATIENTPOOL_DATABASE_URL": db.owner_url,
        "PATIENTPOOL_DATA_DIR": str(Path(owner.settings.data_dir)),
    }
    return subprocess.run(
        [sys.executable, "-m", "process.cli", "referrals", "figures", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_figures_command_finds_and_mends_drift(
    client: httpx.AsyncClient, owner_state: AppState, world: World, db: Database
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    chain = Chain(client, world, hq)
    await chain.patient("root")
    await chain.patient("a", "root")
    await chain.patient("b", "a")
    await chain.paid_order("b", "10.00")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _cli(db, owner_state, "--tenant", world.slug, *args)

    done = await asyncio.to_thread(run, "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{world.slug}: exact (2 referrers)" in done.stdout

    # links imported with SQL, say: the stored figures no longer add up
    root = parse_global_id(chain.ids["root"], "Patient")
    async with owner_state.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        await session.execute(
            update(ReferralFigures)
            .where(ReferralFigures.patient_id == root)
            .values(descendants=ReferralFigures.descendants + 5)
        )
    done = await asyncio.to_thread(run, "--check")
    assert done.returncode == 1
    assert "1 of 2 referrers differed; left as they are" in done.stdout
    assert (await stored(owner_state, world))[root] == (7, 1, 1000)

    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rebuilt" in done.stdout
    await assert_exact(owner_state, world)
    assert (await asyncio.to_thread(run, "--check")).returncode == 0
    assert (await asyncio.to_thread(_cli, db, owner_state, "--tenant", "nobody")).returncode == 2
