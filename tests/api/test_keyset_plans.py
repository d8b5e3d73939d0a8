"""A page deep in the pool reads one index range: the database's own plan for the patient
list's deep-page statement, as the served API sends it, uses the (tenant_id, created_at, id)
index with the row comparison as its index condition: no sequential scan, no sort."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import event, insert, select

from api.context import AppState
from api.pagination import encode_cursor
from domain.patients.models import Patient
from tenancy.session import bind_tenant
from tests.support import build_world, gql, sign_in

COPIES = 3000
DEEP = "query($a: String) { patients(first: 20, after: $a) { edges { node { id } } } }"


async def _seed(owner: AppState, tenant_id: Any, unique: str) -> list[tuple[Any, uuid.UUID]]:
    """COPIES more patients in the tenant, one second apart, without personal values (their
    sealed columns are empty): the plan depends on the number of rows, not on their text."""
    table = Patient.__table__
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, tenant_id)
        # Core statements on the table are not the ORM's: the tenant is named here.
        template = dict(
            (await s.execute(select(table).where(table.c.tenant_id == tenant_id).limit(1)))
            .mappings()
            .first()
        )
        sealed = [c.name for c in table.columns if c.name.endswith(("_ct", "_bidx"))]
        rows = []
        for n in range(COPIES):
            row = {**template, **dict.fromkeys(sealed)}
            row.update(
                tenant_id=tenant_id,
                id=uuid.uuid4(),
                created_at=template["created_at"] - timedelta(seconds=n + 1),
                referral_code=f"kp{unique[:8]}{n}",
            )
            rows.append(row)
        await s.execute(insert(table), rows)
    return sorted(((r["created_at"], r["id"]) for r in rows), reverse=True)


async def test_the_deep_patient_page_is_one_index_range(
    client: httpx.AsyncClient, state: AppState, owner_state: AppState, unique: str
) -> None:
    world = await build_world(owner_state, f"kx-{unique}")
    keys = await _seed(owner_state, world.tenant_id, unique)
    engine = state.sessions.kw["bind"]
    dialect = engine.dialect.name
    if dialect == "postgresql":
        async with owner_state.sessions() as s, s.begin():
            await (await s.connection()).exec_driver_sql("ANALYZE patients")
    at, last = keys[2 * COPIES // 3]
    cursor = encode_cursor([at.isoformat(), str(last)])
    seen: list[tuple[str, Any]] = []

    def hit(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        if "FROM patients" in statement and "ORDER BY" in statement:
            seen.append((statement, parameters))

    token = await sign_in(client, world, "hq_admin")
    event.listen(engine.sync_engine, "before_cursor_execute", hit)
    try:
        got = await gql(client, DEEP, {"a": cursor}, token=token)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", hit)
    assert "errors" not in got, got
    assert len(got["data"]["patients"]["edges"]) == 20
    assert len(seen) == 1, seen
    statement, parameters = seen[0]
    async with state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        conn = await s.connection()
        if dialect == "postgresql":
            plan = (
                await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
            ).scalar_one()
            nodes = list(_walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]))
            kinds = {n["Node Type"] for n in nodes}
            assert "Sort" not in kinds, nodes
            on_patients = [n for n in nodes if n.get("Relation Name") == "patients"]
            assert on_patients and all(n["Node Type"] != "Seq Scan" for n in on_patients), nodes
            ranged = [
                n
                for n in on_patients
                if n.get("Index Name") == "ix_patients_created"
                and "ROW(created_at, id) <" in n.get("Index Cond", "")
            ]
            assert ranged, nodes
        else:
            rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
            details = [r[-1] for r in rows]
            assert any(
                "USING INDEX ix_patients_created" in d and "(created_at,id)<(?,?)" in d
                for d in details
            ), details
            assert not any(d.startswith("SCAN patients") for d in details), details
            assert not any("TEMP B-TREE FOR ORDER BY" in d for d in details), details


def _walk(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", ()):
        yield from _walk(child)
