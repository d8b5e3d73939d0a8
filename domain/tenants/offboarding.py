"""A chain that leaves: the states `patientpool tenant offboard` walks a tenant through.

exporting (sign-in closed, the archive being written) → exported (the archive is complete and
its key was printed) → shredded (the keys are gone). A run reads the state and goes on from
there, so a run killed at any point is finished by the next one, and a run after the end
changes nothing.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from domain.tenants.models import Tenant
from domain.tenants.repository import TenantRepository


class OffboardingState(StrEnum):
    EXPORTING = "exporting"
    EXPORTED = "exported"
    SHREDDED = "shredded"


async def tenant_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    return await TenantRepository(session).by_slug(slug)


async def set_state(session: AsyncSession, tenant: Tenant, state: OffboardingState) -> None:
    await TenantRepository(session).set_offboarding_state(tenant, state.value)
