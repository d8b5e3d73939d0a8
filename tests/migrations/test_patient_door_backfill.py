"""Migration 0021 fills the index of touched patients from the entries already in the log, and
gives every existing tenant the `patient` role; down and up again hold."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.runner import downgrade, upgrade
from tests.conftest import Database, create_pg_database, drop_pg_database

ENTRY_COLUMNS = (
    "tenant_id", "seq", "id", "occurred_at", "actor_type", "actor_id", "actor_roles", "action",
    "patient_ids", "field_groups", "operation_name", "request_id", "client_addr", "user_agent",
    "outcome", "reason", "prev_hash", "entry_hash",
)  # fmt: skip


async def test_0021_backfills_the_index_and_the_patient_role(db: Database, unique: str) -> None:
    login = None
    if db.kind == "sqlite":
        url = db.owner_url.rsplit("/", 1)[0] + f"/backfill-{unique}.db"
    else:
        scratch = await create_pg_database(f"pp_backfill_{unique}")
        url, login = scratch.owner_url, scratch.app_login
    try:
        await asyncio.to_thread(lambda: upgrade(url, "0016", app_login=login))
        tenant, a, b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        lists = [[a], [a, b], [b], []]
        tenants = sa.table("tenants", *(sa.column(c) for c in ("id", "slug", "name", "kind",
                           "policy_version", "created_at")))  # fmt: skip
        tenants.c.id.type = sa.Uuid()
        log = sa.table("access_log", *(sa.column(c) for c in ENTRY_COLUMNS))
        for name in ("tenant_id", "id"):
            log.c[name].type = sa.Uuid()
        log.c.occurred_at.type = sa.DateTime(timezone=True)
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.execute(
                tenants.insert().values(id=tenant, slug=f"t-{unique}", name="T", kind="other",
                                        policy_version=1, created_at=datetime.now(UTC))
            )  # fmt: skip
            for seq, ids in enumerate(lists, start=1):
                row = {c: "" for c in ENTRY_COLUMNS}
                row.update(
                    tenant_id=tenant, seq=seq, id=uuid.uuid4(), occurred_at=datetime.now(UTC),
                    patient_ids=json.dumps(sorted(str(p) for p in ids)),
                    prev_hash=b"\0" * 32, entry_hash=b"\0" * 32,
                )  # fmt: skip
                await conn.execute(log.insert().values(**row))
        await engine.dispose()

        await asyncio.to_thread(lambda: upgrade(url, app_login=login))
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            touched = sa.table(
                "access_log_patients", sa.column("patient_id", sa.Uuid()), sa.column("seq")
            )
            rows = (await conn.execute(sa.select(touched.c.patient_id, touched.c.seq))).all()
            rules = (
                await conn.execute(
                    sa.text("SELECT v2, v3 FROM casbin_rules WHERE v0 = 'patient' ORDER BY v3")
                )
            ).all()
        await engine.dispose()
        assert sorted((str(p), s) for p, s in rows) == sorted(
            [(str(a), 1), (str(a), 2), (str(b), 2), (str(b), 3)]
        )
        assert [tuple(r) for r in rules] == [("self", "read"), ("self", "write")]
        await asyncio.to_thread(lambda: downgrade(url, "0016", app_login=login))
        await asyncio.to_thread(lambda: upgrade(url, app_login=login))
    finally:
        if db.kind == "postgres":
            await drop_pg_database(f"pp_backfill_{unique}")
