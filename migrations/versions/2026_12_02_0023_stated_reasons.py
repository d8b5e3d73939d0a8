"""stated reasons (break the glass): the purposes staff state before reading health fields
outside their own care, an auditor's flag on each, and the tenant's window setting

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenancy import rls

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite has it), as 0020 does: no batch rebuild of `tenants`.
    op.add_column(
        "tenants",
        sa.Column("reason_window_minutes", sa.Integer(), nullable=False, server_default="30"),
    )
    rls.grant(op, "tenants", "UPDATE (reason_window_minutes)")
    op.create_table(
        "stated_purposes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("branch_id", sa.Uuid(), nullable=True),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("note_ct", sa.LargeBinary(), nullable=False),
        sa.Column("stated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flagged_by", sa.Uuid(), nullable=True),
        sa.Column("flag_note_ct", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_stated_purposes_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_stated_purposes")),
    )
    op.create_index(
        "ix_stated_purposes_staff_patient",
        "stated_purposes",
        ["tenant_id", "staff_id", "patient_id"],
        unique=False,
    )
    op.create_index(
        "ix_stated_purposes_time", "stated_purposes", ["tenant_id", "stated_at"], unique=False
    )
    # UPDATE for the auditor's flag; nothing deletes a stated purpose.
    rls.enable_tenant_rls(op, "stated_purposes", "SELECT, INSERT, UPDATE")


def downgrade() -> None:
    rls.disable_tenant_rls(op, "stated_purposes")
    op.drop_index("ix_stated_purposes_time", table_name="stated_purposes")
    op.drop_index("ix_stated_purposes_staff_patient", table_name="stated_purposes")
    op.drop_table("stated_purposes")
    rls.revoke(op, "tenants", "UPDATE (reason_window_minutes)")
    op.drop_column("tenants", "reason_window_minutes")
