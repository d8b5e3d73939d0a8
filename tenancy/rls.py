"""PostgreSQL row-level security helpers, called by the Alembic migrations.

Each tenant-owned table gets RLS enabled *and forced* (so even the table owner is filtered), one
policy whose USING and WITH CHECK compare `tenant_id` with the transaction-local setting
`app.tenant_id`, and grants for the application role, which owns nothing and cannot bypass RLS.
That role is the deployment's own (`tenancy.deployment.resolve_grantee`, run by the migration
environment before any migration, leaves its name in the connection's `info`).
With no tenant set the policy compares with NULL and no row passes. On SQLite these are no-ops:
there the ORM filter in `tenancy.session` is the guard.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.engine import Connection

from tenancy.deployment import GRANTEE_KEY, default_app_role, quote
from tenancy.session import RLS_SETTING

POLICY = "tenant_isolation"
TENANT_MATCH = f"tenant_id = NULLIF(current_setting('{RLS_SETTING}', true), '')::uuid"


class Operations(Protocol):
    def execute(self, sqltext: str) -> object: ...
    def get_bind(self) -> Connection: ...


def _on_postgres(op: Operations) -> bool:
    return op.get_bind().dialect.name == "postgresql"


def grantee_name(op: Operations) -> str:
    """The role the app's privileges go to in this migration run."""
    bind = op.get_bind()
    name = bind.info.get(GRANTEE_KEY)
    if name is None:  # a connection the migration environment did not prepare
        name = default_app_role(str(bind.exec_driver_sql("SELECT current_database()").scalar()))
    return str(name)


def app_role(op: Operations) -> str:
    return quote(grantee_name(op))


def create_app_role(op: Operations) -> None:
    """The schema's usage for the deployment's role (made, if need be, by resolve_grantee)."""
    if _on_postgres(op):
        op.execute(f"GRANT USAGE ON SCHEMA public TO {app_role(op)}")


def grant(op: Operations, table: str, privileges: str) -> None:
    if _on_postgres(op):
        op.execute(f"GRANT {privileges} ON {table} TO {app_role(op)}")


def revoke(op: Operations, table: str, privileges: str = "ALL") -> None:
    if _on_postgres(op):
        op.execute(f"REVOKE {privileges} ON {table} FROM {app_role(op)}")


def enable_tenant_rls(
    op: Operations, table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE"
) -> None:
    if not _on_postgres(op):
        return
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {POLICY} ON {table} USING ({TENANT_MATCH}) WITH CHECK ({TENANT_MATCH})"
    )
    grant(op, table, privileges)


def disable_tenant_rls(op: Operations, table: str) -> None:
    if not _on_postgres(op):
        return
    revoke(op, table)
    op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


def append_only(op: Operations, table: str) -> None:
    """Refuse UPDATE and DELETE on a table with triggers, on both databases."""
    if _on_postgres(op):
        op.execute(
            """CREATE OR REPLACE FUNCTION pp_refuse_change() RETURNS trigger
               LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"""
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION pp_refuse_change()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )


def drop_append_only(op: Operations, table: str) -> None:
    if _on_postgres(op):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
