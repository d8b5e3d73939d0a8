"""Hypothesis-generated operations (valid and invalid, from the SDL) against the app, signed in
to tenant A: never a 500, never an unmasked or code-less error, never a byte of tenant B."""

from __future__ import annotations

import json

import httpx
import pytest
from graphql import GraphQLSchema, StringValueNode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema

from api.context import AppState
from api.errors import CODES
from api.schema import build_schema
from tests.api.production import captured_logs
from tests.attacks.test_isolation import _leaks
from tests.support import World, build_world, gql, sign_in

EXAMPLES = 120

SCALARS = {
    "DateTime": st.sampled_from(
        ["2026-11-24T09:00:00+08:00", "2026-01-01T00:00:00Z", "1999-12-31T23:59:59+00:00"]
    ).map(lambda v: StringValueNode(value=v)),
    "Decimal": st.sampled_from(["0", "1.50", "-3", "99999999999999", "1.001"]).map(
        lambda v: StringValueNode(value=v)
    ),
    "JSON": st.just(StringValueNode(value="{}")),
}


def generate(schema: GraphQLSchema, mode: Mode) -> list[str]:
    found: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(from_schema(schema, custom_scalars=SCALARS, mode=mode, allow_x00=False))
    def collect(query: str) -> None:
        found.append(query)

    collect()
    return found


@pytest.fixture
async def worlds(owner_state: AppState, unique: str) -> tuple[World, World]:
    return (
        await build_world(owner_state, f"fa-{unique}"),
        await build_world(owner_state, f"fb-{unique}"),
    )


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE], ids=["valid", "invalid"])
async def test_generated_operations(
    client: httpx.AsyncClient, worlds: tuple[World, World], mode: Mode
) -> None:
    a, b = worlds
    schema = build_schema()._schema
    token = await sign_in(client, a, "hq_admin")
    queries = generate(schema, mode)
    assert len(queries) >= EXAMPLES // 2
    seeded = [v for w in (a, b) for values in w.plaintext.values() for v in values.values()]
    with captured_logs() as logs:
        for query in queries:
            response = await client.post(
                "/graphql",
                json={"query": query},
                headers={"Authorization": f"Bearer {token}"},
            )
            # Every answer is a GraphQL one with codes (413: a document over the byte limit).
            assert response.status_code in (200, 413), (query, response.text)
            body = response.json()
            for error in body.get("errors", []):
                code = error.get("extensions", {}).get("code")
                assert code in CODES and code != "INTERNAL", (query, error)
            assert _leaks(body, b) == [], query
            assert "Traceback" not in json.dumps(body)
    # Whatever the operations did, the log holds none of the patients' values.
    assert logs.holding(seeded) == []
    # Tenant B is as it was.
    token_b = await sign_in(client, b, "hq_admin")
    seen = await gql(client, "{ patients(first: 100) { totalCount } }", token=token_b)
    assert seen["data"]["patients"]["totalCount"] == len(b.patients)
