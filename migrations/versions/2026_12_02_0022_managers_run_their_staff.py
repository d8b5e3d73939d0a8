"""managers run their staff: branch and region managers see and manage the staff of their own
branches (`staff:branch`, `staff:region`) instead of reading the whole chain's staff list

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

from alembic import op

from migrations.policy_data import grant_to_default_roles, take_from_default_roles

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (auth.policy may move on).
_RW = ("read", "write")
GAINED: dict[str, list[tuple[str, str]]] = {
    # HQ held them already through `staff` (auth.policy IMPLIES); fresh tenants list them.
    "hq_admin": [(obj, a) for obj in ("staff:branch", "staff:region") for a in _RW],
    "branch_manager": [("staff:branch", a) for a in _RW],
    "region_manager": [("staff:region", a) for a in _RW],
}
# The chain-wide staff list they read before: a manager now sees their branches' staff only.
LOST: dict[str, list[tuple[str, str]]] = {
    "branch_manager": [("staff", "read")],
    "region_manager": [("staff", "read")],
}


def upgrade() -> None:
    take_from_default_roles(op.get_bind(), LOST)
    grant_to_default_roles(op.get_bind(), GAINED)


def downgrade() -> None:
    take_from_default_roles(op.get_bind(), GAINED)
    grant_to_default_roles(op.get_bind(), LOST)
