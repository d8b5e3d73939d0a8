"""referral figures: each referrer's stored whole-subtree size, converted count and net paid
fen, filled from the existing links and paid totals

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 05:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenancy import rls

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every (ancestor, descendant) pair, walked up one link at a time, then summed per ancestor;
# frozen here (domain.referrals.figures.rebuild may move on).
FILL = """
INSERT INTO referral_figures (tenant_id, patient_id, descendants, converted, converted_fen)
WITH RECURSIVE pairs(anc, des) AS (
  SELECT referrer_id, referred_id FROM referrals WHERE tenant_id = :t
  UNION ALL
  SELECT r.referrer_id, pairs.des FROM pairs
    JOIN referrals r ON r.tenant_id = :t AND r.referred_id = pairs.anc
)
SELECT :t, pairs.anc, count(*), sum(CASE WHEN p.order_total_fen > 0 THEN 1 ELSE 0 END),
  sum(p.order_total_fen)
FROM pairs JOIN patients p ON p.tenant_id = :t AND p.id = pairs.des
GROUP BY pairs.anc
"""


def upgrade() -> None:
    op.create_table(
        "referral_figures",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("descendants", sa.Integer(), nullable=False),
        sa.Column("converted", sa.Integer(), nullable=False),
        sa.Column("converted_fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name=op.f("fk_referral_figures_tenant_id_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_referral_figures_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "patient_id", name=op.f("pk_referral_figures")),
    )
    rls.enable_tenant_rls(op, "referral_figures")
    bind = op.get_bind()
    on_pg = bind.dialect.name == "postgresql"
    tenants = sa.table("tenants", sa.column("id", sa.Uuid()))
    for (tid,) in bind.execute(sa.select(tenants.c.id)).all():
        if on_pg:
            bind.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tid)})
        # uuids are bound as the column type stores them (native on PostgreSQL, hex on SQLite)
        bind.execute(sa.text(FILL).bindparams(sa.bindparam("t", type_=sa.Uuid())), {"t": tid})


def downgrade() -> None:
    rls.disable_tenant_rls(op, "referral_figures")
    op.drop_table("referral_figures")
