"""Alembic environment: the one way a schema is made, on SQLite (batch mode) and PostgreSQL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.registry import target_metadata
from tenancy.deployment import GRANTEE_KEY, resolve_grantee, secure_database

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    on_postgres = connection.dialect.name == "postgresql"
    with context.begin_transaction():
        if on_postgres:
            # Whom the migrations grant to: the deployment's role (see tenancy.deployment).
            grantee = resolve_grantee(
                connection, config.attributes.get("app_role"), config.attributes.get("app_login")
            )
            connection.info[GRANTEE_KEY] = grantee.role
            config.attributes.setdefault("notes", []).extend(grantee.notes)
        context.run_migrations()
        if on_postgres:
            secure_database(connection, grantee.role)


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_async(config.get_main_option("sqlalchemy.url") or ""))
