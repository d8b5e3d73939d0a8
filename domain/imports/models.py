"""A bulk import's state: its options and counts, the uploaded file sealed in chunks under the
tenant's key (so a job killed mid-file resumes from the same bytes, and no plaintext copy ever
sits on disk), and its rejected rows, sealed too, for the file offered back to fix them."""

from __future__ import annotations

import uuid

from sqlalchemy import JSON, ForeignKeyConstraint, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from tenancy.orm import Base, TenantScoped


def _job_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["tenant_id", "job_id"], ["jobs.tenant_id", "jobs.id"], ondelete="CASCADE"
    )


class ImportFile(TenantScoped, Base):
    """One import job's options, row cursor and counts (the job row holds status and done)."""

    __tablename__ = "import_files"
    __table_args__ = (_job_fk(),)

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # {"mapping": {header: field}, "on_match": …, "branch": code, "format": "csv"|"xlsx"}
    options: Mapped[dict[str, object]] = mapped_column(JSON)
    # The last data row (numbered as a spreadsheet shows it, header = 1) whose batch committed.
    row_cursor: Mapped[int] = mapped_column(Integer, default=1)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)


class ImportChunk(TenantScoped, Base):
    """A slice of the uploaded file, AES-GCM sealed, bound to its job and position; deleted
    when the job ends."""

    __tablename__ = "import_chunks"
    __table_args__ = (_job_fk(),)

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data_ct: Mapped[bytes] = mapped_column(LargeBinary)


class ImportRejection(TenantScoped, Base):
    """A rejected row: its number and reason code in the clear (the report), its cells
    sealed (the file offered back)."""

    __tablename__ = "import_rejections"
    __table_args__ = (_job_fk(),)

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    row_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    reason: Mapped[str] = mapped_column(String(30))
    row_ct: Mapped[bytes] = mapped_column(LargeBinary)
