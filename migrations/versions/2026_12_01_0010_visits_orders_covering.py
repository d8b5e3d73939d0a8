"""visits and orders by patient: the indexes carry what the chain metrics count (PostgreSQL),
so each table's per-patient figures are read from its index, not its rows

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 09:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["tenant_id", "patient_id", "status"]
INCLUDED = {
    "visits": ["arrived_at", "is_first"],
    "orders": ["paid_at", "is_first", "total_fen", "refunded_fen"],
}


def _on_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _on_postgres():  # SQLite has no INCLUDE; its indexes stay as they were
        return
    for table, included in INCLUDED.items():
        op.drop_index(f"ix_{table}_patient", table_name=table)
        op.create_index(f"ix_{table}_patient", table, COLUMNS, postgresql_include=included)


def downgrade() -> None:
    if not _on_postgres():
        return
    for table in INCLUDED:
        op.drop_index(f"ix_{table}_patient", table_name=table)
        op.create_index(f"ix_{table}_patient", table, COLUMNS)
