"""patient imports: an import job's options, row cursor and counts, its uploaded file sealed in
chunks, and its rejected rows (sealed), all tenant-owned with forced RLS

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tenancy import rls

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("import_rejections", "import_chunks", "import_files")


def _tenant_and_job(table: str) -> list[sa.ForeignKeyConstraint]:
    return [
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f(f"fk_{table}_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "job_id"],
            ["jobs.tenant_id", "jobs.id"],
            name=op.f(f"fk_{table}_tenant_id_job_id_jobs"),
            ondelete="CASCADE",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "import_files",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("row_cursor", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        *_tenant_and_job("import_files"),
        sa.PrimaryKeyConstraint("tenant_id", "job_id", name=op.f("pk_import_files")),
    )
    op.create_table(
        "import_chunks",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data_ct", sa.LargeBinary(), nullable=False),
        *_tenant_and_job("import_chunks"),
        sa.PrimaryKeyConstraint("tenant_id", "job_id", "seq", name=op.f("pk_import_chunks")),
    )
    op.create_table(
        "import_rejections",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("row_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("row_ct", sa.LargeBinary(), nullable=False),
        *_tenant_and_job("import_rejections"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "job_id", "row_number", name=op.f("pk_import_rejections")
        ),
    )
    for table in TABLES:
        rls.enable_tenant_rls(op, table)


def downgrade() -> None:
    for table in TABLES:
        rls.disable_tenant_rls(op, table)
        op.drop_table(table)
