"""wecom: per-tenant callback app (sealed token and key) and the callbacks received

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenancy import rls

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wecom_apps",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("token_ct", sa.LargeBinary(), nullable=False),
        sa.Column("aes_key_ct", sa.LargeBinary(), nullable=False),
        sa.Column("default_branch_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "default_branch_id"],
            ["branches.tenant_id", "branches.id"],
            name=op.f("fk_wecom_apps_tenant_id_default_branch_id_branches"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_wecom_apps_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_wecom_apps")),
    )
    op.create_table(
        "wecom_callbacks",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_wecom_callbacks_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "signature", name=op.f("pk_wecom_callbacks")),
        sa.UniqueConstraint(
            "tenant_id", "event_key", name=op.f("uq_wecom_callbacks_tenant_id_event_key")
        ),
    )
    rls.enable_tenant_rls(op, "wecom_apps", "SELECT, INSERT, UPDATE")
    rls.enable_tenant_rls(op, "wecom_callbacks", "SELECT, INSERT")


def downgrade() -> None:
    for table in ("wecom_callbacks", "wecom_apps"):
        rls.disable_tenant_rls(op, table)
    op.drop_table("wecom_callbacks")
    op.drop_table("wecom_apps")
