"""The benchmark's own parts: its loader resumes without duplicates, and its raw-SQL floors for
the referral tree and the chain metrics compute exactly what the API does (so the ratio
compares like work)."""

from __future__ import annotations

import uuid
from dataclasses import astuple
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from api.context import AppState
from bench.dataset import TenantPlan, load, patient_id
from bench.scale import FLOOR_METRICS, FLOOR_TREE, _sql_time
from domain.care.metrics import chain_figures
from domain.patients.models import Patient
from domain.patients.scope import PatientScope
from domain.referrals import tree
from domain.referrals.models import Referral
from domain.tenants.models import Tenant
from tenancy.session import bind_tenant
from tests.conftest import Database


def as_uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def test_loader_resumes_and_floor_matches_the_api(
    db: Database, owner_state: AppState, unique: str
) -> None:
    slug = f"bench-{unique}"
    said: list[str] = []
    await load(
        owner_state.sessions, owner_state.key_provider, [TenantPlan(slug, 2100)], said.append
    )
    # An interrupted run is one that stopped after a chunk; a second run with more asked for
    # goes on from there, and one asking for what is there adds nothing.
    await load(
        owner_state.sessions, owner_state.key_provider, [TenantPlan(slug, 2500)], said.append
    )
    await load(
        owner_state.sessions, owner_state.key_provider, [TenantPlan(slug, 2500)], said.append
    )
    assert any("rows/s" in line for line in said)
    async with owner_state.sessions() as s:
        async with s.begin():
            tenant_id = await s.scalar(select(Tenant.id).where(Tenant.slug == slug))
        await bind_tenant(s, tenant_id)
        async with s.begin():
            assert await s.scalar(select(func.count()).select_from(Patient)) == 2500
            linked = await s.scalar(select(func.count()).select_from(Referral))
            assert linked == 2500 - 1  # below TREE patients, everyone is in the one tree
            root = patient_id(tenant_id, 0)
            api = await tree.subtree(s, root, 50, PatientScope(chain=True), 10_000)
            assert api.nodes[0].subtree_size == 2500 - 1
            pg = db.kind == "postgres"
            floor = (
                await s.execute(
                    text(FLOOR_TREE),
                    {
                        "t": str(tenant_id) if pg else tenant_id.hex,
                        "root": str(root) if pg else root.hex,
                    },
                )
            ).all()
            until = datetime.now(UTC)
            since = until - timedelta(days=365)
            figures = await chain_figures(s, PatientScope(chain=True), since, until)
            params = {
                "t": str(tenant_id) if pg else tenant_id.hex,
                "since": _sql_time(since, pg),
                "until": _sql_time(until, pg),
            }
            by_statement = []  # conversion figures, then follow-ups
            for statement in FLOOR_METRICS:
                rows = (await s.execute(text(statement), params)).all()
                by_statement.append({as_uuid(r[0]): [int(v or 0) for v in r[1:]] for r in rows})
            conversion, follow_ups = by_statement
    assert figures.total.leads > 0 and figures.total.revenue_fen > 0
    by_hand = {
        b: conversion.get(b, [0] * 11) + follow_ups.get(b, [0, 0])
        for b in conversion.keys() | follow_ups.keys()
    }
    assert by_hand == {b: list(astuple(f)) for b, f in figures.by_branch.items()}

    got = {(as_uuid(r[0]), r[2], r[3], r[4], r[5]) for r in floor}
    want = {
        (n.patient_id, n.depth, n.subtree_size, n.converted, n.converted_fen) for n in api.nodes
    }
    assert got == want
