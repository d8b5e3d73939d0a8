"""The API's defences: refused before any resolver or SQL runs, each with its code."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from api.app import create_app
from api.context import AppState
from api.documents import folder_manifest, sha256
from api.limits import MAX_COST, estimate_cost
from api.schema import OPERATIONS, build_schema
from process.settings import Environment
from tests.support import PASSWORD, World, build_world, codes, gql, sign_in

COSTLY = """{ possibleDuplicates(first: 100) { edges { node { patients { id name tags { id
  name group { id name } } } } } } }"""


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"l-{unique}")


@contextmanager
def statements(state: AppState) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = state.sessions.kw["bind"].sync_engine

    def hit(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", hit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", hit)


HOSTILE = {
    "cost": COSTLY,
    "root fields": "{ " + " ".join(f"t{i}: tenant {{ slug }}" for i in range(16)) + " }",
    "aliases": "{ me { " + " ".join(f"a{i}: roles" for i in range(31)) + " } }",
    "tokens": "{ " + "me { roles } " * 600 + "}",
    # Too deep, and wrong on every level below: validation is one pass of every rule
    # (api.limits), so the depth is reported together with the unknown fields.
    "depth": "{ " + "patients { edges { node { " * 4 + "name" + " } } }" * 4 + " }",
}


def test_the_costly_query_is_over_the_limit_and_a_page_is_not() -> None:
    from graphql import parse

    schema = build_schema()._schema
    assert estimate_cost(schema, parse(COSTLY), {}) > MAX_COST
    page = "query($n: Int) { patients(first: $n) { edges { node { id name tags { name } } } } }"
    assert estimate_cost(schema, parse(page), {"n": 100}) < MAX_COST
    # Variables are costed at the value sent, not at a guess.
    assert estimate_cost(schema, parse(page), {"n": 100}) > estimate_cost(
        schema, parse(page), {"n": 10}
    )


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_hostile_documents_are_refused_before_any_sql(
    client: httpx.AsyncClient, state: AppState, world: World, kind: str
) -> None:
    token = await sign_in(client, world, "hq_admin")
    with statements(state) as seen:
        result = await gql(client, HOSTILE[kind], token=token)
    assert codes(result)[0] == "QUERY_TOO_COMPLEX", result
    assert set(codes(result)) <= {"QUERY_TOO_COMPLEX", "BAD_USER_INPUT"}, result
    assert result.get("data") is None
    assert seen == [], f"{kind}: SQL ran before the refusal"


async def test_batches_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json=[{"query": "{ me { roles } }"}, {"query": "{ me { roles } }"}]
    )
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_USER_INPUT"]


async def test_registered_operations_by_hash(client: httpx.AsyncClient, world: World) -> None:
    token = await sign_in(client, world, "hq_admin")
    text = (OPERATIONS / "patient-list.graphql").read_text(encoding="utf-8")
    body = {
        "variables": {"first": 2},
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}},
    }
    response = await client.post(
        "/graphql", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    data = response.json()
    assert "errors" not in data, data
    assert len(data["data"]["patients"]["edges"]) == 2
    # An unknown hash: the answer Apollo's and urql's links read to send the document.
    unknown = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}
    missing = await client.post("/graphql", json=unknown)
    assert missing.status_code == 200
    assert missing.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }


@pytest.fixture
async def production(state: AppState) -> Any:
    settings = state.settings.model_copy(
        update={"env": Environment.PRODUCTION, "persisted_queries": "only"}
    )
    app = create_app(settings, dataclasses.replace(state, settings=settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://prod"
    ) as c:
        yield c


async def test_production_accepts_registered_operations_only(
    production: httpx.AsyncClient, world: World
) -> None:
    signed = await gql(
        production,
        (OPERATIONS / "sign-in.graphql").read_text(encoding="utf-8"),
        {"tenant": world.slug, "email": world.email("hq_admin"), "password": PASSWORD},
    )
    token = signed["data"]["signIn"]["accessToken"]
    ad_hoc = await gql(production, "{ patients(first: 1) { totalCount } }", token=token)
    assert codes(ad_hoc) == ["FORBIDDEN"]
    text = (OPERATIONS / "my-follow-ups-today.graphql").read_text(encoding="utf-8")
    registered = await gql(production, text, token=token)
    assert "errors" not in registered, registered
    # Typos get no "did you mean" hints that would map the schema.
    typo = await gql(production, "{ patiens { totalCount } }", token=token)
    assert codes(typo) and "Did you mean" not in json.dumps(typo)


async def test_every_example_operation_is_trusted(state: AppState) -> None:
    """`migrate` (here the test databases' set-up) trusts each file of
    frontend-schema/operations under the SHA-256 of its exact text."""
    from api.documents import TrustedDocuments

    manifest = folder_manifest(OPERATIONS)
    assert len(manifest) == len(list(OPERATIONS.glob("*.graphql")))
    registry = TrustedDocuments(state.sessions)
    for digest, text in manifest.items():
        found = await registry.find(digest)
        assert found is not None and found.text == text


def test_a_tree_is_costed_by_its_nodes() -> None:
    """`maxNodes` sizes the tree's node list, not the one tree: a 10,000-node tree with its
    figures is allowed, the same tree with every node's tags is not."""
    from graphql import parse

    schema = build_schema()._schema
    figures = (
        'query($n: Int!) { referralTree(patientId: "x", maxNodes: $n) { truncated '
        "nodes { index parentIndex depth subtreeSize convertedCount convertedValue } } }"
    )
    assert estimate_cost(schema, parse(figures), {"n": 10_000}) < MAX_COST
    small = estimate_cost(schema, parse(figures), {"n": 10})
    assert estimate_cost(schema, parse(figures), {"n": 10_000}) > 500 * small
    tagged = figures.replace("convertedValue", "convertedValue patient { name tags { name } }")
    assert estimate_cost(schema, parse(tagged), {"n": 10_000}) > MAX_COST


async def test_no_websocket_endpoint(state: AppState) -> None:
    """With no subscriptions there is no WebSocket endpoint to authenticate: a connection to
    /graphql over either GraphQL WebSocket protocol is refused."""
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    client = TestClient(create_app(state.settings, state))
    for protocol in ("graphql-transport-ws", "graphql-ws"):
        with pytest.raises(WebSocketDisconnect):  # noqa: SIM117 - the connect itself must fail
            with client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
                ws.send_json({"type": "connection_init", "payload": {}})
                ws.receive_json()


async def test_an_unknown_fragment_is_bad_input(client: httpx.AsyncClient, world: World) -> None:
    token = await sign_in(client, world, "hq_admin")
    result = await gql(client, "{ me { ...Missing } }", token=token)
    assert codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["message"] == "Unknown fragment 'Missing'."


async def test_production_answers_carry_no_suggestions() -> None:
    """graphql-core's "did you mean" list stays in development, for developers; production
    answers cut it (api.errors.format_error), since Strawberry's validation computes it."""
    from api.errors import format_error
    from process.settings import Settings

    typo = "{ patiens { totalCount } }"
    dev = await build_schema().execute(typo)
    assert "Did you mean" in dev.errors[0].message and "'patients'" in dev.errors[0].message
    prod = build_schema(
        Settings(env="production", master_key="k" * 43, signing_keys_file="/dev/null")
    )
    refused = await prod.execute(typo)
    shown = format_error(refused.errors[0], "r", hide_suggestions=True)
    assert shown.message == "Cannot query field 'patiens' on type 'Query'."


async def test_validation_remembered_per_document_still_costs_each_request(
    client: httpx.AsyncClient, world: World
) -> None:
    """The same document text, sent again and again: its cost is estimated for the
    variables each request sends."""
    token = await sign_in(client, world, "hq_admin")
    doc = COSTLY.replace(
        "{ possibleDuplicates(first: 100)", "query($n: Int) { possibleDuplicates(first: $n)"
    )
    for n, refused in ((1, False), (100, True), (1, False)):
        result = await gql(client, doc, {"n": n}, token=token)
        assert (codes(result) == ["QUERY_TOO_COMPLEX"]) is refused, (n, result)
        assert refused or "errors" not in result


# One document per rule the production schema declares, each tripping that rule alone, with
# the code and a word of its message: the schema's own validation runs every one of them.
DECLARED = {
    "introspection (DisableIntrospection)": (
        "{ __schema { types { name } } }",
        {},
        "BAD_USER_INPUT",
        "introspection",
    ),
    "depth (QueryDepthLimiter)": (
        "{ " + "patients { edges { node { " * 4 + "id" + " } } }" * 4 + " }",
        {},
        "QUERY_TOO_COMPLEX",
        "depth",
    ),
    "aliases (MaxAliasesLimiter)": (
        "{ me { " + " ".join(f"a{i}: roles" for i in range(31)) + " } }",
        {},
        "QUERY_TOO_COMPLEX",
        "aliases",
    ),
    "tokens (MaxTokensLimiter)": (
        "{ " + "me { roles } " * 600 + "}",
        {},
        "QUERY_TOO_COMPLEX",
        "tokens",
    ),
    "root fields (RootFieldLimit)": (
        "{ " + " ".join(f"t{i}: tenant {{ slug }}" for i in range(16)) + " }",
        {},
        "QUERY_TOO_COMPLEX",
        "root fields",
    ),
    "cost (RequestLimits), at the variables sent": (
        COSTLY.replace(
            "{ possibleDuplicates(first: 100)", "query($n: Int) { possibleDuplicates(first: $n)"
        ),
        {"n": 100},
        "QUERY_TOO_COMPLEX",
        "cost",
    ),
    "variables (RequestLimits)": (
        "query($n: Int) { patients(first: $n) { totalCount } }",
        {"n": "many"},
        "BAD_USER_INPUT",
        "$n",
    ),
    "an unknown field (graphql's specified rules)": (
        "{ me { nope } }",
        {},
        "BAD_USER_INPUT",
        "nope",
    ),
}


@pytest.mark.parametrize("rule", sorted(DECLARED))
async def test_every_declared_rule_runs_in_the_production_schema(rule: str) -> None:
    from api.errors import code_of
    from process.settings import Settings

    document, variables, code, word = DECLARED[rule]
    prod = build_schema(
        Settings(env="production", master_key="k" * 43, signing_keys_file="/dev/null")
    )
    result = await prod.execute(document, variable_values=variables)
    assert result.data is None and result.errors, (rule, result)
    assert code in [code_of(e) for e in result.errors], (rule, result.errors)
    assert word.lower() in " ".join(e.message for e in result.errors).lower(), result.errors
    # The same document passes (or fails for another reason) where the rule does not apply:
    # with introspection enabled, the introspection query is answered.
    if rule.startswith("introspection"):
        dev = await build_schema().execute(document)
        assert dev.errors is None and dev.data


async def test_a_remembered_document_is_still_checked_per_request(
    client: httpx.AsyncClient, world: World
) -> None:
    """The second time a document comes, what does not depend on the request is remembered
    (api.limits.ValidationMemo); the caller, the variables and the cost are still checked."""
    token = await sign_in(client, world, "hq_admin")
    doc = f"query($n: Int) {{ patients(first: $n) {{ totalCount }} }} # {world.slug}"
    for _ in range(2):
        assert "errors" not in await gql(client, doc, {"n": 1}, token=token)
    # The caller first, before the variables, also for a remembered document.
    assert codes(await gql(client, doc, {"n": "many"})) == ["UNAUTHENTICATED"]
    bad = await gql(client, doc, {"n": "many"}, token=token)
    assert codes(bad) == ["BAD_USER_INPUT"] and "$n" in bad["errors"][0]["message"]
    wrong = f"{{ me {{ nope }} }} # {world.slug}"
    for _ in range(2):
        assert codes(await gql(client, wrong, token=token)) == ["BAD_USER_INPUT"]
