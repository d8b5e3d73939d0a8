"""The oracle of compiled plans (docs/decisions/0006): every query of the project's trusted
operations, sent by hash as clients send them, for every staff role of a chain made by `tenant
create` and the API, with the variables a client sends and fuzzed ones, answers the same by
its plan as on graphql-core's stock path — data, errors (message, path, code), the access-log
entries the request appends, and the number of SQL statements it sends.

Both apps serve the same database; one has `compiled_plans` off. A pair's two requests run one
after the other, so the time windows of the queries that read the log end before the pair
starts (what the first request of a pair logs is not the second's to see)."""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import (
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    VariableDefinitionNode,
    parse,
)
from sqlalchemy import select

from api.app import create_app
from api.context import AppState
from api.documents import sha256
from auth.access_log import AccessLogEntry
from process.serve import app_state
from tenancy.session import make_engine, session_factory
from tests.campaigns.standin import Served
from tests.chain.conftest import Chain
from tests.chain.imports import bind_to_chain
from tests.conftest import Database
from tests.door.standin import APP_ID, APP_SECRET, WeChat
from tests.support import gql, make_tag, ok

OPERATIONS = Path(__file__).resolve().parents[2] / "frontend-schema" / "operations"
ROLES = ("branch_manager", "doctor", "health_manager", "operator")
FUZZED_ROLES = ("hq", "doctor", "operator", "patient")


@dataclass(frozen=True)
class Query:
    name: str
    text: str
    variables: tuple[VariableDefinitionNode, ...]


def _queries() -> list[Query]:
    found = []
    for path in sorted(OPERATIONS.glob("*.graphql")):
        text = path.read_text(encoding="utf-8")
        for op in parse(text).definitions:
            if isinstance(op, OperationDefinitionNode) and op.operation is OperationType.QUERY:
                assert op.name is not None
                found.append(Query(op.name.value, text, tuple(op.variable_definitions or ())))
    return found


QUERIES = _queries()


@dataclass
class World:
    chain: Chain
    stock: httpx.AsyncClient
    tokens: dict[str, str]
    ids: dict[str, str]
    log: list[str] = field(default_factory=list)


PATIENT = """mutation($i: CreatePatientInput!) { createPatient(input: $i) {
  patient { id referralCode } } }"""


async def _fill(chain: Chain, tokens: dict[str, str]) -> dict[str, str]:
    """Patients (health data, an assigned doctor, a referral), a tag, a visit and a follow-up,
    all through the API."""
    main = chain.branches["main"]
    doctor = ok(await chain.q("{ me { user { id } } }", token=tokens["doctor"]))["me"]["user"]
    first = ok(
        await chain.q(
            PATIENT,
            {
                "i": {
                    "name": "王芳",
                    "homeBranchId": main,
                    "phone": "13800000001",
                    "diagnoses": "牙周炎",
                    "assignedStaffId": doctor["id"],
                    "consent": True,
                }
            },
        )
    )["createPatient"]["patient"]
    second = ok(
        await chain.q(
            PATIENT,
            {
                "i": {
                    "name": "赵磊",
                    "homeBranchId": main,
                    "phone": "13800000002",
                    "referralCode": first["referralCode"],
                }
            },
        )
    )["createPatient"]["patient"]
    ok(await chain.q(PATIENT, {"i": {"name": "孙丽", "homeBranchId": main}}))
    tag = await make_tag(chain.client, chain.hq, "兴趣", "种植")
    ok(
        await chain.q(
            "mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) { added } }",
            {"t": tag, "p": [first["id"], second["id"]]},
        )
    )
    now = datetime.now(UTC)
    ok(
        await chain.q(
            "mutation($p: ID!, $b: ID!, $at: DateTime!, $d: ID) {"
            " bookVisit(patientId: $p, branchId: $b, scheduledAt: $at, doctorId: $d) { id } }",
            {"p": first["id"], "b": main, "at": (now - timedelta(hours=2)).isoformat(),
             "d": doctor["id"]},
        )
    )  # fmt: skip
    ok(
        await chain.q(
            "mutation($p: ID!, $at: DateTime!) { createFollowUp(patientId: $p,"
            " kind: POST_VISIT, dueAt: $at) { id } }",
            {"p": first["id"], "at": (now + timedelta(minutes=5)).isoformat()},
        )
    )
    return {"patient": first["id"], "referred": second["id"], "branch": main, "tag": tag,
            "staff": doctor["id"]}  # fmt: skip


CONFIGURE = (
    "mutation($b: ID!) { configureMiniProgram("
    f'appId: "{APP_ID}", secret: "{APP_SECRET}", defaultBranchId: $b, showStaffNames: true)'
    " { appId } }"
)
PATIENT_SIGN_IN = """mutation($t: String!, $c: String!, $p: String) {
  signInPatient(tenant: $t, code: $c, phoneCode: $p) { accessToken } }"""


@pytest.fixture(scope="module")
async def world(chain: Chain, chain_state: AppState) -> AsyncIterator[World]:
    tokens = {"hq": chain.hq, "auditor": chain.auditor}
    for role in ROLES:
        _, pair = await chain.member(role, [chain.branches["main"]])
        tokens[role] = pair["accessToken"]
    ids = await _fill(chain, tokens)
    ok(await chain.q(CONFIGURE, {"b": chain.branches["main"]}))
    wechat = WeChat()
    with Served(wechat.app()) as served:
        settings = chain_state.settings.model_copy(
            update={"compiled_plans": False, "wechat_api_url": served.url}
        )
        stock_state = app_state(
            settings,
            chain_state.sessions,
            chain_state.key_provider,
            chain_state.signing_keys,
            chain_state.sign_in_limits,
        )
        assert chain_state.plans.enabled and not stock_state.plans.enabled
        transport = httpx.ASGITransport(app=create_app(settings, stock_state))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as stock:
            # The patient 王芳 signs in from the mini-program with her phone.
            code, phone = wechat.login("o-plans"), wechat.phone_code("13800000001")
            signed = await gql(stock, PATIENT_SIGN_IN, {"t": chain.slug, "c": code, "p": phone})
            tokens["patient"] = ok(signed)["signInPatient"]["accessToken"]
            yield World(chain, stock, tokens, ids)


def _type_name(node: Any) -> tuple[str, bool]:
    """(named type, nullable) of a variable's type."""
    nullable = not isinstance(node, NonNullTypeNode)
    inner = node.type if isinstance(node, NonNullTypeNode) else node
    while isinstance(inner, ListTypeNode | NonNullTypeNode):
        inner = inner.type
    assert isinstance(inner, NamedTypeNode)
    return inner.name.value, nullable


def _value(world: World, name: str, kind: str, until: datetime) -> Any:
    """What a client sends for this variable."""
    ids = world.ids
    by_name: dict[str, Any] = {
        "patientId": ids["patient"],
        "id": ids["patient"],
        "branchId": ids["branch"],
        "first": 2,
        "depth": 2,
        "from": (until - timedelta(days=30)).isoformat(),
        "to": until.isoformat(),
        "filter": {"reachableBy": ["SMS"]} if kind == "SegmentFilterInput" else None,
        "token": "not-a-survey-token",
    }
    return by_name.get(name)


def _fuzzed(world: World, kind: str, nullable: bool) -> list[Any]:
    """Values a careless or hostile client sends instead."""
    pool: dict[str, list[Any]] = {
        "ID": [world.ids["referred"], world.ids["branch"], world.ids["tag"], "bm9wZQ==", ""],
        "Int": [0, -1, 1000, 2**31],
        "String": ["not-a-cursor", "", "患者"],
        "DateTime": ["2026-13-01", "2026-11-24T09:00:00+08:00"],
        "SegmentFilterInput": [{"tagIds": [world.ids["tag"]]}, {"nope": 1}],
        "PatientFilter": [{"phone": "13800000001"}, {"tagIds": [world.ids["tag"]]}],
    }
    return pool.get(kind, [{"x": 1}]) + ([None] if nullable else [])


def _variable_sets(world: World, query: Query, role: str, until: datetime) -> list[dict]:
    base = {
        v.variable.name.value: _value(world, v.variable.name.value, _type_name(v.type)[0], until)
        for v in query.variables
    }
    base = {name: value for name, value in base.items() if value is not None}  # left out
    sets = [base]
    if role in FUZZED_ROLES and query.variables:
        rng = random.Random(f"{query.name}/{role}")
        for _ in range(2):
            variable = rng.choice(query.variables)
            kind, nullable = _type_name(variable.type)
            sets.append(
                {**base, variable.variable.name.value: rng.choice(_fuzzed(world, kind, nullable))}
            )
    return sets


async def _send(
    client: httpx.AsyncClient, query: Query, variables: dict, token: str
) -> tuple[str, dict[str, Any]]:
    request_id = uuid.uuid4().hex
    body = {
        "operationName": query.name,
        "variables": variables,
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256(query.text)}},
    }
    headers = {"authorization": f"Bearer {token}", "x-request-id": request_id}
    answer = await client.post("/graphql", json=body, headers=headers)
    return request_id, answer.json()


# Queries that read the log with no time window: each pair's second request sees what the
# first one logged. They page from a cursor taken before the pair, and their counts, which
# include the pair's own entries, are left out of the comparison.
OWN_LOG = {"MyAccessHistory"}


async def _cursor(world: World, query: Query, token: str) -> str | None:
    _, page = await _send(world.stock, query, {"first": 1}, token)
    return ok(page)["myAccessHistory"]["pageInfo"]["endCursor"]


def _older(answer: dict[str, Any]) -> dict[str, Any]:
    data = answer.get("data") or {}
    if data.get("myAccessHistory"):
        data["myAccessHistory"].pop("totalCount")
    return answer


def _errors(answer: dict[str, Any], request_id: str) -> list[tuple]:
    """The errors, but for the request id a masked one names."""
    return [
        (
            e.get("message", "").replace(request_id, "<request>"),
            e.get("path"),
            (e.get("extensions") or {}).get("code"),
        )
        for e in answer.get("errors", [])
    ]


async def _logged(db: Database, slug: str, request_ids: list[str]) -> dict[str, list[tuple]]:
    engine = make_engine(db.owner_url)
    try:
        async with session_factory(engine)() as session:
            await bind_to_chain(session, slug)
            async with session.begin():
                rows = await session.execute(
                    select(
                        AccessLogEntry.request_id,
                        AccessLogEntry.action,
                        AccessLogEntry.patient_ids,
                        AccessLogEntry.field_groups,
                        AccessLogEntry.outcome,
                        AccessLogEntry.reason,
                        AccessLogEntry.operation_name,
                    ).where(AccessLogEntry.request_id.in_(request_ids))
                )
                found: dict[str, list[tuple]] = {r: [] for r in request_ids}
                for request_id, action, patients, groups, outcome, reason, name in rows:
                    entry = (action, sorted(json.loads(patients)), groups, outcome, reason, name)
                    found[request_id].append(entry)
    finally:
        await engine.dispose()
    return {key: sorted(value) for key, value in found.items()}


def _statements(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    return {
        r.fields["request_id"]: r.fields["sql_statements"]  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "patientpool.requests" and hasattr(r, "fields")
    }


async def test_every_trusted_query_answers_by_its_plan_as_graphql_core_does(
    world: World, db: Database, chain_state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="patientpool.requests")
    planned_client = world.chain.client
    pairs: list[tuple[str, str, str, dict, dict, dict]] = []
    for query in QUERIES:
        for role, token in world.tokens.items():
            until = datetime.now(UTC) - timedelta(seconds=1)
            for variables in _variable_sets(world, query, role, until):
                if query.name in OWN_LOG and role == "patient":
                    variables = {**variables, "after": await _cursor(world, query, token)}
                stock_id, stock = await _send(world.stock, query, variables, token)
                plan_id, planned = await _send(planned_client, query, variables, token)
                label = f"{query.name} as {role} with {variables}"
                if query.name in OWN_LOG:
                    stock, planned = _older(stock), _older(planned)
                assert _errors(planned, plan_id) == _errors(stock, stock_id), label
                assert planned.get("data") == stock.get("data"), label
                pairs.append((label, stock_id, plan_id, stock, planned, variables))
    logged = await _logged(db, world.chain.slug, [i for p in pairs for i in p[1:3]])
    counted = _statements(caplog)
    for label, stock_id, plan_id, *_ in pairs:
        assert logged[plan_id] == logged[stock_id], label
        assert counted[plan_id] == counted[stock_id], label
    # A client's mistake (fuzzed variables among them) is never the server's.
    internal = [p[0] for p in pairs if "INTERNAL" in [c for *_, c in _errors(p[3], p[1])]]
    assert internal == []
    # The comparison is not empty: data came back, errors too, and the log was written.
    answered = [p for p in pairs if p[3].get("data") and not p[3].get("errors")]
    assert len(answered) > len(QUERIES) and any(p[3].get("errors") for p in pairs)
    assert sum(len(v) for v in logged.values()) > len(QUERIES)
    # Every trusted query was run by its plan, none fell back to the stock path.
    compiled = chain_state.plans.compiled()
    assert {q.name for q in QUERIES} <= compiled.keys()
    assert [name for name, planned in compiled.items() if not planned] == []
