"""Referral trees: figures against a Python oracle on thousands of nodes and depth 20, a
constant number of statements whatever the depth, cycles refused under racing requests, and
anonymous nodes for what the caller may not see."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert, select, update

from api.context import AppState
from api.ids import to_global_id
from auth.access_log import AccessLogEntry
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.referrals import figures, tree
from domain.referrals.models import Referral
from tenancy.session import bind_tenant, stamp_rows
from tests.support import World, build_world, codes, gql, sign_in

TREE = """query($p: ID!, $d: Int!) { referralTree(patientId: $p, depth: $d, maxNodes: 5000) {
  truncated referrers { hops anonymous patient { id } }
  nodes { index parentIndex depth anonymous subtreeSize convertedCount convertedValue
    patient { id name } } } }"""
LINK = """mutation($p: ID!, $c: String!) {
  linkReferral(patientId: $p, referralCode: $c) { eligible ineligibleReason } }"""


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"t-{unique}")


async def grow(
    owner: AppState, world: World, root: uuid.UUID, size: int, depth: int, seed: int = 7
) -> dict[uuid.UUID, uuid.UUID]:
    """`size` patients below `root`: a spine reaching `depth`, the rest hung at random
    (never deeper than `depth`). Returns child → parent."""
    rng = random.Random(seed)
    ids = [uuid.uuid4() for _ in range(size)]
    parent: dict[uuid.UUID, uuid.UUID] = {}
    level = {root: 0}
    for i, pid in enumerate(ids):
        if i < depth:
            up = ids[i - 1] if i else root
        else:
            up = rng.choice([root, *ids[:i]])
            while level[up] >= depth:
                up = rng.choice([root, *ids[:i]])
        parent[pid] = up
        level[pid] = level[up] + 1
    async with owner.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        branch = world.branches["b1"].id
        await session.execute(
            insert(Patient),
            stamp_rows(
                session,
                [
                    {
                        "id": pid,
                        "home_branch_id": branch,
                        "referral_code": pid.hex[:12].upper(),
                        # about a third converted, with exact amounts in fen
                        "order_total_fen": rng.choice([0, 0, rng.randint(1, 500_000)]),
                    }
                    for pid in ids
                ],
            ),
        )
        await session.execute(
            insert(Referral),
            stamp_rows(session, [{"referred_id": c, "referrer_id": p} for c, p in parent.items()]),
        )
        await figures.rebuild(session)  # links written directly, as a bulk import would
    return parent


async def _totals(owner: AppState, world: World) -> dict[uuid.UUID, int]:
    async with owner.sessions() as session:
        await bind_tenant(session, world.tenant_id)
        return dict((await session.execute(select(Patient.id, Patient.order_total_fen))).all())


def oracle(
    parent: dict[uuid.UUID, uuid.UUID], fen: dict[uuid.UUID, int]
) -> dict[uuid.UUID, tuple[int, int, int]]:
    """Per node: (descendants, converted descendants, their fen), by walking up from each."""
    figures: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0, 0])
    for child in parent:
        up = parent[child]
        while True:
            f = figures[up]
            f[0] += 1
            f[1] += fen[child] > 0
            f[2] += fen[child]
            if up not in parent:
                break
            up = parent[up]
    return {k: (v[0], v[1], v[2]) for k, v in figures.items()}


async def test_figures_match_the_oracle(owner_state: AppState, world: World) -> None:
    root = world.patients["b1"].id
    parent = await grow(owner_state, world, root, size=3000, depth=20)
    expected = oracle(parent, await _totals(owner_state, world))
    async with owner_state.sessions() as session:
        await bind_tenant(session, world.tenant_id)
        sub = await tree.subtree(session, root, 20, PatientScope(chain=True), 10_000)
        assert not sub.truncated and len(sub.nodes) == 3001
        assert max(n.depth for n in sub.nodes) == 20
        for node in sub.nodes:
            want = expected.get(node.patient_id, (0, 0, 0))
            assert (node.subtree_size, node.converted, node.converted_fen) == want
            assert node.parent_id == parent.get(node.patient_id)
        # A depth-limited answer keeps whole-subtree figures.
        shallow = await tree.subtree(session, root, 3, PatientScope(chain=True), 10_000)
        assert max(n.depth for n in shallow.nodes) == 3
        assert shallow.nodes[0].subtree_size == 3000
        # The chain above the deepest node is the spine, nearest first.
        deepest = max(sub.nodes, key=lambda n: n.depth).patient_id
        chain, up = [], deepest
        while up in parent:
            up = parent[up]
            chain.append(up)
        assert [
            pid for pid, _ in await tree.ancestors(session, deepest, PatientScope(chain=True))
        ] == chain


async def test_statements_do_not_grow_with_depth(
    client: httpx.AsyncClient, owner_state: AppState, state: AppState, world: World
) -> None:
    root = world.patients["b1"]
    await grow(owner_state, world, root.id, size=400, depth=12)
    token = await sign_in(client, world, "hq_admin")
    engine = state.sessions.kw["bind"].sync_engine
    counts: dict[int, int] = {}
    sizes: dict[int, int] = {}
    await gql(client, TREE, {"p": world.gid("b1"), "d": 0}, token=token)  # warm policy cache
    for depth in (1, 10):
        seen: list[str] = []

        def hit(_c: Any, _cur: Any, statement: str, *_a: Any, _seen: list[str] = seen) -> None:
            _seen.append(statement)

        event.listen(engine, "before_cursor_execute", hit)
        try:
            result = await gql(client, TREE, {"p": world.gid("b1"), "d": depth}, token=token)
        finally:
            event.remove(engine, "before_cursor_execute", hit)
        assert "errors" not in result, result
        sizes[depth] = len(result["data"]["referralTree"]["nodes"])
        counts[depth] = len(seen)
    assert sizes[10] > sizes[1] * 5
    assert counts[1] == counts[10], counts


async def test_cycles_are_refused_even_when_racing(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    token = await sign_in(client, world, "hq_admin")
    q = "query($id: ID!) { patient(id: $id) { referralCode } }"
    code = {}
    for key in ("b1", "b2", "hm"):
        r = await gql(client, q, {"id": world.gid(key)}, token=token)
        code[key] = r["data"]["patient"]["referralCode"]
    # Self-referral by code is a cycle of one.
    assert codes(await gql(client, LINK, {"p": world.gid("b1"), "c": code["b1"]}, token=token)) == [
        "CONFLICT"
    ]
    # b1 → b2 and b2 → b1 at the same moment: one wins, the other is a cycle.
    results = await asyncio.gather(
        gql(client, LINK, {"p": world.gid("b2"), "c": code["b1"]}, token=token),
        gql(client, LINK, {"p": world.gid("b1"), "c": code["b2"]}, token=token),
    )
    assert sorted(codes(r) for r in results) == [[], ["CONFLICT"]], results
    # Two referrers racing for the same patient: one link only.
    results = await asyncio.gather(
        gql(client, LINK, {"p": world.gid("hm"), "c": code["b1"]}, token=token),
        gql(client, LINK, {"p": world.gid("hm"), "c": code["b2"]}, token=token),
    )
    assert sorted(codes(r) for r in results) == [[], ["CONFLICT"]], results
    # Patients who joined just now may be referred; one in the pool for a month earns nothing,
    # and the link says why.
    won = next(r for r in results if not codes(r))
    assert won["data"]["linkReferral"] == {"eligible": True, "ineligibleReason": ""}
    async with owner_state.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        await session.execute(
            update(Patient)
            .where(Patient.id == world.patients["assigned"].id)
            .values(created_at=datetime.now(UTC) - timedelta(days=30))
        )
    late = await gql(client, LINK, {"p": world.gid("assigned"), "c": code["b2"]}, token=token)
    assert late["data"]["linkReferral"] == {
        "eligible": False,
        "ineligibleReason": "already_in_pool",
    }


async def test_doctor_sees_the_shape_not_the_people(
    client: httpx.AsyncClient, owner_state: AppState, state: AppState, world: World
) -> None:
    """The doctor's own patient refers 30 b1 patients the doctor has never seen."""
    root = world.patients["assigned"]
    parent = await grow(owner_state, world, root.id, size=30, depth=4)
    token = await sign_in(client, world, "doctor")
    result = await gql(client, TREE, {"p": world.gid("assigned"), "d": 4}, token=token)
    assert "errors" not in result, result
    nodes = result["data"]["referralTree"]["nodes"]
    assert len(nodes) == 31
    assert nodes[0]["patient"]["name"] == world.plaintext["assigned"]["name"]
    assert nodes[0]["subtreeSize"] == 30
    assert all(n["anonymous"] and n["patient"] is None for n in nodes[1:])
    assert all(nodes[n["parentIndex"]]["depth"] == n["depth"] - 1 for n in nodes[1:])
    # Outside the doctor's scope, a tree is not found at all.
    other = await gql(client, TREE, {"p": world.gid("b2"), "d": 2}, token=token)
    assert codes(other) == ["NOT_FOUND"]
    # The access log names the one patient whose fields were returned, and no other.
    async with state.sessions() as session:
        await bind_tenant(session, world.tenant_id)
        entries = (
            await session.scalars(
                select(AccessLogEntry).where(
                    AccessLogEntry.actor_id == str(world.staff["doctor"].id)
                )
            )
        ).all()
    logged = {pid for e in entries for pid in json.loads(e.patient_ids)}
    assert str(root.id) in logged
    assert logged.isdisjoint({str(p) for p in parent})
    assert to_global_id("Patient", root.id) == world.gid("assigned")


COLUMNS = """query($p: ID!) { referralTree(patientId: $p, depth: 4, maxNodes: 5000) {
  nodes { parentIndex depth anonymous subtreeSize convertedCount convertedValue patient { id } }
  columns { parentIndex depth anonymous subtreeSize convertedCount convertedValue patientId }
} }"""


async def test_columns_are_the_nodes_side_by_side(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    """The compact form carries the same figures, shape and anonymity as `nodes`."""
    await grow(owner_state, world, world.patients["assigned"].id, size=200, depth=4)
    token = await sign_in(client, world, "doctor")
    result = await gql(client, COLUMNS, {"p": world.gid("assigned")}, token=token)
    assert "errors" not in result, result
    answer = result["data"]["referralTree"]
    nodes, columns = answer["nodes"], answer["columns"]
    assert len(nodes) == 201
    for name in ("parentIndex", "depth", "anonymous", "subtreeSize", "convertedCount"):
        assert columns[name] == [n[name] for n in nodes], name
    assert columns["convertedValue"] == [n["convertedValue"] for n in nodes]
    assert columns["patientId"] == [n["patient"] and n["patient"]["id"] for n in nodes]
    assert columns["patientId"][0] == world.gid("assigned")
    assert columns["patientId"][1:] == [None] * 200  # the doctor has not seen them
    assert sum(columns["subtreeSize"][1:]) > 0 and columns["subtreeSize"][0] == 200
