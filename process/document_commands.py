"""`patientpool documents push|list|revoke`, and the push of the project's own operations that
`patientpool migrate` makes: the trusted documents registry from the command line (as the
owner role; the served app only reads it)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from api.documents import ManifestError, folder_manifest, push, read_manifest, sha256
from api.schema import OPERATIONS, build_schema
from domain.documents.models import TrustedDocument
from domain.documents.repository import DocumentRepository

# The client name the project's own operations (frontend-schema/operations) are pushed as.
PROJECT_CLIENT = "patientpool"


async def push_manifest(
    session: AsyncSession, client: str, manifest_file: Path, version: str | None = None
) -> int:
    """Raises ManifestError (nothing stored) when any document of the manifest fails."""
    text = manifest_file.read_text(encoding="utf-8")
    manifest = read_manifest(text)
    return await push(
        session, build_schema()._schema, client, version or sha256(text)[:12], manifest
    )


async def push_project_operations(session: AsyncSession, folder: Path = OPERATIONS) -> int:
    manifest = folder_manifest(folder)
    version = sha256("".join(sorted(manifest)))[:12]
    return await push(session, build_schema()._schema, PROJECT_CLIENT, version, manifest)


async def push_texts(session: AsyncSession, client: str, texts: list[str]) -> list[str]:
    """Push each document on its own (the benchmark's operations); the ones stored: a document
    the registry refuses (over a limit, say) is left out, not the whole set."""
    schema, stored = build_schema()._schema, []
    for text in texts:
        try:
            async with session.begin_nested():
                await push(session, schema, client, sha256(text)[:12], {sha256(text): text})
        except ManifestError:
            continue
        stored.append(text)
    return stored


async def list_documents(session: AsyncSession, client: str | None) -> list[TrustedDocument]:
    return list(await DocumentRepository(session).listed(client))


async def revoke_documents(
    session: AsyncSession, client: str, digest: str | None, version: str | None
) -> int:
    return await DocumentRepository(session).revoke(client, digest, version)
