"""Every statement on the trusted-documents registry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.documents.models import TrustedDocument
from tenancy.orm import utcnow


class DocumentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, digest: str) -> TrustedDocument | None:
        """A document in force under this hash, whichever client published it."""
        return await self.session.scalar(
            select(TrustedDocument)
            .where(TrustedDocument.hash == digest, TrustedDocument.revoked_at.is_(None))
            .limit(1)
        )

    async def put(self, client: str, version: str, documents: Iterable[TrustedDocument]) -> int:
        """Adds the client's documents (a document pushed again, even after a revocation, is in
        force again under the newer version). Returns how many were new or reinstated."""
        changed = 0
        for doc in documents:
            held = await self.session.get(TrustedDocument, (client, doc.hash))
            if held is None:
                doc.client, doc.client_version = client, version
                self.session.add(doc)
                changed += 1
            else:
                changed += held.revoked_at is not None
                held.revoked_at, held.client_version = None, version
        await self.session.flush()
        return changed

    async def listed(self, client: str | None = None) -> Sequence[TrustedDocument]:
        stmt = select(TrustedDocument).order_by(
            TrustedDocument.client, TrustedDocument.created_at, TrustedDocument.hash
        )
        if client is not None:
            stmt = stmt.where(TrustedDocument.client == client)
        return (await self.session.scalars(stmt)).all()

    async def revoke(
        self, client: str, digest: str | None = None, version: str | None = None
    ) -> int:
        stmt = update(TrustedDocument).where(
            TrustedDocument.client == client, TrustedDocument.revoked_at.is_(None)
        )
        if digest is not None:
            stmt = stmt.where(TrustedDocument.hash == digest)
        if version is not None:
            stmt = stmt.where(TrustedDocument.client_version == version)
        result = await self.session.execute(stmt.values(revoked_at=utcnow()))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
