"""patients by branch: the index carries merged_into_id and created_at (PostgreSQL), so the
chain metrics join patients to their home branch from the index, not the wide rows

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 05:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["tenant_id", "home_branch_id", "id"]


def _on_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _on_postgres():  # SQLite has no INCLUDE; its index stays as it was
        return
    op.drop_index("ix_patients_branch", table_name="patients")
    op.create_index(
        "ix_patients_branch",
        "patients",
        COLUMNS,
        postgresql_include=["merged_into_id", "created_at"],
    )


def downgrade() -> None:
    if not _on_postgres():
        return
    op.drop_index("ix_patients_branch", table_name="patients")
    op.create_index("ix_patients_branch", "patients", COLUMNS)
