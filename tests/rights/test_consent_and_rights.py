"""Consent per purpose and channel, audiences that honour it at once, a patient's copy of their
data, and erasure that leaves nothing readable while the figures still add up."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from api.context import AppState
from auth.access_log import AccessLogEntry
from migrations.registry import target_metadata
from tenancy.session import bind_tenant
from tests.conftest import Database
from tests.support import World, build_world, codes, gql, ok, sign_in

RECORD = (
    "mutation($p: ID!, $purpose: Purpose!, $channel: ContactChannel!, $granted: Boolean!) {"
    " recordConsent(patientId: $p, purpose: $purpose, channel: $channel, granted: $granted,"
    ' textVersion: "2026-09", method: "paper_form") {'
    " current { purpose channel granted textVersion } history { granted recordedBy } } }"
)
CONSENTS = (
    "query($p: ID!) { patientConsents(patientId: $p) { current { purpose channel granted } "
    "history { purpose channel granted method textVersion } } }"
)
REACHABLE = (
    "query($c: [ContactChannel!]!) { previewSegment(filter: {reachableBy: $c}) { count "
    "members(first: 50) { edges { node { id } } } } }"
)
EXPORT = "mutation($p: ID!) { exportPatientData(patientId: $p) { patientId content } }"
# A data-subject request outside HQ's own care: the purpose is stated first (reason gate).
LEGAL = """mutation($p: ID!) { statePurpose(patientId: $p, purpose: LEGAL,
  note: "data copy request") { id } }"""


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"r-{unique}")


async def _consent(
    client: httpx.AsyncClient,
    token: str,
    world: World,
    key: str,
    granted: bool,
    channel: str = "WECOM",
    purpose: str = "MARKETING",
) -> dict[str, Any]:
    variables = {"p": world.gid(key), "purpose": purpose, "channel": channel, "granted": granted}
    return await gql(client, RECORD, variables, token=token)


async def _reachable(client: httpx.AsyncClient, token: str, *channels: str) -> set[str]:
    result = await gql(client, REACHABLE, {"c": list(channels)}, token=token)
    preview = result["data"]["previewSegment"]
    ids = {e["node"]["id"] for e in preview["members"]["edges"]}
    assert preview["count"] == len(ids)
    return ids


async def test_consent_is_recorded_per_purpose_and_channel(
    client: httpx.AsyncClient, world: World, owner_state: AppState, unique: str
) -> None:
    operator = await sign_in(client, world, "operator")
    given = await _consent(client, operator, world, "b1", True)
    state = given["data"]["recordConsent"]
    assert state["current"] == [
        {"purpose": "MARKETING", "channel": "WECOM", "granted": True, "textVersion": "2026-09"}
    ]
    assert state["history"] == [
        {"granted": True, "recordedBy": f"user:{world.staff['operator'].id}"}
    ]
    await _consent(client, operator, world, "b1", True, channel="SMS")
    withdrawn = await _consent(client, operator, world, "b1", False)
    current = {(c["channel"], c["granted"]) for c in withdrawn["data"]["recordConsent"]["current"]}
    assert current == {("WECOM", False), ("SMS", True)}
    # Health-data consent is its own thing, not about a channel.
    mixed = await _consent(client, operator, world, "b1", True, "SMS", "HEALTH_DATA")
    assert codes(mixed) == ["BAD_USER_INPUT"]
    assert codes(await _consent(client, operator, world, "b1", True, "ANY", "HEALTH_DATA")) == []

    # The whole history stays; doctors read their own patients' consents, auditors none.
    admin = await sign_in(client, world, "hq_admin")
    seen = (await gql(client, CONSENTS, {"p": world.gid("b1")}, token=admin))["data"]
    assert [h["granted"] for h in seen["patientConsents"]["history"]] == [True, True, False, True]
    doctor = await sign_in(client, world, "doctor")
    assert codes(await gql(client, CONSENTS, {"p": world.gid("assigned")}, token=doctor)) == []
    assert codes(await gql(client, CONSENTS, {"p": world.gid("b2")}, token=doctor)) == ["NOT_FOUND"]
    assert codes(await _consent(client, doctor, world, "assigned", True)) == ["FORBIDDEN"]
    auditor = await sign_in(client, world, "auditor")
    assert codes(await gql(client, CONSENTS, {"p": world.gid("b1")}, token=auditor)) == [
        "FORBIDDEN"
    ]
    # Another chain's patient answers like a missing one, and nothing is written there.
    other = await build_world(owner_state, f"r2-{unique}")
    foreign = await gql(
        client,
        RECORD,
        {"p": other.gid("b1"), "purpose": "MARKETING", "channel": "SMS", "granted": True},
        token=operator,
    )
    assert codes(foreign) == ["NOT_FOUND"]
    theirs = await sign_in(client, other, "hq_admin")
    mine = (await gql(client, CONSENTS, {"p": other.gid("b1")}, token=theirs))["data"]
    assert mine["patientConsents"]["history"] == []


async def test_audiences_follow_consent_at_once(client: httpx.AsyncClient, world: World) -> None:
    admin = await sign_in(client, world, "hq_admin")
    assert await _reachable(client, admin, "WECOM") == set()
    for key in ("b1", "b2", "assigned"):
        await _consent(client, admin, world, key, True)
    await _consent(client, admin, world, "hm", True, channel="SMS")
    # care consent does not make anyone reachable for marketing
    await _consent(client, admin, world, "hm", True, channel="WECOM", purpose="CARE")
    assert await _reachable(client, admin, "WECOM") == {
        world.gid(k) for k in ("b1", "b2", "assigned")
    }
    assert await _reachable(client, admin, "WECOM", "SMS") == {
        world.gid(k) for k in ("b1", "b2", "assigned", "hm")
    }
    # A withdrawal holds for the very next audience.
    await _consent(client, admin, world, "b2", False)
    assert await _reachable(client, admin, "WECOM") == {world.gid(k) for k in ("b1", "assigned")}
    # An erased patient is never reached, whatever they had agreed to.
    await gql(
        client,
        "mutation($id: ID!) { erasePatient(id: $id) { patient { id } } }",
        {"id": world.gid("b1")},
        token=admin,
    )
    assert await _reachable(client, admin, "WECOM") == {world.gid("assigned")}


async def test_export_holds_everything_and_is_logged(
    client: httpx.AsyncClient, world: World, owner_state: AppState
) -> None:
    admin = await sign_in(client, world, "hq_admin")
    await _consent(client, admin, world, "b1", True)
    branch = world.branch_gid("b1")
    await gql(
        client,
        "mutation($p: ID!, $b: ID!) { createOrder(patientId: $p, branchId: $b, "
        'lines: [{service: "种植牙", unitPrice: "8800.00"}]) { id } }',
        {"p": world.gid("b1"), "b": branch},
        token=admin,
    )
    refused = await gql(client, EXPORT, {"p": world.gid("b1")}, token=admin)
    assert codes(refused) == ["FORBIDDEN"]
    assert refused["errors"][0]["extensions"]["reason"] == "REASON_REQUIRED"
    ok(await gql(client, LEGAL, {"p": world.gid("b1")}, token=admin))
    result = await gql(client, EXPORT, {"p": world.gid("b1")}, token=admin)
    copy = json.loads(result["data"]["exportPatientData"]["content"])
    plain = world.plaintext["b1"]
    assert copy["patient"]["name"] == plain["name"]
    assert copy["patient"]["medical_history"] == plain["medical_history"]
    assert copy["orders"][0]["lines"] == [
        {"service": "种植牙", "quantity": 1, "unit_price_fen": 880_000}
    ]
    assert [c["channel"] for c in copy["consents"]] == ["wecom"]
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        newest = select(AccessLogEntry).order_by(AccessLogEntry.seq.desc()).limit(2)
        reasoned, last = (await s.scalars(newest)).all()
    assert (last.action, last.field_groups) == ("export", "contact,health")
    assert json.loads(last.patient_ids) == [str(world.patients["b1"].id)]
    # …and, in the same request, the health read under the purpose stated
    assert (reasoned.action, reasoned.field_groups) == ("read", "health")
    assert "LEGAL" in reasoned.reason and reasoned.request_id == last.request_id
    # Only those allowed to export may; the operator sees contact data, never a full copy.
    operator = await sign_in(client, world, "operator")
    assert codes(await gql(client, EXPORT, {"p": world.gid("b1")}, token=operator)) == ["FORBIDDEN"]


async def _raw_dump(db: Database, world: World) -> str:
    """Every row of every tenant table for this tenant, as the database holds it."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(db.owner_url)
    tid = str(world.tenant_id) if db.kind == "postgres" else world.tenant_id.hex
    out: list[str] = []
    try:
        async with engine.connect() as conn:
            if db.kind == "postgres":
                setting = "SELECT set_config('app.tenant_id', :t, false)"
                await conn.execute(text(setting), {"t": tid})
            for table in target_metadata.sorted_tables:
                if "tenant_id" not in table.c:
                    continue
                rows = await conn.execute(
                    text(f"SELECT * FROM {table.name} WHERE tenant_id = :t"), {"t": tid}
                )
                for row in rows:
                    for value in row:
                        if isinstance(value, bytes | memoryview):
                            out.append(bytes(value).decode("utf-8", "replace"))
                        else:
                            out.append(str(value))
    finally:
        await engine.dispose()
    return "\n".join(out)


async def test_erasure_leaves_nothing_readable_and_figures_hold(
    db: Database, client: httpx.AsyncClient, world: World
) -> None:
    admin = await sign_in(client, world, "hq_admin")
    p, b = world.gid("b1"), world.branch_gid("b1")
    visit = await gql(
        client,
        "mutation($p: ID!, $b: ID!) { bookVisit(patientId: $p, branchId: $b, "
        'scheduledAt: "2026-11-01T09:00:00+08:00") { id } }',
        {"p": p, "b": b},
        token=admin,
    )
    await gql(
        client,
        'mutation($id: ID!) { markArrived(id: $id, arrivedAt: "2026-11-01T09:10:00+08:00") '
        "{ id } }",
        {"id": visit["data"]["bookVisit"]["id"]},
        token=admin,
    )
    note = "复诊时说起家族史：母亲乳腺癌"
    task = await gql(
        client,
        "mutation($p: ID!) { createFollowUp(patientId: $p, kind: POST_VISIT, "
        'dueAt: "2026-11-05T09:00:00+08:00") { id } }',
        {"p": p},
        token=admin,
    )
    await gql(
        client,
        "mutation($id: ID!, $o: String!) { completeFollowUp(id: $id, outcome: $o) { id } }",
        {"id": task["data"]["createFollowUp"]["id"], "o": note},
        token=admin,
    )
    await _consent(client, admin, world, "b1", True)
    now = datetime.now(UTC)
    since, until = now - timedelta(days=300), now + timedelta(days=1)
    period = {"f": since.isoformat(), "t": until.isoformat()}
    metrics = (
        "query($f: DateTime!, $t: DateTime!) { metrics(from: $f, to: $t) { total { leads "
        "firstVisits visitors } } }"
    )
    before = (await gql(client, metrics, period, token=admin))["data"]["metrics"]
    secrets = [*world.plaintext["b1"].values(), note]
    dump = await _raw_dump(db, world)
    assert [s for s in secrets if s in dump] == [note]  # the note is free text; the rest sealed

    erased = await gql(
        client,
        "mutation($id: ID!) { erasePatient(id: $id) { patient { id } } }",
        {"id": p},
        token=admin,
    )
    assert codes(erased) == []

    dump = await _raw_dump(db, world)
    assert [s for s in secrets if s in dump] == []
    ok(await gql(client, LEGAL, {"p": p}, token=admin))
    exported = await gql(client, EXPORT, {"p": p}, token=admin)
    content = exported["data"]["exportPatientData"]["content"]
    assert [s for s in secrets if s in content] == []
    assert json.loads(content)["patient"]["name"] is None
    detail = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { name phone medicalHistory notes } }",
        {"id": p},
        token=admin,
    )
    assert [s for s in secrets if s in json.dumps(detail, ensure_ascii=False)] == []
    # Counts and metrics still add up: the erased patient is still counted.
    assert (await gql(client, metrics, period, token=admin))["data"]["metrics"] == before
