"""The tenant root field (branches and regions: `api.chain`)."""

from __future__ import annotations

from strawberry.types import Info

from api.tenants.types import Tenant
from domain.tenants.repository import TenantRepository


async def tenant(info: Info) -> Tenant:
    ctx = info.context
    await ctx.principal()  # the principal binds the session to its tenant
    row = await TenantRepository(ctx.session).bound()
    return Tenant.of(row)
