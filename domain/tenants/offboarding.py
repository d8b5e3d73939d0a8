"""A chain that leaves: the states `patientpool tenant offboard` walks a tenant through.

exporting (sign-in closed, the archive being written) → exported (the archive is complete and
its key was printed) → shredded (the keys are gone). A run reads the state and goes on from
there, so a run killed at any point is finished by the next one, and a run after the end
changes nothing.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.tenants.models import Tenant


class OffboardingState(StrEnum):
    EXPORTING = "exporting"
    EXPORTED = "exported"
    SHREDDED = "shredded"


async def tenant_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    return await session.scalar(select(Tenant).where(Tenant.slug == slug))


async def set_state(session: AsyncSession, tenant: Tenant, state: OffboardingState) -> None:
    await session.execute(
        update(Tenant)
        .where(Tenant.id == tenant.id)
        .values(offboarding_state=state.value)
        .execution_options(synchronize_session=False)
    )
