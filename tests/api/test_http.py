"""The served app over HTTP: health, readiness, a query, a mutation, a bad input."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from api.context import AppState
from api.ids import to_global_id
from auth.access_log import AccessLogEntry
from tenancy.session import bind_tenant
from tests.support import build_world, codes, gql, sign_in


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok"}


async def test_query_mutation_and_bad_input(
    client: httpx.AsyncClient, owner_state: AppState, unique: str
) -> None:
    world = await build_world(owner_state, f"http-{unique}")
    token = await sign_in(client, world, "hq_admin")
    result = await gql(
        client, "{ tenant { slug } patients(first: 10) { totalCount } }", token=token
    )
    assert result["data"] == {
        "tenant": {"slug": world.slug},
        "patients": {"totalCount": len(world.patients)},
    }

    create = """mutation($in: CreatePatientInput!) {
      createPatient(input: $in) { patient { id name phone lifecycleStage } } }"""
    made = await gql(
        client,
        create,
        {
            "in": {
                "name": "新患者",
                "phone": "138 0013 8000",
                "homeBranchId": world.branch_gid("b1"),
            }
        },
        token=token,
    )
    assert "errors" not in made, made
    assert made["data"]["createPatient"]["patient"]["phone"] == "+8613800138000"
    assert made["data"]["createPatient"]["patient"]["lifecycleStage"] == "LEAD"

    bad = await gql(
        client,
        create,
        {"in": {"name": "坏号码", "phone": "not a phone", "homeBranchId": world.branch_gid("b1")}},
        token=token,
    )
    assert codes(bad) == ["BAD_USER_INPUT"]
    assert bad["data"] is None
    assert "Traceback" not in str(bad)
    after = await gql(client, "{ patients { totalCount } }", token=token)
    assert after["data"]["patients"]["totalCount"] == len(world.patients) + 1  # bad: none


async def test_no_token_is_unauthenticated(client: httpx.AsyncClient) -> None:
    result = await gql(client, "{ patients { totalCount } }")
    assert codes(result) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    "query",
    [
        # more aliases than allowed (inside one root field, so only the alias limit trips)
        "{ tenant { " + " ".join(f"a{i}: slug" for i in range(40)) + " } }",
        # more tokens than allowed
        "{ " + "tenant { slug } " * 700 + "}",
    ],
    ids=["aliases", "tokens"],
)
async def test_costly_queries_are_refused_with_their_code(
    client: httpx.AsyncClient, owner_state: AppState, unique: str, query: str
) -> None:
    world = await build_world(owner_state, f"cq-{unique}")
    result = await gql(client, query, token=await sign_in(client, world, "hq_admin"))
    assert codes(result) == ["QUERY_TOO_COMPLEX"], result
    assert result.get("data") is None


async def test_node_fetches_each_type_within_its_rules(
    client: httpx.AsyncClient, owner_state: AppState, unique: str
) -> None:
    """`node(id:)` answers like the type's own root field: same scope, same NOT_FOUND."""
    world = await build_world(owner_state, f"n-{unique}")
    other = await build_world(owner_state, f"n2-{unique}")
    admin = await sign_in(client, world, "hq_admin")
    q = "query($id: ID!) { node(id: $id) { __typename id ... on Patient { name } } }"
    for gid, typename in (
        (world.gid("b1"), "Patient"),
        (world.branch_gid("b1"), "Branch"),
        (world.staff_gid("doctor"), "Staff"),
    ):
        got = await gql(client, q, {"id": gid}, token=admin)
        assert got["data"]["node"]["__typename"] == typename, got
        assert got["data"]["node"]["id"] == gid
    assert (await gql(client, q, {"id": world.gid("b1")}, token=admin))["data"]["node"][
        "name"
    ] == world.plaintext["b1"]["name"]
    missing = await gql(client, q, {"id": to_global_id("Patient", uuid.uuid4())}, token=admin)
    foreign = await gql(client, q, {"id": other.gid("b1")}, token=admin)
    assert codes(missing) == codes(foreign) == ["NOT_FOUND"]
    assert missing["errors"][0]["message"] == foreign["errors"][0]["message"]
    not_a_node = await gql(client, q, {"id": to_global_id("Channel", uuid.uuid4())}, token=admin)
    assert codes(not_a_node) == ["NOT_FOUND"]
    # A doctor's node() sees only their patients, as patient() does.
    doctor = await sign_in(client, world, "doctor")
    assert codes(await gql(client, q, {"id": world.gid("b2")}, token=doctor)) == ["NOT_FOUND"]
    assert codes(await gql(client, q, {"id": world.gid("assigned")}, token=doctor)) == []


async def _made(client: httpx.AsyncClient, token: str, doc: str, variables: dict) -> str:
    result = await gql(client, doc, variables, token=token)
    assert "errors" not in result, result
    (payload,) = result["data"].values()
    return payload["id"]


async def test_node_fetches_tags_visits_orders_and_follow_ups_within_their_rules(
    client: httpx.AsyncClient, owner_state: AppState, unique: str
) -> None:
    world = await build_world(owner_state, f"n3-{unique}")
    other = await build_world(owner_state, f"n4-{unique}")
    admin = await sign_in(client, world, "hq_admin")
    group = await _made(
        client, admin, 'mutation { createTagGroup(name: "诊断", isHealth: true) { id } }', {}
    )
    tag = await _made(
        client,
        admin,
        'mutation($g: ID!) { createTag(groupId: $g, name: "牙周炎") { id } }',
        {"g": group},
    )
    made = {"Tag": tag}
    for key in ("b1", "b2"):
        args = {"p": world.gid(key), "b": world.branch_gid(key)}
        made[f"Visit:{key}"] = await _made(
            client,
            admin,
            "mutation($p: ID!, $b: ID!) { bookVisit(patientId: $p, branchId: $b, "
            'scheduledAt: "2026-12-01T09:00:00+08:00") { id } }',
            args,
        )
        made[f"Order:{key}"] = await _made(
            client,
            admin,
            "mutation($p: ID!, $b: ID!) { createOrder(patientId: $p, branchId: $b, "
            'lines: [{service: "洁牙", unitPrice: "199.00"}]) { id } }',
            args,
        )
        made[f"FollowUp:{key}"] = await _made(
            client,
            admin,
            "mutation($p: ID!) { createFollowUp(patientId: $p, kind: HEALTH_EDUCATION, "
            'dueAt: "2026-12-01T09:00:00+08:00") { id } }',
            {"p": world.gid(key)},
        )
    q = (
        "query($id: ID!) { node(id: $id) { __typename id ... on Tag { name } "
        "... on Visit { patient { id } } ... on Order { net lines { service } } "
        "... on FollowUp { kind } } }"
    )
    for key, gid in made.items():
        got = await gql(client, q, {"id": gid}, token=admin)
        assert got["data"]["node"]["__typename"] == key.split(":")[0], got
        assert got["data"]["node"]["id"] == gid
    # Each read is in the access log against its patient, as the type's list would log it.
    async with owner_state.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        reads = (
            await session.scalars(
                select(AccessLogEntry.patient_ids).where(AccessLogEntry.action == "read")
            )
        ).all()
    b2 = str(world.patients["b2"].id)
    assert sum(b2 in ids for ids in reads) >= 3  # its visit, order and follow-up
    # Another chain's admin: every one of them is missing.
    theirs = await sign_in(client, other, "hq_admin")
    for gid in made.values():
        assert codes(await gql(client, q, {"id": gid}, token=theirs)) == ["NOT_FOUND"]
    # An operator of branch b1 reaches b1's visits, orders and follow-ups, not b2's.
    operator = await sign_in(client, world, "operator")
    assert codes(await gql(client, q, {"id": made["Visit:b1"]}, token=operator)) == []
    assert codes(await gql(client, q, {"id": made["FollowUp:b1"]}, token=operator)) == []
    for key in ("Visit:b2", "FollowUp:b2"):
        assert codes(await gql(client, q, {"id": made[key]}, token=operator)) == ["NOT_FOUND"]
    # Orders need orders:read, which operators lack.
    assert codes(await gql(client, q, {"id": made["Order:b1"]}, token=operator)) == ["FORBIDDEN"]
    # A health tag stays hidden from marketing, as in `tags`.
    marketing = await sign_in(client, world, "marketing")
    assert codes(await gql(client, q, {"id": tag}, token=marketing)) == ["NOT_FOUND"]


async def test_bounded_lists_are_connections_with_stable_cursors(
    client: httpx.AsyncClient, owner_state: AppState, unique: str
) -> None:
    world = await build_world(owner_state, f"n5-{unique}")
    admin = await sign_in(client, world, "hq_admin")
    group = await _made(client, admin, 'mutation { createTagGroup(name: "项目") { id } }', {})
    create = "mutation($g: ID!, $n: String!) { createTag(groupId: $g, name: $n) { id } }"
    for name in ("b-洁牙", "d-种植", "f-正畸"):
        await _made(client, admin, create, {"g": group, "n": name})
    page = (
        "query($after: String) { tags(first: 2, after: $after) { totalCount "
        "pageInfo { hasNextPage endCursor } edges { cursor node { name } } } }"
    )
    first = (await gql(client, page, {}, token=admin))["data"]["tags"]
    assert [e["node"]["name"] for e in first["edges"]] == ["b-洁牙", "d-种植"]
    assert first["totalCount"] == 3 and first["pageInfo"]["hasNextPage"] is True
    # A tag added before the cursor does not shift the next page; one after it shows up.
    for name in ("a-美白", "e-贴面"):
        await _made(client, admin, create, {"g": group, "n": name})
    after = {"after": first["pageInfo"]["endCursor"]}
    second = (await gql(client, page, after, token=admin))["data"]["tags"]
    assert [e["node"]["name"] for e in second["edges"]] == ["e-贴面", "f-正畸"]
    assert second["totalCount"] == 5 and second["pageInfo"]["hasNextPage"] is False
    for bad in ({"after": "bm90LWEtY3Vyc29y"}, {"after": "!!"}):
        assert codes(await gql(client, page, bad, token=admin)) == ["BAD_USER_INPUT"]
    too_many = await gql(client, "{ branches(first: 101) { totalCount } }", token=admin)
    assert codes(too_many) == ["BAD_USER_INPUT"]
    # Small catalogues page the same way: the whole permission catalogue, 20 at a time.
    seen, cursor = [], None
    while True:
        got = await gql(
            client,
            "query($a: String) { permissionCatalogue(after: $a) { totalCount "
            "pageInfo { hasNextPage endCursor } edges { node { object action } } } }",
            {"a": cursor},
            token=admin,
        )
        catalogue = got["data"]["permissionCatalogue"]
        seen += [(e["node"]["object"], e["node"]["action"]) for e in catalogue["edges"]]
        if not catalogue["pageInfo"]["hasNextPage"]:
            break
        cursor = catalogue["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == catalogue["totalCount"]
    assert seen == sorted(seen)


async def test_pages_walk_every_row_once_even_when_times_tie(
    client: httpx.AsyncClient, owner_state: AppState, unique: str
) -> None:
    """Keyset pages compare (time, id) as one row: patients created in the same instant, and
    follow-ups due at the same moment, each come exactly once across pages, in order."""
    from datetime import UTC, datetime

    from sqlalchemy import update

    from domain.patients.models import Patient

    world = await build_world(owner_state, f"kp-{unique}")
    admin = await sign_in(client, world, "hq_admin")
    made = [world.gid(k) for k in world.patients]
    for n in range(5):
        created = await gql(
            client,
            "mutation($i: CreatePatientInput!) { createPatient(input: $i) { patient { id } } }",
            {"i": {"name": f"同时{n}", "homeBranchId": world.branch_gid("b1")}},
            token=admin,
        )
        made.append(created["data"]["createPatient"]["patient"]["id"])
    same = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        await s.execute(update(Patient).values(created_at=same))
    due = "2026-12-24T09:00:00+08:00"
    for gid in made:
        await gql(
            client,
            "mutation($p: ID!, $d: DateTime!) { createFollowUp(patientId: $p, "
            "kind: HEALTH_EDUCATION, dueAt: $d) { id } }",
            {"p": gid, "d": due},
            token=admin,
        )
    for field, args in (("patients", ""), ("followUps", "filter: {statuses: [OPEN]}, ")):
        seen, cursor = [], None
        while True:
            got = await gql(
                client,
                f"query($a: String) {{ {field}({args}first: 3, after: $a) {{ totalCount "
                "pageInfo { hasNextPage endCursor } edges { node { id } } } }",
                {"a": cursor},
                token=admin,
            )
            page = got["data"][field]
            seen += [e["node"]["id"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            cursor = page["pageInfo"]["endCursor"]
        assert len(seen) == len(set(seen)) == page["totalCount"] == len(made), field


async def test_a_cancelled_request_gives_its_connection_back(
    client: httpx.AsyncClient, state: AppState, owner_state: AppState, unique: str
) -> None:
    """The client goes away while the operation is at the database: the request is cancelled
    there, nothing is committed, and the connection is back in the pool at once (not when the
    collector finds the session)."""
    import asyncio

    from sqlalchemy import event

    world = await build_world(owner_state, f"cx-{unique}")
    admin = await sign_in(client, world, "hq_admin")
    engine = state.sessions.kw["bind"].sync_engine
    pool = engine.pool
    before = pool.checkedout()
    running: list[asyncio.Task] = []
    seen = {"n": 0}

    def cancel_mid_way(*_args: object) -> None:
        seen["n"] += 1
        if seen["n"] == 3 and running:  # after the principal's statements, inside the write
            running[0].cancel()

    event.listen(engine, "before_cursor_execute", cancel_mid_way)
    try:
        task = asyncio.ensure_future(
            gql(
                client,
                "mutation($i: CreatePatientInput!) { createPatient(input: $i) { patient { id } } }",
                {"i": {"name": "走了", "homeBranchId": world.branch_gid("b1")}},
                token=admin,
            )
        )
        running.append(task)
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        event.remove(engine, "before_cursor_execute", cancel_mid_way)
    assert seen["n"] >= 3
    await asyncio.sleep(0)
    assert pool.checkedout() == before
    # Nothing of the cancelled operation was kept, and the app serves on.
    count = await gql(client, "{ patients { totalCount } }", token=admin)
    assert count["data"]["patients"]["totalCount"] == len(world.patients)
