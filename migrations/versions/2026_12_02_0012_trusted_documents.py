"""trusted documents: the registry of GraphQL operations each client publishes (one per
deployment, not tenant-owned: the app role only reads it)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenancy.rls import grant

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trusted_documents",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("client_version", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("operations", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client", "hash", name=op.f("pk_trusted_documents")),
    )
    op.create_index("ix_trusted_documents_hash", "trusted_documents", ["hash"])
    grant(op, "trusted_documents", "SELECT")


def downgrade() -> None:
    op.drop_index("ix_trusted_documents_hash", table_name="trusted_documents")
    op.drop_table("trusted_documents")
