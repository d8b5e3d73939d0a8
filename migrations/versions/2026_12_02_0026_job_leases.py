"""job leases: the process working a background job holds it for a while and renews it; another
process claims the job only once that lease has run out (its holder died)

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs (SQLite has them); `jobs` already has RLS and the app's UPDATE grant
    # on the whole table, which covers new columns.
    op.add_column("jobs", sa.Column("claimed_by", sa.String(length=100), nullable=True))
    op.add_column("jobs", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "lease_until")
    op.drop_column("jobs", "claimed_by")
