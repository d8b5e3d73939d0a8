"""The access log: the right entries for every patient operation, tamper evidence, append-only
storage, a linear chain under concurrency, and who may read it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLObjectType, get_named_type
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine

from api.context import AppState
from api.ids import to_global_id
from api.schema import build_schema
from auth.access_log import (
    AccessEvent,
    AccessLogEntry,
    AccessLogPatient,
    Action,
    Actor,
    RequestInfo,
    append,
    verify_chain,
)
from tenancy.session import bind_tenant, make_engine, session_factory
from tests.conftest import Database
from tests.support import SEEDED, World, build_world, codes, gql, sign_in


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"l-{unique}")


async def entries(owner: AppState, world: World) -> list[AccessLogEntry]:
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        return list((await s.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq))).all())


def _pids(entry: AccessLogEntry) -> set[str]:
    return set(json.loads(entry.patient_ids))


UPDATED_B1 = [("update", "allowed", {"b1"}, "")]
SEEDED.add("wx-log-case")  # a WeChat id one case writes: the log scan checks no line holds it

# Every root field that reads or changes patients, with an operation and the entries it must
# leave: (action, outcome, patient keys, field groups). `None` keys: whichever ids it returned.
CASES: dict[str, tuple[str, dict[str, Any], list[tuple[str, str, set[str] | None, str]]]] = {
    "patient": (
        "query($id: ID!) { patient(id: $id) { name medicalHistory } }",
        {"id": "b1"},
        # HQ, outside its own care and with no purpose stated: health refused for want of one
        [("decrypt_denied", "denied", {"b1"}, "health"), ("read", "allowed", {"b1"}, "contact")],
    ),
    "statePurpose": (
        "mutation($p: ID!) { statePurpose(patientId: $p, purpose: QUALITY_REVIEW, "
        'note: "review") { id } }',
        {"p": "b1"},
        [("state_purpose", "allowed", {"b1"}, "health")],
    ),
    "patients": (
        "query PatientList { patients(first: 2) { edges { node { phone } } } }",
        {},
        [("list", "allowed", None, "contact")],
    ),
    "createPatient": (
        'mutation($b: ID!) { createPatient(input: {name: "新", homeBranchId: $b, '
        'allergies: "无"}) { patient { id } } }',
        {"b": "branch:b1"},
        [("create", "allowed", None, "contact,health")],
    ),
    "updatePatient": (  # (health writes, under a stated purpose: tests/chain/test_reasons.py)
        'mutation($id: ID!) { updatePatient(id: $id, input: {wechatId: "wx-log-case"}) '
        "{ patient { id } } }",
        {"id": "b2"},
        [("update", "allowed", {"b2"}, "contact")],
    ),
    "erasePatient": (
        "mutation($id: ID!) { erasePatient(id: $id) { patient { id } } }",
        {"id": "b2"},
        [("erase", "allowed", {"b2"}, "contact,health")],
    ),
    "mergePatients": (
        "mutation($k: ID!, $m: ID!) { mergePatients(keepId: $k, mergeId: $m) { id } }",
        {"k": "b1", "m": "b2"},
        [("merge", "allowed", {"b1", "b2"}, "contact,health")],
    ),
    "tagPatients": (
        "mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) { added } }",
        {"t": "tag:none", "p": ["b1"]},
        [],  # an unknown tag: NOT_FOUND, nothing changed, nothing to log
    ),
    "untagPatients": ("", {}, []),
    "recordEvents": (
        'mutation($p: ID!) { recordEvents(events: [{clientEventId: "e1", patientId: $p, '
        'type: INTERACTION, occurredAt: "2026-11-01T00:00:00Z"}]) { inserted } }',
        {"p": "b1"},
        [("update", "allowed", {"b1"}, "")],
    ),
    "changeStage": (
        'mutation($p: ID!) { changeStage(patientId: $p, stage: "lost") { id } }',
        {"p": "b1"},
        [("update", "allowed", {"b1"}, "")],
    ),
    "possibleDuplicates": ("{ possibleDuplicates { edges { node { patients { id } } } } }", {}, []),
    "previewSegment": (
        "{ previewSegment(filter: {scoreMin: 0}) { members(first: 2) { edges { node { id } } } } }",
        {},
        [("list", "allowed", None, "")],
    ),
    # segments log through their `members` field, covered by previewSegment above
    "segment": ("", {}, []),
    "createSegment": ("", {}, []),
    "segments": ("", {}, []),
    "changePassword": ("", {}, []),
    # a customer group logs through its `members` field, read as a patient list: a group
    # needs WeCom's callbacks first (tests/wecom/test_groups.py checks that entry)
    "groupChat": ("", {}, []),
    "groupChats": ("", {}, []),
    # care and referrals: each change is an update of the patient it concerns
    "bookVisit": (
        "mutation($p: ID!, $b: ID!) { bookVisit(patientId: $p, branchId: $b, "
        'scheduledAt: "2030-01-02T09:00:00+08:00") { id } }',
        {"p": "b1", "b": "branch:b1"},
        UPDATED_B1,
    ),
    "rescheduleVisit": (
        "mutation($id: ID!) { rescheduleVisit(id: $id, "
        'scheduledAt: "2030-01-03T09:00:00+08:00") { id } }',
        {"id": "visit:b1"},
        UPDATED_B1,
    ),
    "cancelVisit": (
        "mutation($id: ID!) { cancelVisit(id: $id) { id } }",
        {"id": "visit:b1"},
        UPDATED_B1,
    ),
    "markArrived": (
        "mutation($id: ID!) { markArrived(id: $id) { id } }",
        {"id": "visit:b1"},
        UPDATED_B1,
    ),
    "markNoShow": (
        "mutation($id: ID!) { markNoShow(id: $id) { id } }",
        {"id": "visit:b1"},
        UPDATED_B1,
    ),
    "visits": (
        "{ visits(first: 5) { edges { node { id } } } }",
        {"_prep": "visit:b1"},
        [("list", "allowed", {"b1"}, "")],
    ),
    "createOrder": (
        "mutation($p: ID!, $b: ID!) { createOrder(patientId: $p, branchId: $b, "
        'lines: [{service: "洁牙", unitPrice: "199.00"}]) { id } }',
        {"p": "b1", "b": "branch:b1"},
        UPDATED_B1,
    ),
    "payOrder": ("mutation($id: ID!) { payOrder(id: $id) { id } }", {"id": "order:b1"}, UPDATED_B1),
    "cancelOrder": (
        "mutation($id: ID!) { cancelOrder(id: $id) { id } }",
        {"id": "order:b1"},
        UPDATED_B1,
    ),
    "refundOrder": (
        'mutation($id: ID!) { refundOrder(id: $id, amount: "10.00") { id } }',
        {"id": "paid:b1"},
        UPDATED_B1,
    ),
    "orders": (
        "{ orders(first: 5) { edges { node { id } } } }",
        {"_prep": "order:b1"},
        [("list", "allowed", {"b1"}, "")],
    ),
    "createFollowUp": (
        "mutation($p: ID!) { createFollowUp(patientId: $p, kind: POST_VISIT, "
        'dueAt: "2030-01-02T09:00:00+08:00") { id } }',
        {"p": "b1"},
        UPDATED_B1,
    ),
    "completeFollowUp": (
        'mutation($id: ID!) { completeFollowUp(id: $id, outcome: "called") { id } }',
        {"id": "followup:b1"},
        UPDATED_B1,
    ),
    "cancelFollowUp": (
        "mutation($id: ID!) { cancelFollowUp(id: $id) { id } }",
        {"id": "followup:b1"},
        UPDATED_B1,
    ),
    "followUps": (
        "{ followUps(first: 5) { edges { node { id } } } }",
        {"_prep": "followup:b1"},
        [("list", "allowed", {"b1"}, "")],
    ),
    "linkReferral": (
        "mutation($p: ID!, $c: String!) { linkReferral(patientId: $p, referralCode: $c) "
        "{ referred { id } } }",
        {"p": "b2", "c": "code:b1"},
        [("update", "allowed", {"b1", "b2"}, "")],
    ),
    "referralTree": (
        "query($p: ID!) { referralTree(patientId: $p) { nodes { patient { id } } } }",
        {"p": "b1", "_prep": "linked:b1>b2"},
        [("list", "allowed", {"b1", "b2"}, "")],
    ),
    "topReferrers": (
        "query($f: DateTime!, $t: DateTime!) { topReferrers(from: $f, to: $t) { edges { node { "
        "patient { id } } } } }",
        {"_prep": "linked:b1>b2", "f": "days:-200", "t": "days:100"},
        [("list", "allowed", {"b1"}, "")],
    ),
    "node": (
        "query($id: ID!) { node(id: $id) { ... on Patient { name } } }",
        {"id": "b1"},
        [("read", "allowed", {"b1"}, "contact")],
    ),
    "patientConsents": (
        "query($p: ID!) { patientConsents(patientId: $p) { current { granted } } }",
        {"p": "b1"},
        [("read", "allowed", {"b1"}, "")],
    ),
    "recordConsent": (
        "mutation($p: ID!) { recordConsent(patientId: $p, purpose: MARKETING, channel: SMS, "
        'granted: true, textVersion: "v1", method: "paper_form") { current { granted } } }',
        {"p": "b1"},
        UPDATED_B1,
    ),
    "exportPatientData": (
        "mutation($p: ID!) { exportPatientData(patientId: $p) { content } }",
        {"p": "b1"},
        # HQ, outside its own care, no purpose stated: the copy (health included) is refused
        [("decrypt_denied", "denied", {"b1"}, "health")],
    ),
    "rewards": (
        "query($p: ID!) { rewards(patientId: $p) { edges { node { id } } } }",
        {"p": "b1"},
        [("read", "allowed", {"b1"}, "")],
    ),
}


def _reaches_patient(t: Any, seen: set[str], depth: int = 4) -> bool:
    t = get_named_type(t)
    if t.name == "Patient":
        return True
    if depth == 0 or not isinstance(t, GraphQLObjectType) or t.name in seen:
        return False
    seen.add(t.name)
    return any(_reaches_patient(f.type, seen, depth - 1) for f in t.fields.values())


def _patient_root_fields() -> set[str]:
    """Root fields whose answer can lead to a Patient (through connections, nodes, referral
    trees…), or that take a patient id: the schema walked, so a new one is never missed."""
    schema = build_schema()._schema
    found = set()
    for root in (schema.query_type, schema.mutation_type):
        for name, fld in root.fields.items():
            if _reaches_patient(fld.type, set()) or any("patient" in a.lower() for a in fld.args):
                found.add(name)
    return found


def test_every_patient_operation_has_a_logging_case() -> None:
    missing = _patient_root_fields() - set(CASES) - {"patientAccessHistory", "exportAccessLog"}
    assert not missing, f"add a CASES entry (what it must log) for: {sorted(missing)}"


def _resolve(world: World, value: Any) -> Any:
    if isinstance(value, list):
        return [_resolve(world, v) for v in value]
    if value == "tag:none":
        return to_global_id("Tag", uuid.UUID(int=0))
    if isinstance(value, str) and value.startswith("branch:"):
        return world.branch_gid(value.removeprefix("branch:"))
    if isinstance(value, str) and value in world.patients:
        return world.gid(value)
    if isinstance(value, str) and value.startswith("days:"):  # a moment relative to now
        return (datetime.now(UTC) + timedelta(days=int(value[5:]))).isoformat()
    return value


async def _prepare(client: httpx.AsyncClient, token: str, world: World, value: Any) -> Any:
    """Values like `visit:b1` stand for a row made first (through the API): its id."""
    if not isinstance(value, str) or value.startswith(("branch:", "tag:", "days:")):
        return _resolve(world, value)
    if ":" not in value:
        return _resolve(world, value)
    what, key = value.split(":")

    async def run(query: str, **variables: Any) -> Any:
        result = await gql(client, query, variables, token=token)
        assert "errors" not in result, result
        return next(iter(result["data"].values()))

    patient, branch = world.gid(key.split(">")[0]), world.branch_gid("b1")
    if what == "visit":
        return (
            await run(
                "mutation($p: ID!, $b: ID!) { bookVisit(patientId: $p, branchId: $b, "
                'scheduledAt: "2030-01-01T09:00:00+08:00") { id } }',
                p=patient,
                b=branch,
            )
        )["id"]
    if what in ("order", "paid"):
        order = (
            await run(
                "mutation($p: ID!, $b: ID!) { createOrder(patientId: $p, branchId: $b, "
                'lines: [{service: "检查", unitPrice: "50.00"}]) { id } }',
                p=patient,
                b=branch,
            )
        )["id"]
        if what == "paid":
            await run("mutation($id: ID!) { payOrder(id: $id) { id } }", id=order)
        return order
    if what == "followup":
        return (
            await run(
                "mutation($p: ID!) { createFollowUp(patientId: $p, kind: HEALTH_EDUCATION, "
                'dueAt: "2030-01-01T09:00:00+08:00") { id } }',
                p=patient,
            )
        )["id"]
    code = (await run("query($p: ID!) { patient(id: $p) { referralCode } }", p=patient))[
        "referralCode"
    ]
    if what == "code":
        return code
    assert what == "linked", value
    referred = world.gid(key.split(">")[1])
    await run(
        "mutation($p: ID!, $c: String!) { linkReferral(patientId: $p, referralCode: $c) "
        "{ referred { id } } }",
        p=referred,
        c=code,
    )
    return None


@pytest.mark.parametrize("field", sorted(k for k, v in CASES.items() if v[0]))
async def test_operation_writes_the_right_entries(
    client: httpx.AsyncClient, owner_state: AppState, world: World, field: str
) -> None:
    query, variables, expected = CASES[field]
    token = await sign_in(client, world, "hq_admin")
    prepared = {k: await _prepare(client, token, world, v) for k, v in variables.items()}
    before = len(await entries(owner_state, world))
    result = await gql(client, query, prepared, token=token)
    new = (await entries(owner_state, world))[before:]
    got = [(e.action, e.outcome, e.field_groups) for e in new]
    assert got == [(a, o, g) for a, o, _k, g in expected], (result, got)
    by_key = {str(p.id): k for k, p in world.patients.items()}
    returned = json.dumps(result)
    for entry, (_a, _o, keys, _g) in zip(new, expected, strict=True):
        if keys is not None:
            assert {by_key.get(p, p) for p in _pids(entry)} == keys
        else:  # exactly the ids it returned or made
            assert _pids(entry), entry.patient_ids
            for pid in _pids(entry):
                assert pid in by_key or "createPatient" in result.get("data", {}) or pid
            if "patients" in (result.get("data") or {}):
                assert len(_pids(entry)) == len(result["data"]["patients"]["edges"])
        assert entry.request_id and entry.actor_type == "user"
        assert "测试患者" not in entry.patient_ids + entry.reason  # references only
    assert "Traceback" not in returned


async def test_denied_reads_and_failed_responses_are_logged(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    operator = await sign_in(client, world, "operator")
    before = len(await entries(owner_state, world))
    result = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { phone medicalHistory } }",
        {"id": world.gid("b1")},
        token=operator,
    )
    assert codes(result) == ["FORBIDDEN"]
    new = (await entries(owner_state, world))[before:]
    assert {(e.action, e.outcome, e.field_groups) for e in new} == {
        ("read", "allowed", "contact"),
        ("decrypt_denied", "denied", "health"),
    }
    # a failed mutation writes nothing but what it read
    admin = await sign_in(client, world, "hq_admin")
    before = len(await entries(owner_state, world))
    bad = await gql(
        client,
        'mutation($id: ID!) { updatePatient(id: $id, input: {phone: "x"}) { patient { id } } }',
        {"id": world.gid("b1")},
        token=admin,
    )
    assert codes(bad) == ["BAD_USER_INPUT"]
    assert [e.action for e in (await entries(owner_state, world))[before:]] == []


async def test_auditor_answers_the_question_in_one_query(
    client: httpx.AsyncClient, owner_state: AppState, world: World, unique: str
) -> None:
    """'Who looked at this patient's health data, and was it allowed?'"""
    for role in ("doctor", "operator", "hq_admin"):
        token = await sign_in(client, world, role)
        if role == "hq_admin":  # outside its own care: it says why first
            await gql(
                client,
                "mutation($id: ID!) { statePurpose(patientId: $id, purpose: COMPLAINT, "
                'note: "complaint") { id } }',
                {"id": world.gid("assigned")},
                token=token,
            )
        await gql(
            client,
            "query($id: ID!) { patient(id: $id) { medicalHistory } }",
            {"id": world.gid("assigned")},
            token=token,
        )
    auditor = await sign_in(client, world, "auditor")
    q = """query($p: ID!, $from: DateTime!) { accessLog(filter: {patientId: $p,
      fieldGroup: "health", from: $from}) { totalCount edges { node { actorId actorRoles action
      outcome occurredAt } } } }"""
    result = await gql(
        client, q, {"p": world.gid("assigned"), "from": "2026-01-01T00:00:00Z"}, token=auditor
    )
    rows = [e["node"] for e in result["data"]["accessLog"]["edges"]]
    seen = {(tuple(r["actorRoles"]), r["outcome"]) for r in rows}
    assert seen == {(("doctor",), "ALLOWED"), (("hq_admin",), "ALLOWED"), (("operator",), "DENIED")}
    history = await gql(
        client,
        "query($p: ID!) { patientAccessHistory(patientId: $p) { totalCount } }",
        {"p": world.gid("assigned")},
        token=auditor,
    )
    assert history["data"]["patientAccessHistory"]["totalCount"] >= 3
    # auditors see no patient data; other roles do not see the log
    assert codes(await gql(client, "{ patients { totalCount } }", token=auditor)) == ["FORBIDDEN"]
    for role in ("hq_admin", "doctor", "marketing"):
        token = await sign_in(client, world, role)
        assert codes(await gql(client, "{ accessLog { totalCount } }", token=token)) == [
            "FORBIDDEN"
        ]
    # another tenant's auditor sees nothing of this one
    other = await build_world(owner_state, f"l2-{unique}")
    theirs = await sign_in(client, other, "auditor")
    foreign = await gql(
        client, q, {"p": world.gid("assigned"), "from": "2026-01-01T00:00:00Z"}, token=theirs
    )
    assert foreign["data"]["accessLog"]["totalCount"] == 0
    # the export is itself logged
    export = await gql(
        client, "mutation { exportAccessLog(format: CSV) { entries content } }", token=auditor
    )
    assert export["data"]["exportAccessLog"]["entries"] > 3
    assert export["data"]["exportAccessLog"]["content"].startswith("seq,")
    assert (await entries(owner_state, world))[-1].action == "export"


# --- tampering ---


async def _owner_exec(db: Database, *sql: str) -> None:
    engine = create_async_engine(db.owner_url)
    try:
        async with engine.begin() as conn:
            for statement in sql:
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


def _unlock(db: Database) -> tuple[str, ...]:
    if db.kind == "postgres":
        return ("ALTER TABLE access_log DISABLE TRIGGER USER",)
    return ("DROP TRIGGER access_log_no_update", "DROP TRIGGER access_log_no_delete")


def _relock(db: Database) -> tuple[str, ...]:
    """The triggers as migration 0004 leaves them: no update, delete only when archived."""
    if db.kind == "postgres":
        return ("ALTER TABLE access_log ENABLE TRIGGER USER",)
    archived = (
        "EXISTS (SELECT 1 FROM access_log_segments s WHERE s.tenant_id = OLD.tenant_id "
        "AND OLD.seq BETWEEN s.first_seq AND s.last_seq)"
    )
    return (
        "CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log "
        "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END",
        f"CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log WHEN NOT {archived} "
        "BEGIN SELECT RAISE(ABORT, 'access_log is append-only: entry is not archived'); END",
    )


def _tid(db: Database, world: World) -> str:
    return str(world.tenant_id) if db.kind == "postgres" else world.tenant_id.hex


TAMPERING = {
    "actor changed": "UPDATE access_log SET actor_id = 'someone-else' WHERE {w} AND seq = 3",
    "outcome changed": "UPDATE access_log SET outcome = 'denied' WHERE {w} AND seq = 3",
    "patients changed": "UPDATE access_log SET patient_ids = '[]' WHERE {w} AND seq = 3",
    "time changed": "UPDATE access_log SET occurred_at = occurred_at - interval '1 day' "
    "WHERE {w} AND seq = 3",
    "entry deleted": "DELETE FROM access_log WHERE {w} AND seq = 3",
    # two steps: a unique key cannot hold two rows with one seq even for a moment
    "entries reordered": "UPDATE access_log SET seq = CASE seq WHEN 3 THEN 1004 ELSE 1003 END "
    "WHERE {w} AND seq IN (3, 4);UPDATE access_log SET seq = seq - 1000 WHERE {w} AND seq > 1000",
    "last entry deleted": "DELETE FROM access_log WHERE {w} AND seq = (SELECT max(seq) FROM "
    "access_log WHERE {w})",
}


async def _verify(owner: AppState, world: World) -> Any:
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        return await verify_chain(s)


@pytest.mark.parametrize("how", sorted(TAMPERING))
async def test_tampering_is_detected(
    db: Database, client: httpx.AsyncClient, owner_state: AppState, world: World, how: str
) -> None:
    token = await sign_in(client, world, "hq_admin")
    for key in ("b1", "b2", "assigned", "hm", "b1"):
        await gql(
            client,
            "query($id: ID!) { patient(id: $id) { name } }",
            {"id": world.gid(key)},
            token=token,
        )
    assert (await _verify(owner_state, world)).ok
    sql = TAMPERING[how]
    if db.kind == "sqlite":
        sql = sql.replace("occurred_at - interval '1 day'", "'2020-01-01 00:00:00.000000'")
    w = f"tenant_id = '{_tid(db, world)}'"
    statements = sql.format(w=w).split(";")
    await _owner_exec(db, *_unlock(db), *statements, *_relock(db))
    result = await _verify(owner_state, world)
    assert not result.ok
    if how != "last entry deleted":
        assert result.broken_seq == 3, result
    env = {
        **os.environ,
        "PATIENTPOOL_DATABASE_URL": db.owner_url,
        "PATIENTPOOL_DATA_DIR": str(Path(owner_state.settings.data_dir)),
    }
    done = subprocess.run(
        [sys.executable, "-m", "process.cli", "audit", "verify", "--tenant", world.slug],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout


async def test_append_only(
    db: Database, client: httpx.AsyncClient, state: AppState, world: World
) -> None:
    """The application role cannot change or delete entries (privileges on PostgreSQL,
    triggers on both); the ORM refuses too."""
    token = await sign_in(client, world, "hq_admin")
    await gql(client, "{ patients { totalCount edges { node { id } } } }", token=token)
    engine = create_async_engine(db.app_url)
    try:
        for sql in ("UPDATE access_log SET reason = 'x'", "DELETE FROM access_log"):
            with pytest.raises((DBAPIError, ProgrammingError, OperationalError, IntegrityError)):
                async with engine.begin() as conn:
                    if db.kind == "postgres":
                        await conn.execute(
                            text("SELECT set_config('app.tenant_id', :t, true)"),
                            {"t": str(world.tenant_id)},
                        )
                    await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()
    async with state.sessions() as s:
        await bind_tenant(s, world.tenant_id)
        async with s.begin():
            entry = await s.scalar(select(AccessLogEntry).limit(1))
            entry.reason = "changed"
            with pytest.raises(PermissionError):
                await s.flush()
            await s.rollback()


async def test_fifty_concurrent_requests_keep_one_chain(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    token = await sign_in(client, world, "hq_admin")
    before = len(await entries(owner_state, world))
    q = "query PatientList { patients { edges { node { name } } } }"
    results = await asyncio.gather(*(gql(client, q, token=token) for _ in range(50)))
    assert all("errors" not in r for r in results)
    after = await entries(owner_state, world)
    assert [e.action for e in after[before:]] == ["list"] * 50
    assert [e.seq for e in after] == list(range(1, len(after) + 1))
    assert (await _verify(owner_state, world)).ok


async def test_an_append_is_two_statements_on_postgresql(db: Database, world: World) -> None:
    """Lock and read the chain's head, then write its new hash, the entries and their index
    rows in one statement (data-modifying CTEs) on PostgreSQL, as the app's role under RLS; the
    chain and the index come out as the three statements SQLite runs would make them."""
    engine = make_engine(db.app_url, pool_size=1)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements.append(sql)

    b1, b2 = world.patients["b1"].id, world.patients["b2"].id
    events = [
        AccessEvent(Action.LIST, [b2, b1, b1], ["contact"]),
        AccessEvent(Action.ADMIN, [], []),
        AccessEvent(Action.READ, [b1], ["health"], reason="purpose CARE"),
    ]
    async with session_factory(engine)() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        before = await s.scalar(select(func.max(AccessLogEntry.seq))) or 0
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        await append(s, Actor("system", "test"), RequestInfo(), events)
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        touched = (
            await s.execute(
                select(AccessLogPatient.seq, AccessLogPatient.patient_id)
                .where(AccessLogPatient.seq > before)
                .order_by(AccessLogPatient.seq, AccessLogPatient.patient_id)
            )
        ).all()
    await engine.dispose()
    assert len(statements) == (2 if db.kind == "postgres" else 4), statements
    assert touched == sorted([(before + 1, b1), (before + 1, b2), (before + 3, b1)])
    written = await entries_after(db, world, before)
    assert [(e.seq, e.action, e.reason) for e in written] == [
        (before + 1, "list", ""),
        (before + 2, "admin", ""),
        (before + 3, "read", "purpose CARE"),
    ]


async def entries_after(db: Database, world: World, seq: int) -> list[AccessLogEntry]:
    engine = make_engine(db.owner_url, pool_size=1)
    async with session_factory(engine)() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        assert (await verify_chain(s)).ok
        stmt = select(AccessLogEntry).where(AccessLogEntry.seq > seq).order_by(AccessLogEntry.seq)
        found = list((await s.scalars(stmt)).all())
    await engine.dispose()
    return found
