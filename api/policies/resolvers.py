"""Roles and rules through GraphQL: HQ admins change them, never granting more than they hold."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.ids import parse_global_id, to_global_id
from api.pagination import Connection, held_connection
from api.policies.types import (
    Permission,
    PermissionInput,
    Role,
    ServiceTokenPayload,
    StaffRoles,
)
from auth.guard import require, staff_scope
from auth.models import ServiceToken, StaffUser
from auth.policy import (
    CATALOGUE,
    PolicyError,
    check_grant,
    grant_permissions,
    set_role_permissions,
)
from auth.policy import set_user_roles as set_roles
from auth.staff import Granter, StaffService
from auth.tokens import new_opaque_token, opaque_token_digest


def _perms(pairs: set[tuple[str, str]]) -> list[Permission]:
    return [Permission(object=o, action=a) for o, a in sorted(pairs)]


async def roles(info: Info, first: int | None = None, after: str | None = None) -> Connection[Role]:
    principal = await info.context.principal()
    require(principal, "policies", "read")
    policy = principal.policy
    # Subjects with a prefix (user:…, service:…) hold direct rules; the rest are roles.
    rules = policy.enforcer.get_filtered_policy(1, policy.domain)
    names = sorted({p[0] for p in rules if ":" not in p[0]})
    found = [((n,), Role(name=n, permissions=_perms(policy.permissions_of_role(n)))) for n in names]
    return held_connection(found, 1, first, after)


async def permission_catalogue(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[Permission]:
    await info.context.principal()
    return held_connection(
        [((o, a), Permission(object=o, action=a)) for o, a in CATALOGUE], 2, first, after
    )


async def _staff(info: Info, staff_id: strawberry.ID) -> StaffUser:
    uid = parse_global_id(staff_id, "Staff", "staffId")
    return await StaffService(info.context.session, info.context.trail).get(uid, "staffId")


async def set_staff_roles(info: Info, staff_id: strawberry.ID, roles: list[str]) -> StaffRoles:
    ctx = info.context
    principal = await ctx.principal()
    staff = await _staff(info, staff_id)
    subject = f"user:{staff.id}"
    if subject == principal.subject:
        raise PolicyError("you cannot change your own roles")
    before = set(principal.policy.roles_of(subject))
    await set_roles(ctx.session, principal.policy, principal.subject, subject, set(roles))
    if before != set(roles):
        ctx.trail.admin("staff.roles", "Staff", staff.id, "roles=" + ",".join(sorted(set(roles))))
    return StaffRoles(
        staff_id=strawberry.ID(to_global_id("Staff", staff.id)), roles=sorted(set(roles))
    )


async def set_role_permissions_mutation(
    info: Info, role: str, permissions: list[PermissionInput]
) -> Role:
    ctx = info.context
    principal = await ctx.principal()
    wanted = {(p.object, p.action) for p in permissions}
    await set_role_permissions(ctx.session, principal.policy, principal.subject, role, wanted)
    ctx.trail.admin("role.permissions", "Role", role[:40])
    return Role(name=role, permissions=_perms(wanted))


async def create_service_token(
    info: Info, name: str, permissions: list[PermissionInput]
) -> ServiceTokenPayload:
    ctx = info.context
    principal = await ctx.principal()
    wanted = {(p.object, p.action) for p in permissions}
    check_grant(principal.policy, principal.subject, wanted)
    if not name.strip() or len(name) > 100:
        raise PolicyError("name must be 1-100 characters", "BAD_USER_INPUT")
    token = new_opaque_token(f"pps_{principal.tenant_id.hex}_")
    row = ServiceToken(name=name.strip(), token_digest=opaque_token_digest(token))
    ctx.session.add(row)
    await ctx.session.flush()
    await grant_permissions(ctx.session, f"service:{row.id}", sorted(wanted))
    ctx.trail.admin("service_token.create", "ServiceToken", row.id)
    return ServiceTokenPayload(
        id=strawberry.ID(to_global_id("ServiceToken", row.id)),
        token=token,
        permissions=_perms(wanted),
    )


async def set_staff_active(info: Info, staff_id: strawberry.ID, active: bool) -> bool:
    """Disable or re-enable a staff member; disabling ends their tokens at once. HQ for the
    chain, a branch or region manager for staff wholly theirs (auth/staff_scope.py)."""
    ctx = info.context
    principal = await ctx.principal()
    scope = staff_scope(principal, "write")
    service = StaffService(ctx.session, ctx.trail)
    staff = await service.get(parse_global_id(staff_id, "Staff", "staffId"), "staffId", scope)
    if staff.id == principal.id:
        raise PolicyError("you cannot disable yourself")
    granter = Granter(principal.policy, principal.subject)
    await service.check_manageable(principal.policy, granter, scope, staff)
    return await service.set_active(staff, active)
