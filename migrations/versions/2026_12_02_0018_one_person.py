"""one person: a blind index on national ids (matched like phones), each patient's channel
history (every channel a person came in through), patient exports (which patients an export
holds; the file itself is made again on each download, never stored) and the export permission
for branch managers

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.policy_data import grant_to_default_roles
from tenancy import rls

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("patient_channel_touches", "patient_exports")
# What the default roles gain with this revision, frozen here (auth.policy may move on).
NEW_PERMISSIONS: dict[str, list[tuple[str, str]]] = {"branch_manager": [("patients", "export")]}


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite has it): rebuilding `patients` in a batch would drop the
    # table every patient-owned row points at.
    op.add_column("patients", sa.Column("national_id_bidx", sa.LargeBinary(16), nullable=True))
    op.create_index("ix_patients_national_id_bidx", "patients", ["tenant_id", "national_id_bidx"])
    op.create_table(
        "patient_channel_touches",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_patient_channel_touches_tenant_id_patient_id_patients"),
            ondelete="CASCADE",
        ),
        _tenant_fk("patient_channel_touches"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_patient_channel_touches")),
    )
    op.create_index(
        "ix_channel_touches_patient",
        "patient_channel_touches",
        ["tenant_id", "patient_id", "occurred_at"],
    )
    op.create_table(
        "patient_exports",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_ids", sa.Text(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _tenant_fk("patient_exports"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_patient_exports")),
    )
    # A touch is history: it is added, and moves only with a merge (its patient column).
    rls.enable_tenant_rls(op, "patient_channel_touches", "SELECT, INSERT, DELETE")
    rls.grant(op, "patient_channel_touches", "UPDATE (patient_id)")
    rls.enable_tenant_rls(op, "patient_exports")
    grant_to_default_roles(op.get_bind(), NEW_PERMISSIONS)


def downgrade() -> None:
    for table in reversed(TABLES):
        rls.disable_tenant_rls(op, table)
    op.drop_table("patient_exports")
    op.drop_index("ix_channel_touches_patient", table_name="patient_channel_touches")
    op.drop_table("patient_channel_touches")
    op.drop_index("ix_patients_national_id_bidx", table_name="patients")
    op.drop_column("patients", "national_id_bidx")
