"""The served app over HTTP: health, readiness, a query, a mutation, a bad input."""

from __future__ import annotations

import uuid

import httpx
import pytest

from api.context import AppState
from api.ids import to_global_id
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
    client: httpx.AsyncClient, query: str
) -> None:
    result = await gql(client, query)
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
    not_a_node = await gql(client, q, {"id": to_global_id("Tag", uuid.uuid4())}, token=admin)
    assert codes(not_a_node) == ["NOT_FOUND"]
    # A doctor's node() sees only their patients, as patient() does.
    doctor = await sign_in(client, world, "doctor")
    assert codes(await gql(client, q, {"id": world.gid("b2")}, token=doctor)) == ["NOT_FOUND"]
    assert codes(await gql(client, q, {"id": world.gid("assigned")}, token=doctor)) == []
