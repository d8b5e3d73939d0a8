"""Moving a tenant's patients onto its newest data key, in batches, one transaction each.

Rows already under the active key are skipped by reading the key version from the ciphertext
header, so an interrupted job simply runs again and continues where it stopped; reads work
throughout because every older key still decrypts until it is retired.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from domain.patients.models import SEALED_FIELDS, Patient
from domain.patients.repository import PatientRepository
from domain.patients.service import seal, unseal
from tenancy.keyring import FieldCipher


def _stale(cipher: FieldCipher, patient: Patient) -> bool:
    return any(
        (blob := getattr(patient, f"{name}_ct")) is not None
        and cipher.key_version(blob) != cipher.active_version
        for name in SEALED_FIELDS
    )


async def reencrypt_patients(
    session: AsyncSession,
    cipher: FieldCipher,
    batch: int = 500,
    progress: Callable[[str], None] = lambda _m: None,
    stop_after_batches: int | None = None,
) -> int:
    """Re-encrypt stale rows; returns how many rows were rewritten by this run."""
    repo = PatientRepository(session)
    async with session.begin():
        total = await repo.count_all()
    after: uuid.UUID | None = None
    seen = moved = batches = 0
    while True:
        async with session.begin():
            rows = await repo.batch(after, batch)
            for patient in rows:
                if _stale(cipher, patient):
                    for name in SEALED_FIELDS:
                        seal(cipher, patient, name, unseal(cipher, patient, name))
                    moved += 1
        if not rows:
            break
        after, seen, batches = rows[-1].id, seen + len(rows), batches + 1
        progress(f"re-encrypt: {seen}/{total} rows checked, {moved} rewritten")
        if stop_after_batches is not None and batches >= stop_after_batches:
            break
    return moved
