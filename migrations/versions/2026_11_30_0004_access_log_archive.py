"""access log archive: segments, and deletes only of archived entries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenancy import rls

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# An entry may be deleted only once a recorded segment covers it (auth.access_log_archive).
ARCHIVED = (
    "EXISTS (SELECT 1 FROM access_log_segments s WHERE s.tenant_id = OLD.tenant_id "
    "AND OLD.seq BETWEEN s.first_seq AND s.last_seq)"
)


def upgrade() -> None:
    op.create_table(
        "access_log_segments",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("first_prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("last_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("oldest_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("newest_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("file_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_access_log_segments_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "number", name=op.f("pk_access_log_segments")),
    )
    # Segments are written by the archive command, which runs as the owner; the application
    # (auditors' queries) only reads them.
    rls.enable_tenant_rls(op, "access_log_segments", "SELECT")
    rls.append_only(op, "access_log_segments")
    rls.grant(op, "tenants", "UPDATE (audit_retention_days)")
    _deletes_only_when_archived()


def _deletes_only_when_archived() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER access_log_append_only ON access_log")
        op.execute(
            "CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log "
            "FOR EACH ROW EXECUTE FUNCTION pp_refuse_change()"
        )
        op.execute(
            f"""CREATE FUNCTION pp_access_log_delete() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF {ARCHIVED} THEN RETURN OLD; END IF;
                 RAISE EXCEPTION 'access_log is append-only: entry % is not archived', OLD.seq;
               END $$"""
        )
        op.execute(
            "CREATE TRIGGER access_log_delete_archived BEFORE DELETE ON access_log "
            "FOR EACH ROW EXECUTE FUNCTION pp_access_log_delete()"
        )
        return
    op.execute("DROP TRIGGER access_log_no_delete")
    op.execute(
        f"CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log WHEN NOT {ARCHIVED} "
        "BEGIN SELECT RAISE(ABORT, 'access_log is append-only: entry is not archived'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER access_log_delete_archived ON access_log")
        op.execute("DROP FUNCTION pp_access_log_delete()")
        op.execute("DROP TRIGGER access_log_no_update ON access_log")
        op.execute(
            "CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log "
            "FOR EACH ROW EXECUTE FUNCTION pp_refuse_change()"
        )
        rls.revoke(op, "tenants", "UPDATE (audit_retention_days)")
    else:
        op.execute("DROP TRIGGER access_log_no_delete")
        op.execute(
            "CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log "
            "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END"
        )
    rls.drop_append_only(op, "access_log_segments")
    rls.disable_tenant_rls(op, "access_log_segments")
    op.drop_table("access_log_segments")
