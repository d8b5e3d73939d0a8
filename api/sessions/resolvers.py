"""Sign-in, refresh, sign-out and `me`."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.tenants.types import Branch, Staff, Tenant
from auth.sessions import Challenge, TokenPair, change_password, refresh, sign_in, sign_out
from auth.staff import StaffService
from domain.tenants.branches import BranchService
from domain.tenants.repository import TenantRepository


@strawberry.type(
    description="What signIn, verifyTotp and refreshTokens answer: tokens or, when a second "
    "factor is due, a challenge to finish with verifyTotp."
)
class AuthPayload:
    access_token: str | None = strawberry.field(
        description="Short-lived access token: send as `Authorization: Bearer <token>`. Null "
        "when secondFactorRequired."
    )
    refresh_token: str | None = strawberry.field(
        description="Single-use token for refreshTokens; each use returns a new one. Null when "
        "secondFactorRequired or enrolmentRequired."
    )
    expires_in: int = strawberry.field(
        description="Seconds until the access token expires (with a challenge: until the "
        "challenge does)."
    )
    second_factor_required: bool = strawberry.field(
        default=False,
        description="True: no tokens yet; call verifyTotp with `challenge` and a code.",
    )
    challenge: str | None = strawberry.field(
        default=None,
        description="The one-time challenge for verifyTotp, valid a few minutes (ppc_…).",
    )
    enrolment_required: bool = strawberry.field(
        default=False,
        description="True: your role must use a second factor and you have none yet. This "
        "access token reaches only `me`, startTotpEnrolment and confirmTotp; sign in again "
        "after confirming.",
    )


@strawberry.type(description="The signed-in principal.")
class Me:
    user: Staff | None = strawberry.field(description="The staff member (null for service tokens).")
    tenant: Tenant = strawberry.field(description="The tenant the token belongs to.")
    roles: list[str] = strawberry.field(description="Role names (hq_admin, doctor, …).")
    branches: list[Branch] = strawberry.field(description="Branches the staff member works in.")


def payload(pair: TokenPair | Challenge) -> AuthPayload:
    if isinstance(pair, Challenge):
        return AuthPayload(
            access_token=None,
            refresh_token=None,
            expires_in=pair.expires_in,
            second_factor_required=True,
            challenge=pair.challenge,
        )
    return AuthPayload(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        enrolment_required=pair.enrolment_only,
    )


async def sign_in_mutation(info: Info, tenant: str, email: str, password: str) -> AuthPayload:
    ctx = info.context
    pair = await sign_in(
        ctx.app.sessions,
        ctx.app.signing_keys,
        ctx.app.sign_in_limits,
        tenant_slug=tenant,
        email=email,
        password=password,
        client_addr=ctx.request_info.client_addr,
    )
    return payload(pair)


async def refresh_tokens(info: Info, refresh_token: str) -> AuthPayload:
    return payload(
        await refresh(info.context.app.sessions, info.context.app.signing_keys, refresh_token)
    )


async def sign_out_mutation(info: Info) -> bool:
    ctx = info.context
    return await sign_out(ctx.session, await ctx.principal())


async def change_password_mutation(info: Info, current_password: str, new_password: str) -> bool:
    ctx = info.context
    await change_password(ctx.session, await ctx.principal(), current_password, new_password)
    return True


async def me(info: Info) -> Me:
    ctx = info.context
    principal = await ctx.principal()
    tenant = await TenantRepository(ctx.session).bound()
    user = None
    if principal.kind == "user":
        found = await StaffService(ctx.session, ctx.trail).by_ids([principal.id])
        user = found[0] if found else None
    branches = []
    if principal.branch_ids:
        rows = await BranchService(ctx.session).by_ids(sorted(principal.branch_ids))
        branches = [Branch.of(b) for b in rows]
    return Me(
        user=None if user is None else Staff.of(user),
        tenant=Tenant.of(tenant),
        roles=list(principal.roles),
        branches=branches,
    )
