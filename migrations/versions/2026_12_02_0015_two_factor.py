"""two-factor sign-in: staff TOTP secrets (sealed), recovery codes (digests), and the tenant
setting naming the roles that must use a second factor

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenancy import rls

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("staff_totp", "staff_recovery_codes")


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["tenants.id"],
        name=op.f(f"fk_{table}_tenant_id_tenants"),
        ondelete="CASCADE",
    )


def _staff_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", "staff_id"],
        ["staff_users.tenant_id", "staff_users.id"],
        name=op.f(f"fk_{table}_tenant_id_staff_id_staff_users"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "staff_totp",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("secret_ct", sa.LargeBinary(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _staff_fk("staff_totp"),
        _tenant_fk("staff_totp"),
        sa.PrimaryKeyConstraint("tenant_id", "staff_id", name=op.f("pk_staff_totp")),
    )
    op.create_table(
        "staff_recovery_codes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("code_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        _staff_fk("staff_recovery_codes"),
        _tenant_fk("staff_recovery_codes"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_staff_recovery_codes")),
        sa.UniqueConstraint(
            "tenant_id", "code_digest", name=op.f("uq_staff_recovery_codes_tenant_id_code_digest")
        ),
    )
    op.create_index(
        op.f("ix_staff_recovery_codes_staff_id"),
        "staff_recovery_codes",
        ["staff_id"],
        unique=False,
    )
    # A plain ADD/DROP COLUMN (SQLite has both): rebuilding `tenants` in a batch would have
    # to drop the table every tenant-owned row points at.
    op.add_column("tenants", sa.Column("two_factor_roles", sa.String(length=500), nullable=True))
    for table in TABLES:
        rls.enable_tenant_rls(op, table)
    rls.grant(op, "tenants", "UPDATE (two_factor_roles)")


def downgrade() -> None:
    for table in reversed(TABLES):
        rls.disable_tenant_rls(op, table)
    if op.get_bind().dialect.name == "postgresql":
        rls.revoke(op, "tenants", "UPDATE (two_factor_roles)")
    op.drop_column("tenants", "two_factor_roles")
    op.drop_index(op.f("ix_staff_recovery_codes_staff_id"), table_name="staff_recovery_codes")
    op.drop_table("staff_recovery_codes")
    op.drop_table("staff_totp")
