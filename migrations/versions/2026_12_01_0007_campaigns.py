"""campaigns: campaigns, their delivery outbox, per-tenant contact rules; the WeCom API
secret; campaign permissions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 02:07:40
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.policy_data import grant_to_default_roles
from tenancy import rls

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the default roles gain with this revision, frozen here (auth.policy may move on).
NEW_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    "hq_admin": [("campaigns", "read"), ("campaigns", "write")],
    "marketing": [("campaigns", "read"), ("campaigns", "write")],
}
TABLES = ("contact_rules", "campaigns", "campaign_deliveries")


def upgrade() -> None:
    op.create_table(
        "contact_rules",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("frequency_cap", sa.Integer(), nullable=False),
        sa.Column("frequency_days", sa.Integer(), nullable=False),
        sa.Column("quiet_start_minute", sa.Integer(), nullable=False),
        sa.Column("quiet_end_minute", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_contact_rules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_contact_rules")),
    )
    op.create_table(
        "campaigns",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("segment_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attribution_days", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("branch_ids", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("excluded_no_consent", sa.Integer(), nullable=False),
        sa.Column("excluded_no_address", sa.Integer(), nullable=False),
        sa.Column("excluded_by_cap", sa.Integer(), nullable=False),
        sa.Column("audience", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "segment_id"],
            ["segments.tenant_id", "segments.id"],
            name=op.f("fk_campaigns_tenant_id_segment_id_segments"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_campaigns_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaigns_status", ["tenant_id", "status", "window_start"], unique=False
        )

    op.create_table(
        "campaign_deliveries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=40), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attributed_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id", "campaign_id"],
            ["campaigns.tenant_id", "campaigns.id"],
            name=op.f("fk_campaign_deliveries_tenant_id_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_campaign_deliveries_tenant_id_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_campaign_deliveries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_campaign_deliveries")),
    )
    with op.batch_alter_table("campaign_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_deliveries_due", ["tenant_id", "status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_campaign_deliveries_recent", ["tenant_id", "patient_id", "queued_at"], unique=False
        )
        batch_op.create_index(
            "uq_campaign_deliveries_patient",
            ["tenant_id", "campaign_id", "patient_id"],
            unique=True,
        )

    with op.batch_alter_table("wecom_apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_ct", sa.LargeBinary(), nullable=True))

    for table in TABLES:
        rls.enable_tenant_rls(op, table, "SELECT, INSERT, UPDATE")
    grant_to_default_roles(op.get_bind(), NEW_PERMISSIONS)


def downgrade() -> None:
    for table in reversed(TABLES):
        rls.disable_tenant_rls(op, table)
    with op.batch_alter_table("wecom_apps", schema=None) as batch_op:
        batch_op.drop_column("secret_ct")

    with op.batch_alter_table("campaign_deliveries", schema=None) as batch_op:
        batch_op.drop_index("uq_campaign_deliveries_patient")
        batch_op.drop_index("ix_campaign_deliveries_recent")
        batch_op.drop_index("ix_campaign_deliveries_due")

    op.drop_table("campaign_deliveries")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_campaigns_status")

    op.drop_table("campaigns")
    op.drop_table("contact_rules")
