"""offboarding: the tenant's offboarding state (a chain that leaves), and the three indexes
that did not lead with tenant_id (docs/decisions/0003-scale-out.md: on Citus every index of a
distributed table must, and a per-tenant lookup wants it first anyway)

Revision ID: 0020
Revises: 0018
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, old index on the column alone, new index on tenant_id and the column, column)
INDEXES = [
    ("branch_regions", "ix_branch_regions_region_id", "ix_branch_regions_region", "region_id"),
    ("staff_tokens", "ix_staff_tokens_staff_id", "ix_staff_tokens_staff", "staff_id"),
    (
        "staff_recovery_codes",
        "ix_staff_recovery_codes_staff_id",
        "ix_staff_recovery_codes_staff",
        "staff_id",
    ),
]


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite has it): rebuilding `tenants` in a batch would have to drop
    # the table every tenant-owned row points at. Only the owner (operator commands) writes it.
    op.add_column("tenants", sa.Column("offboarding_state", sa.String(length=20), nullable=True))
    for table, old, new, column in INDEXES:
        op.create_index(new, table, ["tenant_id", column], unique=False)
        op.drop_index(old, table_name=table)


def downgrade() -> None:
    for table, old, new, column in reversed(INDEXES):
        op.create_index(old, table, [column], unique=False)
        op.drop_index(new, table_name=table)
    op.drop_column("tenants", "offboarding_state")
