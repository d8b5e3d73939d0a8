"""chain setup: regions, branches in regions, branch address/phone/closing, staff regions,
one-time staff tokens (invitations, password resets); the region_manager role and the
permissions to manage branches and regions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.policy_data import add_role_to_tenants, grant_to_default_roles
from tenancy import rls

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the default roles gain with this revision, frozen here (auth.policy may move on).
NEW_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    "hq_admin": [("branches", "write")],
}
_RW = ("read", "write")
REGION_MANAGER: list[tuple[str, str]] = [
    *(("patients:region", a) for a in _RW),
    ("fields:contact", "read"),
    ("fields:contact", "write"),
    ("fields:health", "read"),
    *(("tags", a) for a in _RW),
    *(("segments", a) for a in _RW),
    ("metrics", "read"),
    ("branches", "read"),
    ("staff", "read"),
    ("events", "write"),
    *((obj, a) for obj in ("visits", "orders", "followups", "referrals") for a in _RW),
    *(("consents", a) for a in _RW),
]
TABLES = ("regions", "branch_regions", "staff_regions", "staff_tokens")


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", sa.Uuid(), nullable=False)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "regions",
        _tenant(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _tenant_fk("regions"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_regions")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_regions_tenant_id_name")),
    )
    op.create_table(
        "branch_regions",
        _tenant(),
        sa.Column("branch_id", sa.Uuid(), nullable=False),
        sa.Column("region_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "branch_id"],
            ["branches.tenant_id", "branches.id"],
            name=op.f("fk_branch_regions_tenant_id_branch_id_branches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "region_id"],
            ["regions.tenant_id", "regions.id"],
            name=op.f("fk_branch_regions_tenant_id_region_id_regions"),
            ondelete="CASCADE",
        ),
        _tenant_fk("branch_regions"),
        sa.PrimaryKeyConstraint("tenant_id", "branch_id", name=op.f("pk_branch_regions")),
    )
    op.create_index(
        op.f("ix_branch_regions_region_id"), "branch_regions", ["region_id"], unique=False
    )
    op.create_table(
        "staff_regions",
        _tenant(),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("region_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "region_id"],
            ["regions.tenant_id", "regions.id"],
            name=op.f("fk_staff_regions_tenant_id_region_id_regions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "staff_id"],
            ["staff_users.tenant_id", "staff_users.id"],
            name=op.f("fk_staff_regions_tenant_id_staff_id_staff_users"),
            ondelete="CASCADE",
        ),
        _tenant_fk("staff_regions"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "staff_id", "region_id", name=op.f("pk_staff_regions")
        ),
    )
    op.create_table(
        "staff_tokens",
        _tenant(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("token_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "staff_id"],
            ["staff_users.tenant_id", "staff_users.id"],
            name=op.f("fk_staff_tokens_tenant_id_staff_id_staff_users"),
            ondelete="CASCADE",
        ),
        _tenant_fk("staff_tokens"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_staff_tokens")),
        sa.UniqueConstraint(
            "tenant_id", "token_digest", name=op.f("uq_staff_tokens_tenant_id_token_digest")
        ),
    )
    op.create_index(op.f("ix_staff_tokens_staff_id"), "staff_tokens", ["staff_id"], unique=False)
    with op.batch_alter_table("branches", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("address", sa.String(length=300), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("phone", sa.String(length=40), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    for table in TABLES:
        rls.enable_tenant_rls(op, table)
    grant_to_default_roles(op.get_bind(), NEW_PERMISSIONS)
    add_role_to_tenants(op.get_bind(), "region_manager", REGION_MANAGER)


def downgrade() -> None:
    for table in reversed(TABLES):
        rls.disable_tenant_rls(op, table)
    with op.batch_alter_table("branches", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
        batch_op.drop_column("phone")
        batch_op.drop_column("address")
    op.drop_index(op.f("ix_staff_tokens_staff_id"), table_name="staff_tokens")
    op.drop_table("staff_tokens")
    op.drop_table("staff_regions")
    op.drop_index(op.f("ix_branch_regions_region_id"), table_name="branch_regions")
    op.drop_table("branch_regions")
    op.drop_table("regions")
