"""Root fields for setting up and running a chain (branches, regions, staff), kept apart
from `api/schema.py` so it stays small; `Query` and `Mutation` there inherit these."""

from __future__ import annotations

import strawberry

from api.chain import resolvers as chain
from api.pagination import Connection
from api.staff import resolvers as staff
from api.staff.types import InvitationPayload, PasswordResetPayload, ReassignPatientsPayload
from api.tenants.types import Branch, Region, Staff


@strawberry.type(description="Read a chain's set-up.")
class ChainQuery:
    branches: Connection[Branch] = strawberry.field(
        resolver=chain.branches,
        description="The branches of your chain, by code; `filter` by region or open/closed.",
    )
    regions: Connection[Region] = strawberry.field(
        resolver=chain.regions, description="The regions of your chain (大区 / 片区), by name."
    )
    staff: Connection[Staff] = strawberry.field(
        resolver=staff.staff,
        description="The chain's staff, by e-mail; `filter` by branch, region, role, active, "
        "or part of the name or e-mail (HQ and auditors: everyone; branch and region "
        "managers: the staff of their branches).",
    )


@strawberry.type(description="Set up and run a chain.")
class ChainMutation:
    create_branch: Branch = strawberry.field(
        resolver=chain.create_branch, description="Add a branch (HQ); its code must be new."
    )
    update_branch: Branch = strawberry.field(
        resolver=chain.update_branch,
        description="Change a branch's name, city, address, phone, code or region (HQ).",
    )
    close_branch: Branch = strawberry.field(
        resolver=chain.close_branch,
        description="Close a branch (HQ): no new patients or visits there; its history, "
        "metrics and staff scopes stay.",
    )
    reopen_branch: Branch = strawberry.field(
        resolver=chain.reopen_branch, description="Reopen a closed branch (HQ)."
    )
    create_region: Region = strawberry.field(
        resolver=chain.create_region,
        description="Add a region (HQ), optionally with the branches it groups.",
    )
    update_region: Region = strawberry.field(
        resolver=chain.update_region, description="Rename a region (HQ)."
    )
    invite_staff: InvitationPayload = strawberry.field(
        resolver=staff.invite_staff,
        description="Invite a staff member (HQ; a branch or region manager into their own "
        "branches): an inactive account and a one-time invitation token, valid 72 hours and "
        "shown only in this answer.",
    )
    resend_invitation: InvitationPayload = strawberry.field(
        resolver=staff.resend_invitation,
        description="A new invitation token for someone who has not accepted; the old one "
        "stops working.",
    )
    revoke_invitation: Staff = strawberry.field(
        resolver=staff.revoke_invitation,
        description="Withdraw an open invitation; the account stays inactive.",
    )
    accept_invitation: bool = strawberry.field(
        resolver=staff.accept_invitation,
        description="Accept an invitation (no sign-in needed): set your password (at least 10 "
        "characters); the account becomes active. Each token works once.",
    )
    update_staff: Staff = strawberry.field(
        resolver=staff.update_staff,
        description="Change a staff member's name, branches, regions or roles (HQ; a branch "
        "or region manager for staff wholly in their branches; you can grant only what you "
        "hold). Takes effect on their next request.",
    )
    reset_staff_password: PasswordResetPayload = strawberry.field(
        resolver=staff.reset_staff_password,
        description="Reset a staff member's password (HQ, or their manager): the old "
        "password, every refresh "
        "token and every access token stop working now; they set a new one with the "
        "one-time reset token (24 hours).",
    )
    complete_password_reset: bool = strawberry.field(
        resolver=staff.complete_password_reset,
        description="Set a new password with a reset token (no sign-in needed).",
    )
    reassign_patients: ReassignPatientsPayload = strawberry.field(
        resolver=staff.reassign_patients,
        description="Hand every patient assigned to one staff member (optionally in one "
        "branch) to another, in one go (HQ), e.g. when someone leaves.",
    )
