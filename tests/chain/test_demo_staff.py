"""The demo loader makes its staff through the invitation service, as a chain's HQ does through
the API: each demo account was invited and accepted (one admin entry each on the access log,
whose chain still verifies), and signs in with the password `demo-accounts` lists."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import select

from api.app import create_app
from auth.access_log import AccessLogEntry
from auth.models import StaffToken, StaffTokenPurpose
from auth.signing_keys import SigningKeys
from domain.tenants.models import Tenant
from process.demo import accounts_file, load_demo
from process.operator import provider
from process.serve import app_state
from process.settings import Settings
from tenancy.session import bind_tenant, make_engine, session_factory
from tests.chain.conftest import Operator, sign_in_pair


async def test_demo_staff_are_invited_and_accept(tmp_path: Path, signing_keys: SigningKeys):
    from migrations.runner import upgrade

    cfg = Settings(data_dir=tmp_path)
    await asyncio.to_thread(upgrade, cfg.owner_database_url)
    assert await load_demo(cfg)
    accounts = json.loads(accounts_file(cfg).read_text())
    engine = make_engine(cfg.owner_database_url)
    try:
        async with session_factory(engine)() as session:
            tenants = {t.slug: t.id for t in await session.scalars(select(Tenant))}
        for slug, tenant_id in tenants.items():
            staff = [a for a in accounts if a["tenant"] == slug and a["roles"] != ["hq_admin"]]
            async with session_factory(engine)() as session:
                await bind_tenant(session, tenant_id)
                reasons = (await session.scalars(select(AccessLogEntry.reason))).all()
                changes = Counter(r.split(" ", 1)[0] for r in reasons)
                tokens = (await session.scalars(select(StaffToken))).all()
            assert changes["staff.invite"] == len(staff) > 0
            assert changes["staff.invitation_accept"] == len(staff)
            assert len(tokens) == len(staff)
            assert all(t.purpose == StaffTokenPurpose.INVITATION and t.used_at for t in tokens)
        state = app_state(cfg, session_factory(engine), provider(cfg), signing_keys)
        transport = httpx.ASGITransport(app=create_app(cfg, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for role in ("doctor", "operator", "region_manager", "branch_manager"):
                account = next(a for a in accounts if a["roles"] == [role])
                pair = await sign_in_pair(
                    client, account["tenant"], account["email"], account["password"]
                )
                assert pair["accessToken"], role
    finally:
        await engine.dispose()
    operator = Operator({"PATIENTPOOL_DATA_DIR": str(tmp_path)})
    for slug in tenants:
        await operator.run("audit", "verify", "--tenant", slug)
