"""Patient exports: who asked, for which patients, in which format, until when.

The file itself is never stored: it is made again from the patients on each download, as the
caller sees them then (see api/exports), so no plaintext (nor a long-lived ciphertext of a
whole file) rests anywhere. The row holds ids only: the plan the job ran (scope and filter,
both ids and codes) and the patients it found."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from tenancy.orm import Base, TenantScoped, Timestamped, UtcDateTime


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


class PatientExport(TenantScoped, Timestamped, Base):
    __tablename__ = "patient_exports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # the job's id
    requested_by: Mapped[str] = mapped_column(String(64))  # "user:<id>": the one downloader
    format: Mapped[str] = mapped_column(String(8))
    filter: Mapped[str] = mapped_column(Text)  # JSON: {"scope": …, "filter": …}
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    patient_ids: Mapped[str] = mapped_column(Text, default="")  # space-separated, in id order
    rows: Mapped[int] = mapped_column(Integer, default=0)
