"""sign-in windows: sign-in attempts counted in the database, so limits hold across processes

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenancy import rls

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_windows",
        sa.Column("key_digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("window", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key_digest", "window", name=op.f("pk_sign_in_windows")),
    )
    # Not tenant-owned (a client address spans tenants); rows hold digests and counts only.
    rls.grant(op, "sign_in_windows", "SELECT, INSERT, UPDATE, DELETE")


def downgrade() -> None:
    rls.revoke(op, "sign_in_windows")
    op.drop_table("sign_in_windows")
