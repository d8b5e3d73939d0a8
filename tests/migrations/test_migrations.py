"""Alembic is the only way a schema is made: up, down, up again, and no drift from the models."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.registry import target_metadata
from migrations.runner import downgrade, head_revision, upgrade
from tenancy.orm import UtcDateTime, tenant_tables
from tests.conftest import Database


async def _diff(url: str) -> list[object]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), target_metadata
                )
            )
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_models_and_migrations_agree(db: Database) -> None:
    assert await _diff(db.owner_url) == []


async def test_upgrade_downgrade_upgrade(db: Database, unique: str) -> None:
    # A scratch database of the same kind, so the shared one stays at head for other tests.
    login = None
    if db.kind == "sqlite":
        url = db.owner_url.rsplit("/", 1)[0] + f"/scratch-{unique}.db"
    else:
        from tests.conftest import create_pg_database

        scratch = await create_pg_database(f"pp_scratch_{unique}")
        url, login = scratch.owner_url, scratch.app_login
    try:
        await asyncio.to_thread(lambda: upgrade(url, app_login=login))
        assert set(tenant_tables()) <= await _tables(url)
        await asyncio.to_thread(lambda: downgrade(url, "base", app_login=login))
        assert await _tables(url) <= {"alembic_version"}
        await asyncio.to_thread(lambda: upgrade(url, app_login=login))
        assert set(tenant_tables()) <= await _tables(url)
        assert await _diff(url) == []
        assert head_revision() is not None
    finally:
        if db.kind == "postgres":
            from tests.conftest import drop_pg_database

            await drop_pg_database(f"pp_scratch_{unique}")


async def test_every_utc_timestamp_is_stored_with_its_zone(db: Database) -> None:
    # tenancy.orm.UtcDateTime reads PostgreSQL's values as the driver gives them (aware for
    # `timestamptz`, with no Python call per value): a column without a zone would read naive.
    if db.kind != "postgres":
        pytest.skip("SQLite keeps no zone: the type puts it back")
    declared = {
        (table.name, column.name)
        for table in target_metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, UtcDateTime)
    }
    engine = create_async_engine(db.owner_url)
    try:
        async with engine.connect() as conn:
            found = {
                (t, c): kind
                for t, c, kind in await conn.exec_driver_sql(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = current_schema()"
                )
            }
    finally:
        await engine.dispose()
    assert declared and {found[c] for c in declared} == {"timestamp with time zone"}
