"""Trusted documents: the GraphQL operations a deployment accepts, published by the clients
that own them (a web admin, a mini-program), each stored under the SHA-256 of its exact text.

Not tenant-owned: one registry per deployment, shared by every chain it serves (the documents
are code, not data), written by the owner role and read by the app role.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tenancy.orm import Base, Timestamped, UtcDateTime


class TrustedDocument(Timestamped, Base):
    __tablename__ = "trusted_documents"
    __table_args__ = (Index("ix_trusted_documents_hash", "hash"),)

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    # sha256 of the document's exact text, as the client computed it (lower-case hex).
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_version: Mapped[str] = mapped_column(String(64))
    document: Mapped[str] = mapped_column(Text)
    # JSON: {operation name: {"type": "query" | "mutation", "get": bool}}; the nameless
    # operation of a one-operation document is "".
    operations: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
