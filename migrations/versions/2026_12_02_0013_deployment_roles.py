"""deployment roles: privileges leave the cluster-wide group role `patientpool_app`

Revisions up to 0010 granted to `patientpool_app`, one name for every database of a cluster, so
a login role of one deployment could read another's tables. From here on the migration
environment grants to the deployment's own role (`<db>_app`, PATIENTPOOL_APP_ROLE, or the
app's login role when the owner may not create roles); this revision moves whatever
`patientpool_app` still holds in this database onto that role. The role itself stays: other
databases of the cluster may still use it (drop it once none does).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

from alembic import op

from tenancy import rls
from tenancy.deployment import LEGACY_GROUP_ROLE, move_privileges

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    move_privileges(bind, LEGACY_GROUP_ROLE, rls.grantee_name(op))


def downgrade() -> None:
    # Nothing goes back to the shared role: the earlier revisions' downgrades revoke from the
    # deployment's role, which is where the privileges now are.
    pass
