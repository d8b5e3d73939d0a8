"""keyset indexes: every paged table gets an index that ends in its connection's sort key
(time, id), so a row comparison `(t, id) > (:t, :id)` reads one index range however deep the
page. Three older indexes were the same columns without `id` and are replaced, not kept beside.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-02 13:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, new index, its columns, the index it replaces and that one's columns)
PAGED: list[tuple[str, str, list[str], tuple[str, list[str]] | None]] = [
    ("visits", "ix_visits_page", ["tenant_id", "scheduled_at", "id"], None),
    ("orders", "ix_orders_page", ["tenant_id", "created_at", "id"], None),
    ("campaigns", "ix_campaigns_page", ["tenant_id", "created_at", "id"], None),
    (
        "follow_ups",
        "ix_follow_ups_page",
        ["tenant_id", "status", "due_at", "id"],
        ("ix_follow_ups_due", ["tenant_id", "status", "due_at"]),
    ),
    (
        "rewards",
        "ix_rewards_page",
        ["tenant_id", "referrer_id", "created_at", "id"],
        ("ix_rewards_referrer", ["tenant_id", "referrer_id"]),
    ),
    (
        "stated_purposes",
        "ix_stated_purposes_page",
        ["tenant_id", "stated_at", "id"],
        ("ix_stated_purposes_time", ["tenant_id", "stated_at"]),
    ),
]


def upgrade() -> None:
    for table, name, columns, replaced in PAGED:
        op.create_index(name, table, columns, unique=False)
        if replaced is not None:
            op.drop_index(replaced[0], table_name=table)


def downgrade() -> None:
    for table, name, _columns, replaced in reversed(PAGED):
        if replaced is not None:
            op.create_index(replaced[0], table, replaced[1], unique=False)
        op.drop_index(name, table_name=table)
