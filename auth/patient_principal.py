"""A patient token's principal: the patient it names, still a live record of its tenant."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from auth.policy import load_policy
from auth.principal import Principal
from auth.repository import SessionRepository
from auth.roles import PATIENT_ROLE
from auth.tokens import AccessClaims
from tenancy.session import bind_tenant


async def patient_principal(session: AsyncSession, claims: AccessClaims) -> Principal | None:
    """None when the token's patient is gone (erased, or merged into another record: signing
    in again finds the kept one)."""
    if claims.kind != "patient" or claims.user_id is None:
        return None
    await bind_tenant(session, claims.tenant_id)
    row = await SessionRepository(session).patient_principal_row(claims.user_id)
    if row is None or row.erased_at is not None or row.merged_into_id is not None:
        return None
    return Principal(
        kind="patient",
        id=claims.user_id,
        tenant_id=claims.tenant_id,
        tenant_slug=row.slug,
        display_name="patient",
        roles=(PATIENT_ROLE,),
        branch_ids=frozenset(),
        policy=await load_policy(session, row.policy_version),
    )
