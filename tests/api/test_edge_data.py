"""Personal data at the edge, in production settings: bad variables of every mutation answer
BAD_USER_INPUT naming the path, never the value; a scenario's every log line is free of the
seeded values; a tampered ciphertext answers DATA_INTEGRITY at its field and is on the record;
and a field a role sees masked cannot be filtered or grouped on by that role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
    get_named_type,
)
from sqlalchemy import select, update

from api.context import AppState
from api.door.fields import PATIENT_ROOT_FIELDS
from api.schema import build_schema
from auth.access_log import AccessLogEntry, verify_chain
from auth.patient_sessions import issue_patient_token
from domain.patients.models import Patient
from tenancy.session import bind_tenant
from tests.api.production import captured_logs, production_client
from tests.support import World, build_world, codes, gql, sign_in

# Values a frontend puts into variables: a name, a phone, health text. None may reach a log
# line or an error message.
CANARIES = ["王小明canary", "13800138000", "HIV阳性canary"]
CANARY = "".join(CANARIES)

SCHEMA = build_schema()._schema


STATE_PURPOSE = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: QUALITY_REVIEW,
  note: "integrity check") { id } }"""


@pytest.fixture
async def prod(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    async with production_client(state) as client:
        yield client


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"pii-{unique}")


def _unwrap(type_: GraphQLInputType) -> tuple[GraphQLInputType, list[str]]:
    """The named type and the wrappers around it, outermost first."""
    wrappers = []
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        wrappers.append("list" if isinstance(type_, GraphQLList) else "non-null")
        type_ = type_.of_type
    return type_, wrappers


def _wrap(value: Any, wrappers: list[str]) -> Any:
    for wrapper in reversed(wrappers):
        if wrapper == "list":
            value = [value]
    return value


def _required(obj: GraphQLInputObjectType) -> list[str]:
    return [
        n
        for n, f in obj.fields.items()
        if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
    ]


def bad_value(type_: GraphQLInputType, kind: str) -> tuple[Any, str] | None:
    """A value of `kind` that `type_` refuses, and the path (after the variable) that must be
    named; None when the type has no such mistake to make."""
    named, wrappers = _unwrap(type_)
    at = "[0]" if "list" in wrappers else ""
    if isinstance(named, GraphQLInputObjectType):
        if kind == "missing":
            required = _required(named)
            return (_wrap({}, wrappers), f"{at}.{required[0]}") if required else None
        if kind == "unknown field":
            return _wrap({"tenantId": CANARY}, wrappers), f"{at}.tenantId"
        for name, field in named.fields.items():
            inner, inner_wrappers = _unwrap(field.type)
            # a single value given for a list stands for a list of one: the path ends in [0]
            where = f"{at}.{name}" + ("[0]" if "list" in inner_wrappers else "")
            if kind == "wrong scalar" and isinstance(inner, GraphQLScalarType):
                return _wrap({name: {"value": CANARY}}, wrappers), where
            if kind == "bad enum" and isinstance(inner, GraphQLEnumType):
                return _wrap({name: CANARY}, wrappers), where
        return None
    if kind == "wrong scalar" and isinstance(named, GraphQLScalarType):
        return _wrap({"value": CANARY}, wrappers), at
    if kind == "bad enum" and isinstance(named, GraphQLEnumType):
        return _wrap(CANARY, wrappers), at
    return None


KINDS = ["missing", "unknown field", "wrong scalar", "bad enum"]


def variable_cases() -> list[tuple[str, str, dict[str, Any], str]]:
    """(case id, document, variables, path that must be named) for every argument of every
    mutation and every kind of mistake it can hold; the other arguments get wrong scalars too
    (so nothing of the operation can run)."""
    root = SCHEMA.mutation_type
    assert isinstance(root, GraphQLObjectType)
    cases = []
    for field_name, field in root.fields.items():
        if not field.args:
            continue
        named = get_named_type(field.type)
        pick = (
            " { __typename }" if not isinstance(named, GraphQLScalarType | GraphQLEnumType) else ""
        )
        defs = ", ".join(f"${a}: {arg.type}" for a, arg in field.args.items())
        uses = ", ".join(f"{a}: ${a}" for a in field.args)
        document = f"mutation M({defs}) {{ {field_name}({uses}){pick} }}"
        for arg_name, arg in field.args.items():
            for kind in KINDS:
                made = bad_value(arg.type, kind)
                if made is None:
                    continue
                value, path = made
                variables = {a: {"value": CANARY} for a in field.args if a != arg_name}
                variables[arg_name] = value
                cases.append(
                    (f"{field_name}.{arg_name}:{kind}", document, variables, f"${arg_name}{path}")
                )
    return cases


CASES = variable_cases()


def test_the_walk_covers_every_mutation_with_inputs() -> None:
    root = SCHEMA.mutation_type
    assert isinstance(root, GraphQLObjectType)
    with_inputs = {
        n
        for n, f in root.fields.items()
        if any(isinstance(_unwrap(a.type)[0], GraphQLInputObjectType) for a in f.args.values())
    }
    covered = {case.split(".")[0] for case, *_ in CASES}
    assert with_inputs and with_inputs <= covered
    kinds = {case.split(":")[1] for case, *_ in CASES}
    assert kinds == set(KINDS)


async def test_bad_variables_of_every_mutation_name_the_path_never_the_value(
    prod: httpx.AsyncClient, world: World, state: AppState
) -> None:
    staff = {"authorization": f"Bearer {await sign_in(prod, world, 'hq_admin')}"}
    # The patient's own mutations take a patient token (a staff one is refused before its
    # variables are read: the caller comes first); one issued as signInPatient issues it.
    token, _ = issue_patient_token(
        state.signing_keys, tenant_id=world.tenant_id, patient_id=world.patients["b1"].id
    )
    patient = {"authorization": f"Bearer {token}"}
    with captured_logs() as logs:
        for case, document, variables, path in CASES:
            headers = patient if case.split(".")[0] in PATIENT_ROOT_FIELDS else staff
            response = await prod.post(
                "/graphql", json={"query": document, "variables": variables}, headers=headers
            )
            assert response.status_code == 200, (case, response.text)
            body = response.json()
            assert body.get("data") is None, (case, body)
            assert set(codes(body)) == {"BAD_USER_INPUT"}, (case, body)
            named = [e["extensions"].get("field") for e in body["errors"]]
            assert path in named, (case, path, body)
            for error in body["errors"]:
                assert error["extensions"]["field"] in error["message"], (case, error)
            assert not any(c in response.text for c in CANARIES), (case, response.text)
    assert logs.holding(CANARIES) == []
    assert len(CASES) > 100


async def test_the_mistakes_seen_first(prod: httpx.AsyncClient, world: World) -> None:
    """The cases the issue saw answer INTERNAL before, each exactly."""
    headers = {"authorization": f"Bearer {await sign_in(prod, world, 'hq_admin')}"}
    create = "mutation C($i: CreatePatientInput!) { createPatient(input: $i) { patient { id } } }"
    person = {"name": "王小明", "phone": "13800138000", "medicalHistory": "HIV阳性"}
    branch = world.branch_gid("b1")
    seen = [
        (create, {"i": person}, "$i.homeBranchId", "required field"),
        (
            create,
            {"i": {**person, "homeBranchId": branch, "tenantId": "t"}},
            "$i.tenantId",
            "not a field",
        ),
        (create, {"i": {**person, "homeBranchId": branch, "gender": "aaaa"}}, "$i.gender", "enum"),
        ("query P($f: Int) { patients(first: $f) { totalCount } }", {"f": "abc"}, "$f", "Int"),
        (create, {}, "$i", "not given"),
        (create, {"i": None}, "$i", "null"),
    ]
    with captured_logs() as logs:
        for document, variables, path, words in seen:
            body = (
                await prod.post(
                    "/graphql", json={"query": document, "variables": variables}, headers=headers
                )
            ).json()
            assert codes(body) == ["BAD_USER_INPUT"], body
            error = body["errors"][0]
            assert error["extensions"]["field"] == path
            assert path in error["message"] and words in error["message"], error
            for value in ("王小明", "13800138000", "HIV阳性", "aaaa", "abc"):
                assert value not in str(body)
    assert logs.holding(["王小明", "13800138000", "HIV阳性"]) == []


async def _owner(owner: AppState, world: World) -> Any:
    session = owner.sessions()
    await bind_tenant(session, world.tenant_id)
    return session


async def test_failures_and_tampering_leave_no_personal_value_in_any_log(
    prod: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    """A scenario of everything that makes the server log: a resolver that fails on a stored
    value, ciphertexts tampered with and moved, literal and variable mistakes, a bad token.
    Every log line it writes is scanned for the patients' seeded values."""
    doctor_view = world.patients["assigned"]
    seeded = [v for values in world.plaintext.values() for v in values.values()]
    # A stored value the code cannot read (gender is an enum): the resolver fails, INTERNAL.
    broken = "cnry" + world.slug[-6:]
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        await s.execute(
            update(Patient).where(Patient.id == world.patients["b1"].id).values(gender=broken)
        )
    seeded.append(broken)
    admin = await sign_in(prod, world, "hq_admin")
    with captured_logs() as logs:
        failed = await gql(
            prod,
            "query($id: ID!) { patient(id: $id) { name gender } }",
            {"id": world.gid("b1")},
            token=admin,
        )
        assert codes(failed) == ["INTERNAL"], failed
        request_id = failed["errors"][0]["extensions"]["requestId"]
        # The same failure beside fields that go to the database after it: graphql-core leaves
        # them running while the operation ends; the answer is still coded, nothing hangs.
        for _ in range(3):
            stray = await gql(
                prod,
                "query($id: ID!) { patient(id: $id) { gender stageHistory { toStage } "
                "homeBranch { name } scoreExplanation { score } } }",
                {"id": world.gid("b1")},
                token=admin,
            )
            assert codes(stray) == ["INTERNAL"], stray
        await gql(
            prod,
            'mutation { createPatient(input: {name: "'
            + world.plaintext["b2"]["name"]
            + '", homeBranchId: 5}) { patient { id } } }',
            token=admin,
        )
        await gql(
            prod,
            'mutation($i: UpdatePatientInput!) { updatePatient(id: "x", input: $i) '
            "{ patient { id } } }",
            {"i": {"name": {"n": world.plaintext["b2"]["name"]}, "phone": 5}},
            token=admin,
        )
        await gql(
            prod, "{ patients { totalCount } }", token="garbage." + world.plaintext["b2"]["phone"]
        )
        await _tamper(owner_state, world, doctor_view.id)
        # HQ checks the record outside its own care: it states why first.
        await gql(prod, STATE_PURPOSE, {"id": world.gid("assigned")}, token=admin)
        tampered = await gql(
            prod,
            "query($id: ID!) { patient(id: $id) { name phone medicalHistory } }",
            {"id": world.gid("assigned")},
            token=admin,
        )
        assert {e["extensions"]["code"] for e in tampered["errors"]} == {"DATA_INTEGRITY"}
    assert any(request_id in line for line in logs.lines), logs.lines
    assert logs.holding(seeded) == [], logs.holding(seeded)


async def _tamper(owner: AppState, world: World, patient_id: Any) -> None:
    """One bit of the name flipped; the phone replaced by another patient's (moved)."""
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        row = await s.scalar(select(Patient).where(Patient.id == patient_id))
        other = await s.scalar(select(Patient).where(Patient.id == world.patients["hm"].id))
        assert row is not None and other is not None
        name = bytearray(row.name_ct)
        name[-1] ^= 1
        await s.execute(
            update(Patient)
            .where(Patient.id == patient_id)
            .values(name_ct=bytes(name), phone_ct=other.phone_ct)
        )


async def test_a_tampered_ciphertext_is_null_with_data_integrity_and_on_the_record(
    prod: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    await _tamper(owner_state, world, world.patients["assigned"].id)
    admin = await sign_in(prod, world, "hq_admin")
    await gql(prod, STATE_PURPOSE, {"id": world.gid("assigned")}, token=admin)
    result = await gql(
        prod,
        "query($id: ID!) { patient(id: $id) { id name phone allergies gender } }",
        {"id": world.gid("assigned")},
        token=admin,
    )
    patient = result["data"]["patient"]
    assert patient["name"] is None and patient["phone"] is None
    # The rest of the answer stands.
    assert patient["allergies"] == world.plaintext["assigned"]["allergies"]
    assert patient["id"] == world.gid("assigned")
    by_path = {tuple(e["path"]): e["extensions"]["code"] for e in result["errors"]}
    assert by_path == {
        ("patient", "name"): "DATA_INTEGRITY",
        ("patient", "phone"): "DATA_INTEGRITY",
    }
    assert all("requestId" not in e["extensions"] for e in result["errors"])
    # The security event: ids and field groups only, and the chain still verifies.
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        events = (
            await s.scalars(
                select(AccessLogEntry).where(AccessLogEntry.action == "integrity_failed")
            )
        ).all()
        assert [(e.patient_ids, e.field_groups, e.outcome) for e in events] == [
            (f'["{world.patients["assigned"].id}"]', "contact", "denied")
        ]
        assert (await verify_chain(s)).ok
    # An auditor can find it.
    auditor = await sign_in(prod, world, "auditor")
    found = await gql(
        prod,
        "{ accessLog(filter: {actions: [INTEGRITY_FAILED]}) { edges { node { action } } } }",
        token=auditor,
    )
    assert [e["node"]["action"] for e in found["data"]["accessLog"]["edges"]] == [
        "INTEGRITY_FAILED"
    ]


async def test_a_masked_field_cannot_be_filtered_or_grouped_on(
    prod: httpx.AsyncClient, world: World
) -> None:
    phone = world.plaintext["b1"]["phone"]
    by_phone = "query($p: String) { patients(filter: {phone: $p}) { totalCount } }"
    marketing = await sign_in(prod, world, "marketing")
    # marketing sees phones masked: no probing by full number, no grouping by equal phones
    seen = await gql(prod, "{ patients(first: 1) { edges { node { phone } } } }", token=marketing)
    assert "****" in seen["data"]["patients"]["edges"][0]["node"]["phone"]
    for document, variables, field in (
        (by_phone, {"p": phone}, "phone"),
        (by_phone, {"p": "+8613900000000"}, "phone"),
        ("{ possibleDuplicates { totalCount } }", {}, "possibleDuplicates"),
    ):
        refused = await gql(prod, document, variables, token=marketing)
        assert codes(refused) == ["FORBIDDEN"], refused
        assert refused["errors"][0]["extensions"]["field"] == field
        assert refused["data"] is None
    # An operator sees phones in full and may look one up.
    admin = await sign_in(prod, world, "hq_admin")
    found = await gql(prod, by_phone, {"p": phone}, token=admin)
    assert found["data"]["patients"]["totalCount"] == 1
    assert codes(await gql(prod, "{ possibleDuplicates { totalCount } }", token=admin)) == []
