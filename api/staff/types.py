"""GraphQL inputs and payloads for a chain's staff: invitations, changes, resets."""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.tenants.types import Staff


@strawberry.input(description="Whom to invite: an account that can sign in once accepted.")
class InviteStaffInput:
    email: str = strawberry.field(description="Their sign-in e-mail, unique in the chain.")
    name: str = strawberry.field(description="Name shown to colleagues (1-100 characters).")
    roles: list[str] = strawberry.field(
        description="Their roles (at least one); you can grant only what you hold."
    )
    branch_ids: list[strawberry.ID] = strawberry.field(
        default_factory=list, description="The branches they work in (global ids)."
    )
    region_ids: list[strawberry.ID] = strawberry.field(
        default_factory=list, description="The regions they manage (region managers)."
    )


@strawberry.input(description="Changes to a staff member: only the fields given change.")
class UpdateStaffInput:
    name: str | None = strawberry.field(default=None, description="New display name.")
    roles: list[str] | None = strawberry.field(
        default=None, description="Their roles now (replaces them; only what you hold)."
    )
    branch_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="The branches they work in now (replaces them)."
    )
    region_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="The regions they manage now (replaces them)."
    )


@strawberry.input(description="Which staff: every part given must hold.")
class StaffFilter:
    branch_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Working in any of these branches."
    )
    region_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="Working in a branch of, or managing, any of these regions.",
    )
    role: str | None = strawberry.field(default=None, description="Holding this role.")
    active: bool | None = strawberry.field(
        default=None, description="True: those who can sign in; false: the others."
    )
    search: str | None = strawberry.field(
        default=None, description="Part of the name or e-mail (case-insensitive)."
    )


@strawberry.type(description="An invitation: the token is shown only now; send it to them.")
class InvitationPayload:
    staff: Staff = strawberry.field(description="The invited (inactive) staff member.")
    invitation_token: str = strawberry.field(
        description="One-time token for acceptInvitation; stored only as a hash, shown once."
    )
    expires_at: datetime = strawberry.field(description="When the invitation lapses (72 h).")


@strawberry.type(description="A password reset: the token is shown only now; send it to them.")
class PasswordResetPayload:
    staff: Staff = strawberry.field(description="The staff member.")
    reset_token: str = strawberry.field(
        description="One-time token for completePasswordReset; stored only as a hash."
    )
    expires_at: datetime = strawberry.field(description="When the token lapses (24 h).")


@strawberry.type(description="What a reassignment moved.")
class ReassignPatientsPayload:
    moved: int = strawberry.field(description="How many patients changed hands.")
    to_staff: Staff = strawberry.field(description="Who has them now.")
