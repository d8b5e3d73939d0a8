"""Migration 0025 gives existing tenants' default roles the `groupchats` permissions (a role a
chain deleted stays deleted) and takes them back on downgrade."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.runner import downgrade, upgrade
from tests.conftest import Database, create_pg_database, drop_pg_database

RULES = "SELECT v0, v2, v3 FROM casbin_rules WHERE v2 = 'groupchats' ORDER BY v0, v3"


async def _rules(url: str) -> list[tuple[str, str, str]]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(RULES))).all()
    await engine.dispose()
    return [tuple(r) for r in rows]


async def test_0025_grants_groupchats_to_existing_roles(db: Database, unique: str) -> None:
    login = None
    if db.kind == "sqlite":
        url = db.owner_url.rsplit("/", 1)[0] + f"/groups-{unique}.db"
    else:
        scratch = await create_pg_database(f"pp_groups_{unique}")
        url, login = scratch.owner_url, scratch.app_login
    try:
        await asyncio.to_thread(lambda: upgrade(url, "0023", app_login=login))
        tenant = uuid.uuid4()
        tenants = sa.table("tenants", *(sa.column(c) for c in ("id", "slug", "name", "kind",
                           "policy_version", "created_at")))  # fmt: skip
        tenants.c.id.type = sa.Uuid()
        rules = sa.table("casbin_rules", *(sa.column(c) for c in ("tenant_id", "id", "ptype",
                         "v0", "v1", "v2", "v3", "v4", "v5")))  # fmt: skip
        rules.c.tenant_id.type = rules.c.id.type = sa.Uuid()
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.execute(
                tenants.insert().values(id=tenant, slug=f"t-{unique}", name="T", kind="other",
                                        policy_version=1, created_at=datetime.now(UTC))
            )  # fmt: skip
            # This chain has an HQ admin and doctors, and deleted every other default role.
            for role in ("hq_admin", "doctor"):
                await conn.execute(
                    rules.insert().values(tenant_id=tenant, id=uuid.uuid4(), ptype="p", v0=role,
                                          v1=str(tenant), v2="visits", v3="read", v4="", v5="")
                )  # fmt: skip
        await engine.dispose()

        await asyncio.to_thread(lambda: upgrade(url, "0025", app_login=login))
        assert await _rules(url) == [
            ("doctor", "groupchats", "read"),
            ("hq_admin", "groupchats", "read"),
            ("hq_admin", "groupchats", "write"),
        ]
        await asyncio.to_thread(lambda: downgrade(url, "0023", app_login=login))
        assert await _rules(url) == []
        await asyncio.to_thread(lambda: upgrade(url, app_login=login))
    finally:
        if db.kind == "postgres":
            await drop_pg_database(f"pp_groups_{unique}")
