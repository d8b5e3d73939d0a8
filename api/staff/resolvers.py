"""A chain's staff through GraphQL: list, invite, accept, change, reset, reassign.

HQ (`staff:write`, and `policies:write` for roles) runs these for the chain; branch and region
managers (`staff:branch` / `staff:region`) for the staff of their own branches, granting only
roles they hold and never one that manages staff (auth/policy.py `check_role_grant`). Staff
outside the caller's staff scope answer NOT_FOUND, as missing ones do; staff inside it whom
the caller may not change (a colleague manager, someone also working elsewhere) answer
FORBIDDEN. Every change leaves one administrative access-log entry. Accepting an invitation
and completing a reset are called without a token (they are in PUBLIC_ROOT_FIELDS)."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.types import Info

from api.ids import parse_global_id
from api.pagination import Connection, held_connection
from api.staff.types import (
    InvitationPayload,
    InviteStaffInput,
    PasswordResetPayload,
    ReassignPatientsPayload,
    StaffFilter,
    UpdateStaffInput,
)
from api.tenants.types import Staff
from auth.access_log import Action
from auth.guard import require_patient_scope, staff_scope
from auth.models import StaffTokenPurpose, StaffUser
from auth.principal import Principal
from auth.staff import INVITATION_TTL, RESET_TTL, Granter, StaffService
from auth.staff_scope import StaffFilter as Filter
from auth.staff_scope import StaffScope
from auth.staff_tokens import redeem
from domain.errors import BadInput, Forbidden
from domain.patients.repository import PatientRepository
from domain.tenants.branches import BranchService
from domain.tenants.models import Branch, Region


def _service(info: Info) -> StaffService:
    return StaffService(info.context.session, info.context.trail)


async def _writer(info: Info) -> tuple[Principal, StaffScope]:
    principal = await info.context.principal()
    return principal, staff_scope(principal, "write")


def _granter(principal: Principal) -> Granter:
    return Granter(principal.policy, principal.subject)


async def _branches(info: Info, ids: list[strawberry.ID], field: str) -> list[Branch]:
    service = BranchService(info.context.session)
    return [await service.get(parse_global_id(i, "Branch", field), field) for i in ids]


async def _regions(info: Info, ids: list[strawberry.ID], field: str) -> list[Region]:
    service = BranchService(info.context.session)
    return [await service.region(parse_global_id(i, "Region", field), field) for i in ids]


async def _staff(
    info: Info, staff_id: strawberry.ID, scope: StaffScope, field: str = "staffId"
) -> StaffUser:
    return await _service(info).get(parse_global_id(staff_id, "Staff", field), field, scope)


async def _managed(
    info: Info, principal: Principal, scope: StaffScope, staff_id: strawberry.ID
) -> StaffUser:
    """A staff member the caller may change: in their scope (else NOT_FOUND) and wholly
    theirs to manage (else FORBIDDEN)."""
    user = await _staff(info, staff_id, scope)
    await _service(info).check_manageable(principal.policy, _granter(principal), scope, user)
    return user


async def staff(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    filter: StaffFilter | None = None,
) -> Connection[Staff]:
    principal = await info.context.principal()
    scope = staff_scope(principal, "read")
    flt = filter or StaffFilter()
    subjects = None
    if flt.role is not None:
        policy = principal.policy
        subjects = frozenset(policy.enforcer.get_users_for_role_in_domain(flt.role, policy.domain))
    rows = await _service(info).list(
        Filter(
            scope=scope,
            branch_ids=frozenset(
                parse_global_id(b, "Branch", "filter.branchIds") for b in flt.branch_ids or []
            ),
            region_ids=frozenset(
                parse_global_id(r, "Region", "filter.regionIds") for r in flt.region_ids or []
            ),
            subjects=subjects,
            active=flt.active,
            search=flt.search,
        )
    )
    return held_connection([((s.email,), Staff.of(s)) for s in rows], 1, first, after)


async def invite_staff(info: Info, input: InviteStaffInput) -> InvitationPayload:
    principal, scope = await _writer(info)
    user, token = await _service(info).invite(
        principal.policy,
        _granter(principal),
        email=input.email,
        name=input.name,
        roles=set(input.roles),
        branches=await _branches(info, input.branch_ids, "input.branchIds"),
        regions=await _regions(info, input.region_ids, "input.regionIds"),
        scope=scope,
    )
    return InvitationPayload(
        staff=Staff.of(user),
        invitation_token=token,
        expires_at=datetime.now(UTC) + INVITATION_TTL,
    )


async def resend_invitation(info: Info, staff_id: strawberry.ID) -> InvitationPayload:
    principal, scope = await _writer(info)
    user = await _managed(info, principal, scope, staff_id)
    token = await _service(info).resend_invitation(user)
    return InvitationPayload(
        staff=Staff.of(user),
        invitation_token=token,
        expires_at=datetime.now(UTC) + INVITATION_TTL,
    )


async def revoke_invitation(info: Info, staff_id: strawberry.ID) -> Staff:
    principal, scope = await _writer(info)
    user = await _managed(info, principal, scope, staff_id)
    await _service(info).revoke_invitation(user)
    return Staff.of(user)


async def accept_invitation(info: Info, token: str, password: str) -> bool:
    ctx = info.context
    await redeem(ctx.app.sessions, StaffTokenPurpose.INVITATION, token, password, ctx.request_info)
    return True


async def complete_password_reset(info: Info, token: str, password: str) -> bool:
    ctx = info.context
    await redeem(
        ctx.app.sessions, StaffTokenPurpose.PASSWORD_RESET, token, password, ctx.request_info
    )
    return True


async def update_staff(info: Info, staff_id: strawberry.ID, input: UpdateStaffInput) -> Staff:
    principal, scope = await _writer(info)
    user = await _staff(info, staff_id, scope)
    branches = (
        None
        if input.branch_ids is None
        else await _branches(info, input.branch_ids, "input.branchIds")
    )
    regions = (
        None
        if input.region_ids is None
        else await _regions(info, input.region_ids, "input.regionIds")
    )
    await _service(info).update(
        principal.policy,
        _granter(principal),
        user,
        name=input.name,
        branches=branches,
        regions=regions,
        roles=None if input.roles is None else set(input.roles),
        scope=scope,
    )
    return Staff.of(user)


async def reset_staff_password(info: Info, staff_id: strawberry.ID) -> PasswordResetPayload:
    principal, scope = await _writer(info)
    user = await _staff(info, staff_id, scope)
    if user.id == principal.id:
        raise Forbidden("reset your own password with changePassword", field="staffId")
    await _service(info).check_manageable(principal.policy, _granter(principal), scope, user)
    token = await _service(info).reset_password(user)
    return PasswordResetPayload(
        staff=Staff.of(user), reset_token=token, expires_at=datetime.now(UTC) + RESET_TTL
    )


async def reassign_patients(
    info: Info,
    from_staff_id: strawberry.ID,
    to_staff_id: strawberry.ID,
    branch_id: strawberry.ID | None = None,
) -> ReassignPatientsPayload:
    """Hand everyone assigned to one staff member (e.g. someone leaving) to another, in one
    transaction: all of them or none (a chain never has a leaver's patients half handed on),
    one administrative entry (who to whom), and one update entry naming every patient moved.
    Atomic rather than a resumable job: a job would leave a leaver's patients split between
    two people while it runs or after it fails. The rows move in batches of a thousand, each
    statement well inside the statement timeout."""
    ctx = info.context
    principal, staff = await _writer(info)
    scope = require_patient_scope(principal, ctx.trail, "write", Action.UPDATE)
    source = await _staff(info, from_staff_id, staff, "fromStaffId")
    target = await _staff(info, to_staff_id, staff, "toStaffId")
    if source.id == target.id:
        raise BadInput("choose two different staff members", field="toStaffId")
    if not target.is_active:
        raise BadInput("the new staff member cannot sign in", field="toStaffId")
    branch = None
    if branch_id is not None:
        branch = (await _branches(info, [branch_id], "branchId"))[0].id
    moved = await PatientRepository(ctx.session).reassign(scope, source.id, target.id, branch)
    ctx.trail.changed(Action.UPDATE, moved)
    # The admin entry's reason is capped at 100 characters, which two ids fill: the count is
    # that of the update entry's patient ids (same request id).
    ctx.trail.admin("patients.reassign", "Staff", source.id, f"to:{target.id}")
    return ReassignPatientsPayload(moved=len(moved), to_staff=Staff.of(target))
