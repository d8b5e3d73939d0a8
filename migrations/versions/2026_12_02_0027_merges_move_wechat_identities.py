"""merges move WeChat identities: the app may repoint a patient's WeChat identity (openid,
unionid) at the record it was merged into, re-sealed for that record; nothing else of the
row changes and nothing deletes one

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-02 18:00:00
"""

from collections.abc import Sequence

from alembic import op

from tenancy import rls

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOVE = "UPDATE (patient_id, value_ct)"


def upgrade() -> None:
    rls.grant(op, "patient_identities", MOVE)


def downgrade() -> None:
    rls.revoke(op, "patient_identities", MOVE)
