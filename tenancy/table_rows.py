"""Every row of one tenant table for the bound tenant, in batches by primary key.

For whole-tenant walks (the offboarding export) over tables the walker does not model: a Core
select per batch, keyset-paged on the primary key (which `tenant_id` leads), so memory stays
at one batch and each batch is one short statement. The tenant filter is written out here as
well, because the ORM's filter hooks entities rather than bare tables, and the platform
operator's sessions may not be under row-level security.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Table, literal, select, tuple_
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from tenancy.session import TENANT_KEY, TenantContextError, current_tenant


async def tenant_row_batches(
    session: AsyncSession, table: Table, batch: int
) -> AsyncIterator[Sequence[RowMapping]]:
    """Batches of the bound tenant's rows of `table`, in primary-key order (none if empty)."""
    tenant_id = current_tenant(session)
    if tenant_id is None or TENANT_KEY not in table.c:
        raise TenantContextError(f"{table.name}: a tenant walk needs a tenant and a tenant table")
    key = [c for c in table.primary_key.columns if c.name != TENANT_KEY]
    after: tuple[Any, ...] | None = None
    while True:
        stmt = select(table).where(table.c[TENANT_KEY] == tenant_id)
        if after is not None:
            bound = [literal(value, c.type) for value, c in zip(after, key, strict=True)]
            stmt = stmt.where(tuple_(*key) > tuple_(*bound))
        rows = (await session.execute(stmt.order_by(*key).limit(batch))).mappings().all()
        if not rows:
            return
        yield rows
        if len(rows) < batch or not key:
            return
        after = tuple(rows[-1][c.name] for c in key)
