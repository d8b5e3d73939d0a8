"""A chain's people: inviting staff, accepting invitations, changing their name, branches,
regions and roles, password resets, and listing them.

Invitations and resets are one-time tokens (`ppi_…` and `ppw_…`, carrying their tenant like
refresh tokens do) stored only as SHA-256 digests; each is spent once, expires (72 hours for
an invitation, 24 for a reset) and is void once revoked or replaced. Administrative changes
are recorded on the request's trail (`AccessTrail.admin`): ids and role names, no names,
e-mails or tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from auth.models import StaffBranch, StaffRegion, StaffToken, StaffTokenPurpose, StaffUser
from auth.policy import (
    PolicyError,
    TenantPolicy,
    assign_role,
    check_role_grant,
    replace_user_roles,
)
from auth.provisioning import check_email
from auth.repository import StaffRepository
from auth.sessions import revoke_sessions
from auth.staff_scope import CHAIN, StaffFilter, StaffScope
from auth.tokens import new_opaque_token, opaque_token_digest
from auth.trail import AccessTrail
from domain.errors import BadInput, Conflict, DomainError, Forbidden, NotFound
from domain.tenants.models import Branch, Region
from domain.tenants.repository import BranchRepository
from tenancy.session import current_tenant

INVITATION_TTL = timedelta(hours=72)
RESET_TTL = timedelta(hours=24)
# Stored instead of a hash while no password is set: Argon2 cannot parse it, so no password
# ever verifies against it.
NO_PASSWORD = "!unset"
MIN_PASSWORD = 10
PREFIX = {StaffTokenPurpose.INVITATION: "ppi", StaffTokenPurpose.PASSWORD_RESET: "ppw"}


@dataclass(frozen=True)
class Granter:
    """Who grants roles: a signed-in principal's policy and subject. The operator's CLI
    passes None (it acts for the platform, outside any role)."""

    policy: TenantPolicy
    subject: str


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as_domain(exc: PolicyError, field: str) -> DomainError:
    if exc.code == "BAD_USER_INPUT":
        return BadInput(str(exc), field=field)
    return Forbidden(str(exc), field=field)


def check_roles(
    policy: TenantPolicy,
    granter: Granter | None,
    roles: set[str],
    held: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Known roles only; a granter may give (beyond the roles `held` already) only what they
    hold themselves, as `setStaffRoles` does (a manager: never a role that manages staff)."""
    known = {p[0] for p in policy.enforcer.get_filtered_policy(1, policy.domain)}
    unknown = {r for r in roles if r not in known or ":" in r}
    if unknown:
        raise BadInput(f"unknown role {sorted(unknown)[0]}", field="roles")
    if granter is None:
        return
    wanted: set[tuple[str, str]] = set()
    for role in roles - held:
        wanted |= policy.permissions_of_role(role)
    try:
        check_role_grant(policy, granter.subject, wanted)
    except PolicyError as exc:
        raise _as_domain(exc, "roles") from None


def check_places(
    scope: StaffScope, branches: Sequence[Branch], regions: Sequence[Region], prefix: str
) -> None:
    """A manager places staff only in their own branches, and never over a region."""
    if scope.chain:
        return
    if regions:
        raise Forbidden("only HQ assigns regions", field=f"{prefix}regionIds")
    if not branches or not {b.id for b in branches} <= scope.branch_ids:
        raise Forbidden(
            "staff you manage work only in branches you manage", field=f"{prefix}branchIds"
        )


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise BadInput("name must be 1-100 characters", field="name")
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise BadInput(
            f"the password must have at least {MIN_PASSWORD} characters", field="password"
        )


class StaffService:
    def __init__(self, session: AsyncSession, trail: AccessTrail) -> None:
        self.session = session
        self.trail = trail
        self.repo = StaffRepository(session)

    async def get(
        self, staff_id: uuid.UUID, field: str = "staffId", scope: StaffScope = CHAIN
    ) -> StaffUser:
        """A staff member the scope sees; one it does not answers as a missing one does."""
        row = await self.repo.member(staff_id)
        if row is not None and not scope.chain:
            branches, _ = await self.places_of([row.id])
            if not scope.sees(branches[row.id]):
                row = None
        if row is None:
            raise NotFound("no such staff member", field=field)
        return row

    async def check_manageable(
        self,
        policy: TenantPolicy,
        granter: Granter | None,
        scope: StaffScope,
        user: StaffUser,
        field: str = "staffId",
    ) -> None:
        """A manager changes only someone wholly inside their scope whose every role they
        could have granted; HQ anyone (their role grants are checked where roles change)."""
        if scope.chain or granter is None:
            return
        branches, regions = await self.places_of([user.id])
        roles = set(policy.roles_of(f"user:{user.id}"))
        wanted: set[tuple[str, str]] = set()
        for role in roles:
            wanted |= policy.permissions_of_role(role)
        try:
            if not scope.holds(branches[user.id], regions[user.id]):
                raise PolicyError("this staff member works beyond the branches you manage")
            check_role_grant(policy, granter.subject, wanted)
        except PolicyError as exc:
            raise Forbidden(f"you cannot manage this staff member: {exc}", field=field) from None

    async def _issue(self, user: StaffUser, purpose: str, ttl: timedelta) -> str:
        """A new one-time token; any earlier unspent one of the same purpose stops working."""
        await self._void(user, purpose)
        tenant_id = current_tenant(self.session)
        assert tenant_id is not None
        token = new_opaque_token(f"{PREFIX[purpose]}_{tenant_id.hex}_")
        self.session.add(
            StaffToken(
                staff_id=user.id,
                purpose=purpose,
                token_digest=opaque_token_digest(token),
                expires_at=_now() + ttl,
            )
        )
        await self.session.flush()
        return token

    async def _void(self, user: StaffUser, purpose: str) -> int:
        return await self.repo.void_tokens(user, purpose, _now())

    async def _set_places(
        self, user: StaffUser, branches: Sequence[Branch], regions: Sequence[Region]
    ) -> None:
        await self.repo.clear_places(user)
        self.session.add_all(StaffBranch(staff_id=user.id, branch_id=b.id) for b in branches)
        self.session.add_all(StaffRegion(staff_id=user.id, region_id=r.id) for r in regions)
        await self.session.flush()

    async def invite(
        self,
        policy: TenantPolicy,
        granter: Granter | None,
        *,
        email: str,
        name: str,
        roles: set[str],
        branches: Sequence[Branch] = (),
        regions: Sequence[Region] = (),
        scope: StaffScope = CHAIN,
    ) -> tuple[StaffUser, str]:
        """An inactive account with no password and its invitation token (shown once)."""
        email = check_email(email)
        name = _check_name(name)
        if not roles:
            raise BadInput("give at least one role", field="roles")
        check_roles(policy, granter, roles)
        check_places(scope, branches, regions, "input.")
        if await self.repo.id_with_email(email):
            raise Conflict("a staff member with this email exists", field="email")
        user = StaffUser(email=email, display_name=name, password_hash=NO_PASSWORD, is_active=False)
        self.session.add(user)
        await self.session.flush()
        await self._set_places(user, branches, regions)
        for role in sorted(roles):
            await assign_role(self.session, f"user:{user.id}", role)
        token = await self._issue(user, StaffTokenPurpose.INVITATION, INVITATION_TTL)
        self.trail.admin("staff.invite", "Staff", user.id, "roles=" + ",".join(sorted(roles)))
        return user, token

    async def _pending(self, user: StaffUser) -> None:
        if user.is_active or user.password_hash != NO_PASSWORD:
            raise Conflict("this staff member has already accepted", field="staffId")

    async def resend_invitation(self, user: StaffUser) -> str:
        await self._pending(user)
        token = await self._issue(user, StaffTokenPurpose.INVITATION, INVITATION_TTL)
        self.trail.admin("staff.invitation_resend", "Staff", user.id)
        return token

    async def revoke_invitation(self, user: StaffUser) -> bool:
        await self._pending(user)
        revoked = await self._void(user, StaffTokenPurpose.INVITATION)
        self.trail.admin("staff.invitation_revoke", "Staff", user.id)
        return revoked > 0

    async def update(
        self,
        policy: TenantPolicy,
        granter: Granter,
        user: StaffUser,
        *,
        name: str | None = None,
        branches: Sequence[Branch] | None = None,
        regions: Sequence[Region] | None = None,
        roles: set[str] | None = None,
        scope: StaffScope = CHAIN,
    ) -> list[str]:
        """Change what is given; returns the names of what changed (one trail entry)."""
        changed: list[str] = []
        subject = f"user:{user.id}"
        await self.check_manageable(policy, granter, scope, user)
        if roles is not None and roles != set(policy.roles_of(subject)):
            if subject == granter.subject:
                raise Forbidden("you cannot change your own roles", field="roles")
            check_roles(policy, granter, roles, set(policy.roles_of(subject)))
            await replace_user_roles(self.session, policy, subject, roles)
            changed.append("roles")
        if name is not None and _check_name(name) != user.display_name:
            user.display_name = _check_name(name)
            changed.append("name")
        if branches is not None or regions is not None:
            now_b, now_r = await self.places_of([user.id])
            new_b = branches if branches is not None else await self._branches(now_b[user.id])
            new_r = regions if regions is not None else await self._regions(now_r[user.id])
            check_places(scope, new_b, new_r, "input.")
            if {b.id for b in new_b} != now_b[user.id]:
                changed.append("branches")
            if {r.id for r in new_r} != now_r[user.id]:
                changed.append("regions")
            await self._set_places(user, new_b, new_r)
        await self.session.flush()
        if changed:
            detail = ",".join(changed)
            if "roles" in changed and roles is not None:
                detail += " roles=" + ",".join(sorted(roles))
            self.trail.admin("staff.update", "Staff", user.id, detail)
        return changed

    async def _branches(self, ids: set[uuid.UUID]) -> list[Branch]:
        return list(await BranchRepository(self.session).branches(list(ids)))

    async def _regions(self, ids: set[uuid.UUID]) -> list[Region]:
        return await self.repo.regions(ids)

    async def set_active(self, user: StaffUser, active: bool) -> bool:
        if user.is_active != active:
            if active and user.password_hash == NO_PASSWORD:
                raise Conflict("this invitation has not been accepted yet", field="staffId")
            user.is_active = active
            user.token_version += 1
            await revoke_sessions(self.session, user)
            self.trail.admin("staff.activate" if active else "staff.deactivate", "Staff", user.id)
        return user.is_active

    async def reset_password(self, user: StaffUser) -> str:
        """The old password, every refresh token and every access token stop working now;
        the person sets a new password with the reset token (shown once)."""
        user.password_hash = NO_PASSWORD
        user.token_version += 1
        user.failed_logins = 0
        user.locked_until = None
        await revoke_sessions(self.session, user)
        token = await self._issue(user, StaffTokenPurpose.PASSWORD_RESET, RESET_TTL)
        self.trail.admin("staff.password_reset", "Staff", user.id)
        return token

    async def places_of(
        self, ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, set[uuid.UUID]], dict[uuid.UUID, set[uuid.UUID]]]:
        """staff id → branch ids, and staff id → region ids."""
        branches: dict[uuid.UUID, set[uuid.UUID]] = {i: set() for i in ids}
        regions: dict[uuid.UUID, set[uuid.UUID]] = {i: set() for i in ids}
        if not ids:
            return branches, regions
        for sid, bid in await self.repo.branch_links(ids):
            branches[sid].add(bid)
        for sid, rid in await self.repo.region_links(ids):
            regions[sid].add(rid)
        return branches, regions

    async def by_ids(self, ids: Sequence[uuid.UUID]) -> Sequence[StaffUser]:
        """The staff members among `ids` (no scope: a loader under a checked field asks)."""
        return await self.repo.members(ids)

    async def pending_ids(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Of these staff, those with an invitation still open (unspent, unrevoked, unexpired)."""
        if not ids:
            return set()
        return await self.repo.with_open_invitation(ids, _now())

    async def list(self, flt: StaffFilter) -> Sequence[StaffUser]:
        return await self.repo.matching(flt)
