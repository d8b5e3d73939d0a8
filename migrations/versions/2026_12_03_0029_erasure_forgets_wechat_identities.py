"""erasure forgets WeChat identities: the app may delete a patient's WeChat identity rows
(openid, unionid: sealed value and blind index) when the patient is erased

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-03 08:00:00
"""

from collections.abc import Sequence

from alembic import op

from tenancy import rls

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rls.grant(op, "patient_identities", "DELETE")


def downgrade() -> None:
    rls.revoke(op, "patient_identities", "DELETE")
