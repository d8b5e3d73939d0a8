"""merges keep the books: a merge moves consent records and WeCom callbacks to the kept record
(only their patient column may change: the rest of each stays as it happened) and folds the
retired record's consent states into the kept record's

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

from alembic import op

from tenancy import rls

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRANTS = [
    ("UPDATE (patient_id)", "consent_records"),
    ("UPDATE (patient_id)", "wecom_callbacks"),
    ("DELETE", "consent_states"),
]


def upgrade() -> None:
    for privileges, table in GRANTS:
        rls.grant(op, table, privileges)


def downgrade() -> None:
    for privileges, table in GRANTS:
        rls.revoke(op, table, privileges)
