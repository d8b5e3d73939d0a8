"""The edge in production settings: protocol mistakes answered as GraphQL responses with a
code, byte limits, one named operation, the caller before anything else, and no schema shown
to anyone (introspection, GraphiQL, suggestions), with every configured rule firing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from graphql import GraphQLObjectType, get_named_type

from api.context import AppState
from api.documents import sha256
from api.limits import MAX_BODY_BYTES, MAX_DOCUMENT_BYTES
from api.schema import OPERATIONS, PUBLIC_ROOT_FIELDS, build_schema
from auth.tokens import issue_access_token
from tests.api.production import production_client
from tests.support import World, build_world, codes, sign_in

RESPONSE_TYPE = "application/graphql-response+json"


@pytest.fixture
async def prod(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    async with production_client(state) as client:
        yield client


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"edge-{unique}")


def _error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) <= {"errors", "data"}, body
    assert len(body["errors"]) == 1, body
    return body["errors"][0]["extensions"]["code"]


JSON = {"content-type": "application/json"}
PROTOCOL_MISTAKES: dict[str, tuple[dict[str, Any], int, str]] = {
    "malformed JSON": (
        {"content": b'{"query": "{ me { roles }', "headers": JSON},
        400,
        "BAD_USER_INPUT",
    ),
    "not UTF-8": ({"content": b'{"query": "\xff\xfe"}', "headers": JSON}, 400, "BAD_USER_INPUT"),
    "batch": ({"json": [{"query": "{ me { roles } }"}] * 2}, 400, "BAD_USER_INPUT"),
    "not an object": ({"json": "{ me { roles } }"}, 400, "BAD_USER_INPUT"),
    "query not a string": ({"json": {"query": ["{ me { roles } }"]}}, 400, "BAD_USER_INPUT"),
    "variables not an object": (
        {"json": {"query": "{ me { roles } }", "variables": "[1]"}},
        400,
        "BAD_USER_INPUT",
    ),
    "no query": ({"json": {"variables": {}}}, 400, "BAD_USER_INPUT"),
    "form body": (
        {
            "content": b"query=%7B%20me%20%7D",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        415,
        "BAD_USER_INPUT",
    ),
    "unknown persisted hash": (
        {"json": {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab" * 32}}}},
        200,
        "PERSISTED_QUERY_NOT_FOUND",
    ),
    "document too large": (
        {"json": {"query": "{ me { roles } }" + "#" * MAX_DOCUMENT_BYTES}},
        413,
        "QUERY_TOO_COMPLEX",
    ),
    "body too large": (
        {"json": {"query": "{ me { roles } }", "variables": {"x": "y" * MAX_BODY_BYTES}}},
        413,
        "QUERY_TOO_COMPLEX",
    ),
}


@pytest.mark.parametrize("mistake", sorted(PROTOCOL_MISTAKES))
async def test_protocol_mistakes_are_graphql_answers(prod: httpx.AsyncClient, mistake: str) -> None:
    request, status, code = PROTOCOL_MISTAKES[mistake]
    response = await prod.post("/graphql", **request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert _error_code(response) == code
    if code == "PERSISTED_QUERY_NOT_FOUND":
        # the exact message Apollo Client's persisted-query link compares
        assert response.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    # A client that accepts the GraphQL response type gets it.
    accepting = await prod.post(
        "/graphql",
        **{**request, "headers": {**request.get("headers", {}), "accept": RESPONSE_TYPE}},
    )
    assert accepting.headers["content-type"] == RESPONSE_TYPE
    assert _error_code(accepting) == code


async def test_other_methods_and_get_queries_are_graphql_answers(prod: httpx.AsyncClient) -> None:
    for response in (
        await prod.get("/graphql", params={"query": "{ me { roles } }"}),
        await prod.get("/graphql", headers={"accept": "text/html"}),  # no GraphiQL in production
        await prod.put("/graphql", json={"query": "{ me { roles } }"}),
        await prod.delete("/graphql"),
    ):
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == "POST"
        assert _error_code(response) == "BAD_USER_INPUT"
        assert "<html" not in response.text.lower()


async def test_a_streamed_body_is_cut_at_the_limit(prod: httpx.AsyncClient) -> None:
    """No content-length (chunked): the edge stops reading once the limit is passed."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"query": "{ me { roles } }", "variables": {"x": "'
        for _ in range(64):
            sent += 64 * 1024
            yield b"y" * (64 * 1024)
        yield b'"}}'

    response = await prod.post("/graphql", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert _error_code(response) == "QUERY_TOO_COMPLEX"


async def test_the_limits_let_real_requests_through(prod: httpx.AsyncClient, world: World) -> None:
    """The largest legitimate bodies fit: 10,000 patient ids for tagPatients."""
    token = await sign_in(prod, world, "hq_admin")
    ids = [world.gid("b1")] * 10_000
    body = {
        "query": "mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) "
        "{ changed } }",
        "variables": {"t": "VGFnOjA=", "p": ids},
    }
    assert len(json.dumps(body)) < MAX_BODY_BYTES
    response = await prod.post("/graphql", json=body, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200
    # refused for the bogus tag id, but by the resolver: the size was accepted
    assert codes(response.json()) in (["NOT_FOUND"], ["BAD_USER_INPUT"])


TWO_OPERATIONS = "query A { me { roles } } query B { tenant { slug } }"


async def test_several_operations_need_a_name(prod: httpx.AsyncClient, world: World) -> None:
    token = await sign_in(prod, world, "hq_admin")
    auth = {"authorization": f"Bearer {token}"}
    unnamed = await prod.post("/graphql", json={"query": TWO_OPERATIONS}, headers=auth)
    assert codes(unnamed.json()) == ["BAD_USER_INPUT"]
    assert unnamed.json().get("data") is None
    named = await prod.post(
        "/graphql", json={"query": TWO_OPERATIONS, "operationName": "B"}, headers=auth
    )
    assert named.json() == {"data": {"tenant": {"slug": world.slug}}}
    wrong = await prod.post(
        "/graphql", json={"query": TWO_OPERATIONS, "operationName": "C"}, headers=auth
    )
    assert codes(wrong.json()) == ["BAD_USER_INPUT"]


async def test_a_registered_file_of_several_operations_by_hash_needs_a_name(
    prod: httpx.AsyncClient, state: AppState, world: World
) -> None:
    text = (OPERATIONS / "book-and-arrive.graphql").read_text(encoding="utf-8")
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}
    token = await sign_in(prod, world, "hq_admin")
    async with production_client(state, "only") as only:
        response = await only.post(
            "/graphql",
            json={"extensions": extensions, "variables": {}},
            headers={"authorization": f"Bearer {token}"},
        )
    assert codes(response.json()) == ["BAD_USER_INPUT"]
    assert "operationName" in response.json()["errors"][0]["message"]


def _root_documents() -> list[tuple[str, str]]:
    """(field, document) for every root field that needs a caller, each with arguments as
    wrong as they can be: the caller must be refused before any of them is looked at."""
    schema = build_schema()._schema
    out = []
    for kind, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        assert isinstance(root, GraphQLObjectType)
        for name, field in root.fields.items():
            if name in PUBLIC_ROOT_FIELDS:
                continue
            args = ", ".join(f"{a}: $v{i}" for i, a in enumerate(field.args))
            defs = ", ".join(f"$v{i}: {arg.type}" for i, arg in enumerate(field.args.values()))
            named = get_named_type(field.type)
            pick = (
                " { __typename }"
                if isinstance(named, GraphQLObjectType) or hasattr(named, "types")
                else ""
            )
            head = f"{kind} ({defs})" if defs else kind
            out.append((name, f"{head} {{ {name}{f'({args})' if args else ''}{pick} }}"))
    return out


ROOT_DOCUMENTS = _root_documents()


async def test_every_root_field_refuses_a_missing_or_bad_token_first(
    prod: httpx.AsyncClient, state: AppState
) -> None:
    expired, _ = issue_access_token(
        state.signing_keys,
        tenant_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        session_id=None,
        token_version=0,
        now=int(time.time()) - 3600,
    )
    forged = jwt.encode({"sub": "x", "tid": "y"}, "not our key", algorithm="HS256")
    tokens: list[str | None] = [None, "garbage", forged, expired, "pps_nothex_zz"]
    assert len(ROOT_DOCUMENTS) > 60
    # Most of them with required arguments, each given a wrong value.
    assert sum("!" in document.split("{", 1)[0] for _, document in ROOT_DOCUMENTS) > 30
    for name, document in ROOT_DOCUMENTS:
        # Every variable wrong: a nested garbage object where each expects something else.
        variables = {f"v{i}": {"bad": [1, {"x": None}]} for i in range(20)}
        for token in tokens:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            got = await prod.post(
                "/graphql", json={"query": document, "variables": variables}, headers=headers
            )
            assert got.status_code == 200, (name, got.text)
            assert codes(got.json()) == ["UNAUTHENTICATED"], (name, token, got.json())
    # Signing in needs no caller and reports its own problems.
    public = await prod.post(
        "/graphql",
        json={"query": 'mutation { signIn(tenant: "x", email: "y", password: 1) { accessToken } }'},
    )
    assert codes(public.json()) == ["BAD_USER_INPUT"]


async def test_node_with_a_bad_id_and_no_token_is_unauthenticated(prod: httpx.AsyncClient) -> None:
    got = await prod.post("/graphql", json={"query": '{ node(id: "not-an-id") { id } }'})
    assert codes(got.json()) == ["UNAUTHENTICATED"]


INTROSPECTION = [
    "{ __schema { types { name } } }",
    '{ __type(name: "Patient") { fields { name } } }',
    "query { __schema { queryType { name } } }",
    "fragment F on Query { __schema { types { name } } } { ...F }",
    '{ ... on Query { __type(name: "Query") { name } } }',
]


@pytest.mark.parametrize("document", INTROSPECTION)
async def test_production_shows_no_schema_to_anyone(
    prod: httpx.AsyncClient, world: World, document: str
) -> None:
    admin = await sign_in(prod, world, "hq_admin")
    for headers in ({}, {"authorization": f"Bearer {admin}"}):
        got = await prod.post("/graphql", json={"query": document}, headers=headers)
        body = got.json()
        assert body.get("data") is None, body
        assert set(codes(body)) == {"BAD_USER_INPUT"}, body
        assert all("introspection" in e["message"].lower() for e in body["errors"])
    # __typename is not introspection of the schema, and stays.
    typename = await prod.post("/graphql", json={"query": "{ __typename }"})
    assert typename.json() == {"data": {"__typename": "Query"}}


async def test_production_suggests_nothing(prod: httpx.AsyncClient, world: World) -> None:
    admin = await sign_in(prod, world, "hq_admin")
    got = await prod.post(
        "/graphql",
        json={"query": "{ patiens { totalCount } me { rols } }"},
        headers={"authorization": f"Bearer {admin}"},
    )
    messages = " ".join(e["message"] for e in got.json()["errors"])
    assert "patiens" in messages and "Did you mean" not in messages
    assert "patients" not in messages and "roles" not in messages


# One document per rule the production schema is configured with, each tripping that rule
# alone; the shape limits, cost and registered-only come from api.limits, the rest from
# graphql's specified rules and the extensions (DisableIntrospection).
RULES = {
    "introspection": ("{ __schema { types { name } } }", "BAD_USER_INPUT", "introspection"),
    "depth": (
        "{ " + "patients { edges { node { " * 4 + "id" + " } } }" * 4 + " }",
        "QUERY_TOO_COMPLEX",
        "depth",
    ),
    "aliases": (
        "{ me { " + " ".join(f"a{i}: roles" for i in range(31)) + " } }",
        "QUERY_TOO_COMPLEX",
        "aliases",
    ),
    "root fields": (
        "{ " + " ".join(f"t{i}: tenant {{ slug }}" for i in range(16)) + " }",
        "QUERY_TOO_COMPLEX",
        "root fields",
    ),
    "tokens": ("{ " + "me { roles } " * 600 + "}", "QUERY_TOO_COMPLEX", "tokens"),
    "cost": (
        "{ possibleDuplicates(first: 100) { edges { node { patients { id name tags { id "
        "name group { id name } } } } } } }",
        "QUERY_TOO_COMPLEX",
        "cost",
    ),
    "unknown field": ("{ me { nope } }", "BAD_USER_INPUT", "nope"),
    "unknown argument": ("{ me(x: 1) { roles } }", "BAD_USER_INPUT", "argument"),
    "unused variable": ("query($x: Int) { me { roles } }", "BAD_USER_INPUT", "$x"),
    "fragment cycle": (
        "fragment A on Me { ...B } fragment B on Me { ...A } { me { ...A } }",
        "BAD_USER_INPUT",
        "",
    ),
    "one of": (
        # a literal of the wrong type for an argument
        '{ patients(first: "x") { totalCount } }',
        "BAD_USER_INPUT",
        "",
    ),
}


@pytest.mark.parametrize("rule", sorted(RULES))
async def test_each_configured_rule_fires_in_production(
    prod: httpx.AsyncClient, world: World, rule: str
) -> None:
    document, code, word = RULES[rule]
    admin = await sign_in(prod, world, "hq_admin")
    got = (
        await prod.post(
            "/graphql", json={"query": document}, headers={"authorization": f"Bearer {admin}"}
        )
    ).json()
    assert got.get("data") is None, got
    assert code in codes(got), got
    assert word.lower() in " ".join(e["message"] for e in got["errors"]).lower()


async def test_registered_only_fires_in_production(
    prod: httpx.AsyncClient, state: AppState, world: World
) -> None:
    admin = await sign_in(prod, world, "hq_admin")
    async with production_client(state, "only") as only:
        got = (
            await only.post(
                "/graphql",
                json={"query": "{ me { roles } }"},
                headers={"authorization": f"Bearer {admin}"},
            )
        ).json()
    assert codes(got) == ["FORBIDDEN"], got
