"""Per-tenant data keys, stored only wrapped by the master key, and the cipher built from them.

Each tenant has numbered data keys (kind "data"): the newest active one encrypts, every one that
still exists decrypts, so rotation needs no downtime. The blind-index key (kind "index") is
separate so phone look-ups survive data-key rotation. Deleting a tenant's keys shreds its data.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tenancy.keyring import (
    FieldCipher,
    KeyProvider,
    KeyShreddedError,
    new_data_key,
    wrap_context,
)
from tenancy.orm import Base, TenantScoped, UtcDateTime, utcnow
from tenancy.session import current_tenant

DATA = "data"
INDEX = "index"


class TenantKey(TenantScoped, Base):
    __tablename__ = "tenant_keys"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    provider_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


def _tenant(session: AsyncSession) -> uuid.UUID:
    tenant_id = current_tenant(session)
    if tenant_id is None:
        raise KeyShreddedError("no tenant bound")
    return tenant_id


async def create_initial_keys(session: AsyncSession, provider: KeyProvider) -> None:
    """Give the session's tenant its first data key and its blind-index key."""
    tenant_id = _tenant(session)
    for kind in (DATA, INDEX):
        session.add(
            TenantKey(
                kind=kind,
                version=1,
                wrapped=provider.wrap(new_data_key(), context=wrap_context(tenant_id, kind, 1)),
                provider_id=provider.provider_id,
            )
        )
    await session.flush()


async def rotate_data_key(session: AsyncSession, provider: KeyProvider) -> int:
    """Add a new data key; new writes use it at once, old ciphertexts still read."""
    tenant_id = _tenant(session)
    latest = await session.scalar(
        select(TenantKey.version).where(TenantKey.kind == DATA).order_by(TenantKey.version.desc())
    )
    version = (latest or 0) + 1
    session.add(
        TenantKey(
            kind=DATA,
            version=version,
            wrapped=provider.wrap(new_data_key(), context=wrap_context(tenant_id, DATA, version)),
            provider_id=provider.provider_id,
        )
    )
    await session.flush()
    return version


async def retire_data_keys_below(session: AsyncSession, version: int) -> int:
    """Delete data keys older than `version` (after re-encryption): their ciphertexts are gone."""
    result = await session.execute(
        delete(TenantKey).where(TenantKey.kind == DATA, TenantKey.version < version)
    )
    return result.rowcount or 0


async def rewrap_all(session: AsyncSession, old: KeyProvider, new: KeyProvider) -> int:
    """Master-key rotation: re-wrap this tenant's keys; no field is re-encrypted."""
    tenant_id = _tenant(session)
    keys = (await session.scalars(select(TenantKey))).all()
    for key in keys:
        ctx = wrap_context(tenant_id, key.kind, key.version)
        key.wrapped = new.wrap(old.unwrap(key.wrapped, context=ctx), context=ctx)
        key.provider_id = new.provider_id
    await session.flush()
    return len(keys)


async def load_cipher(session: AsyncSession, provider: KeyProvider) -> FieldCipher:
    """Unwrap the bound tenant's keys into a cipher; no keys left means the tenant is shredded."""
    tenant_id = _tenant(session)
    keys = (await session.scalars(select(TenantKey))).all()
    data = {
        k.version: provider.unwrap(k.wrapped, context=wrap_context(tenant_id, DATA, k.version))
        for k in keys
        if k.kind == DATA
    }
    index = [k for k in keys if k.kind == INDEX]
    if not data or not index:
        raise KeyShreddedError("this tenant's keys have been destroyed")
    index_key = provider.unwrap(index[0].wrapped, context=wrap_context(tenant_id, INDEX, 1))
    return FieldCipher(tenant_id, data, max(data), index_key)


async def shred_tenant_keys(session: AsyncSession) -> None:
    """Crypto-shred: every ciphertext of the tenant becomes unreadable for good."""
    await session.execute(delete(TenantKey))
