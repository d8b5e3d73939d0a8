"""Two-factor sign-in through GraphQL: enrol (startTotpEnrolment, confirmTotp), finish a
sign-in (verifyTotp, public), and HQ's part (resetTotp, setTwoFactorPolicy, twoFactorPolicy).
A member enrols themselves; HQ never sees a secret or a code."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from api.ids import parse_global_id
from api.sessions.resolvers import AuthPayload, payload
from auth import totp
from auth.guard import require
from auth.models import StaffUser
from auth.principal import Principal
from auth.second_factor import verify_totp
from auth.staff import StaffService
from domain.errors import Forbidden
from domain.tenants.models import Tenant as TenantRow
from domain.tenants.repository import TenantRepository


@strawberry.type(description="A second factor being set up: add it to an authenticator app.")
class TotpEnrolment:
    otpauth_uri: str = strawberry.field(
        description="The otpauth://totp/… URI (issuer patientpool): show it as a QR code to "
        "the member only, never store or log it."
    )
    secret: str = strawberry.field(
        description="The same secret in base32, for apps that take it typed in."
    )


@strawberry.type(description="A second factor now in force.")
class TotpConfirmation:
    recovery_codes: list[str] = strawberry.field(
        description="Ten one-time recovery codes, shown only in this answer: each stands in "
        "for a code once (a lost phone); keep them offline."
    )


@strawberry.type(description="Which roles must sign in with a second factor.")
class TwoFactorPolicy:
    enforced: bool = strawberry.field(
        description="False until HQ calls setTwoFactorPolicy; members who enrolled get the "
        "challenge either way."
    )
    required_roles: list[str] = strawberry.field(
        description="The roles that must use it; while not enforced, the recommended set "
        "(hq_admin and auditor, as MLPS 2.0 level 3 asks of administrators)."
    )


async def _member(info: Info) -> tuple[Principal, StaffUser]:
    principal = await info.context.principal()
    user = None
    if principal.kind == "user":
        found = await StaffService(info.context.session, info.context.trail).by_ids([principal.id])
        user = found[0] if found else None
    if user is None:
        raise Forbidden("only a staff member signed in as themselves can do this")
    return principal, user


async def start_totp_enrolment(info: Info) -> TotpEnrolment:
    principal, user = await _member(info)
    uri = await totp.start_enrolment(
        info.context.session, await info.context.cipher(), user, principal.tenant_slug
    )
    return TotpEnrolment(otpauth_uri=uri, secret=uri.split("secret=", 1)[1].split("&", 1)[0])


async def confirm_totp(
    info: Info,
    code: Annotated[str, strawberry.argument(description="The 6 digits your app shows now.")],
) -> TotpConfirmation:
    ctx = info.context
    _principal, user = await _member(info)
    codes = await totp.confirm(
        ctx.session, await ctx.cipher(), user, code, ctx.app.sign_in_limits.now()
    )
    ctx.trail.admin("staff.totp_enrol", "Staff", user.id)
    return TotpConfirmation(recovery_codes=codes)


async def verify_totp_mutation(
    info: Info,
    challenge: Annotated[
        str, strawberry.argument(description="The challenge signIn answered (ppc_…).")
    ],
    code: Annotated[
        str,
        strawberry.argument(
            description="The 6 digits your app shows now, or one of your recovery codes."
        ),
    ],
) -> AuthPayload:
    ctx = info.context
    pair = await verify_totp(
        ctx.app.sessions,
        ctx.app.signing_keys,
        ctx.app.key_provider,
        ctx.app.sign_in_limits,
        challenge=challenge,
        code=code,
        info=ctx.request_info,
    )
    return payload(pair)


async def reset_totp(info: Info, staff_id: strawberry.ID) -> bool:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "staff", "write")
    user = await StaffService(ctx.session, ctx.trail).get(parse_global_id(staff_id, "Staff"))
    removed = await totp.remove(ctx.session, user)
    if removed:
        ctx.trail.admin("staff.totp_reset", "Staff", user.id)
    return removed


async def _tenant(info: Info, principal: Principal) -> TenantRow:
    row = await TenantRepository(info.context.session).bound()
    assert row is not None
    return row


def _policy(tenant: TenantRow) -> TwoFactorPolicy:
    required = totp.required_roles(tenant)
    if required is None:
        return TwoFactorPolicy(enforced=False, required_roles=list(totp.DEFAULT_REQUIRED_ROLES))
    return TwoFactorPolicy(enforced=True, required_roles=sorted(required))


async def two_factor_policy(info: Info) -> TwoFactorPolicy:
    principal = await info.context.principal()
    require(principal, "policies", "read")
    return _policy(await _tenant(info, principal))


async def set_two_factor_policy(
    info: Info,
    roles: Annotated[
        list[str] | None,
        strawberry.argument(
            description="The roles that must use a second factor; omit for hq_admin and "
            "auditor; an empty list requires it of nobody (enrolled members still use it)."
        ),
    ] = None,
) -> TwoFactorPolicy:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "policies", "write")
    tenant = await _tenant(info, principal)
    wanted = set(totp.DEFAULT_REQUIRED_ROLES if roles is None else roles)
    before = tenant.two_factor_roles
    chosen = totp.set_required_roles(tenant, principal.policy, wanted)
    if before != tenant.two_factor_roles:
        ctx.trail.admin(
            "tenant.two_factor_policy", "Tenant", tenant.id, "roles=" + ",".join(chosen)
        )
    await ctx.session.flush()
    return _policy(tenant)
