"""All SQL of `auth/` but the access log's (auth/access_log*.py keep their own storage): staff
and their one-time tokens, refresh sessions and the rows a principal is loaded from, second
factors, the Casbin rules and the sign-in limiter's windows. The callers keep the decisions;
the tenant comes from the session's binding, as everywhere."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, Uuid, bindparam, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from auth.models import (
    CasbinRule,
    RefreshSession,
    ServiceToken,
    SignInWindow,
    StaffBranch,
    StaffRecoveryCode,
    StaffRegion,
    StaffToken,
    StaffTokenPurpose,
    StaffTotp,
    StaffUser,
)
from auth.staff_scope import StaffFilter
from domain.patients.models import Patient
from domain.tenants.models import BranchRegion, Region, Tenant
from tenancy.session import current_tenant


class StaffRepository:
    """Staff members, their branches and regions, and their one-time tokens (invitations,
    password resets, second-factor challenges)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- members ---

    async def member(self, staff_id: uuid.UUID) -> StaffUser | None:
        return await self.session.scalar(select(StaffUser).where(StaffUser.id == staff_id))

    async def member_by_email(self, email: str) -> StaffUser | None:
        return await self.session.scalar(select(StaffUser).where(StaffUser.email == email))

    async def id_with_email(self, email: str) -> uuid.UUID | None:
        """The id of the member with `email`, if any (what a new member's e-mail must not be)."""
        return await self.session.scalar(select(StaffUser.id).where(StaffUser.email == email))

    async def members(self, ids: Sequence[uuid.UUID]) -> Sequence[StaffUser]:
        stmt = select(StaffUser).where(StaffUser.id.in_(sorted(set(ids))))
        return (await self.session.scalars(stmt)).all()

    async def matching(self, flt: StaffFilter) -> Sequence[StaffUser]:
        """The members `flt` lets through, by e-mail."""
        stmt = select(StaffUser)
        if not flt.scope.chain:
            # Pushed into SQL, as a patient scope is: staff sharing a branch with the scope.
            stmt = stmt.where(
                StaffUser.id.in_(
                    select(StaffBranch.staff_id).where(
                        StaffBranch.branch_id.in_(sorted(flt.scope.branch_ids))
                    )
                )
            )
        if flt.branch_ids:
            stmt = stmt.where(
                StaffUser.id.in_(
                    select(StaffBranch.staff_id).where(
                        StaffBranch.branch_id.in_(sorted(flt.branch_ids))
                    )
                )
            )
        if flt.region_ids:
            regions = sorted(flt.region_ids)
            in_region_branch = select(StaffBranch.staff_id).join(
                BranchRegion, BranchRegion.branch_id == StaffBranch.branch_id
            )
            stmt = stmt.where(
                or_(
                    StaffUser.id.in_(in_region_branch.where(BranchRegion.region_id.in_(regions))),
                    StaffUser.id.in_(
                        select(StaffRegion.staff_id).where(StaffRegion.region_id.in_(regions))
                    ),
                )
            )
        if flt.subjects is not None:
            ids = sorted(uuid.UUID(s[5:]) for s in flt.subjects if s.startswith("user:"))
            stmt = stmt.where(StaffUser.id.in_(ids))
        if flt.active is not None:
            stmt = stmt.where(StaffUser.is_active.is_(flt.active))
        if flt.search:
            needle = "%" + flt.search.strip().lower().replace("%", r"\%").replace("_", r"\_") + "%"
            stmt = stmt.where(
                or_(
                    StaffUser.email.like(needle, escape="\\"),
                    StaffUser.display_name.ilike(needle, escape="\\"),
                )
            )
        return (await self.session.scalars(stmt.order_by(StaffUser.email))).all()

    async def names_and_branches(
        self, ids: Sequence[uuid.UUID]
    ) -> Sequence[Row[tuple[uuid.UUID, str, uuid.UUID | None]]]:
        """(id, display name, branch id) per branch of each member of `ids` (one row with no
        branch for a member without any), by member and branch."""
        stmt = (
            select(StaffUser.id, StaffUser.display_name, StaffBranch.branch_id)
            .outerjoin(StaffBranch, StaffBranch.staff_id == StaffUser.id)
            .where(StaffUser.id.in_(sorted(ids)))
            .order_by(StaffUser.id, StaffBranch.branch_id)
        )
        return (await self.session.execute(stmt)).all()

    # --- branches and regions ---

    async def branch_links(
        self, ids: Sequence[uuid.UUID]
    ) -> Sequence[Row[tuple[uuid.UUID, uuid.UUID]]]:
        """(staff id, branch id) for each branch of the members of `ids`."""
        stmt = select(StaffBranch.staff_id, StaffBranch.branch_id).where(
            StaffBranch.staff_id.in_(sorted(set(ids)))
        )
        return (await self.session.execute(stmt)).all()

    async def region_links(
        self, ids: Sequence[uuid.UUID]
    ) -> Sequence[Row[tuple[uuid.UUID, uuid.UUID]]]:
        """(staff id, region id) for each region the members of `ids` manage."""
        stmt = select(StaffRegion.staff_id, StaffRegion.region_id).where(
            StaffRegion.staff_id.in_(sorted(set(ids)))
        )
        return (await self.session.execute(stmt)).all()

    async def regions(self, ids: set[uuid.UUID]) -> list[Region]:
        return list(await self.session.scalars(select(Region).where(Region.id.in_(sorted(ids)))))

    async def clear_places(self, user: StaffUser) -> None:
        """Take the member out of every branch and region (before the new ones are added)."""
        await self.session.execute(
            delete(StaffBranch)
            .where(StaffBranch.staff_id == user.id)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(
            delete(StaffRegion)
            .where(StaffRegion.staff_id == user.id)
            .execution_options(synchronize_session=False)
        )

    async def region_branch_ids(self, user: StaffUser) -> list[uuid.UUID]:
        """The branches of every region the staff member manages."""
        rows = await self.session.scalars(
            select(BranchRegion.branch_id)
            .join(StaffRegion, StaffRegion.region_id == BranchRegion.region_id)
            .where(StaffRegion.staff_id == user.id)
        )
        return list(rows)

    # --- one-time tokens ---

    async def token(self, token_digest: bytes) -> StaffToken | None:
        """The one-time token (of any purpose) with this digest; the caller checks the rest."""
        return await self.session.scalar(
            select(StaffToken).where(StaffToken.token_digest == token_digest)
        )

    async def void_tokens(self, user: StaffUser, purpose: str, now: datetime) -> int:
        """Revoke the member's unspent tokens of `purpose`; how many there were."""
        result = await self.session.execute(
            update(StaffToken)
            .where(
                StaffToken.staff_id == user.id,
                StaffToken.purpose == purpose,
                StaffToken.used_at.is_(None),
                StaffToken.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)

    async def with_open_invitation(self, ids: Sequence[uuid.UUID], now: datetime) -> set[uuid.UUID]:
        """Of these staff, those with an invitation unspent, unrevoked and unexpired at `now`."""
        rows = await self.session.scalars(
            select(StaffToken.staff_id).where(
                StaffToken.staff_id.in_(sorted(set(ids))),
                StaffToken.purpose == StaffTokenPurpose.INVITATION,
                StaffToken.used_at.is_(None),
                StaffToken.revoked_at.is_(None),
                StaffToken.expires_at > now,
            )
        )
        return set(rows)


# Built once: every staff request loads its principal, and then only binds the two ids (a
# missing session id matches no refresh session, as `IS NULL` would).
_STAFF_PRINCIPAL = (
    select(
        StaffUser,
        Tenant.slug,
        Tenant.policy_version,
        RefreshSession.revoked_at,
        StaffBranch.branch_id,
    )
    .join(Tenant, Tenant.id == StaffUser.tenant_id)
    .outerjoin(RefreshSession, RefreshSession.id == bindparam("session_id", type_=Uuid))
    .outerjoin(StaffBranch, StaffBranch.staff_id == StaffUser.id)
    .where(StaffUser.id == bindparam("staff_id"))
)


class SessionRepository:
    """Refresh sessions, service tokens, and the rows a bearer token's principal is loaded
    from (one round trip each: these run on every request)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- the chain ---

    async def offboarding_state(self, user: StaffUser) -> str | None:
        """How far the member's chain is in offboarding (None: not offboarded)."""
        return await self.session.scalar(
            select(Tenant.offboarding_state).where(Tenant.id == user.tenant_id)
        )

    # --- refresh sessions ---

    async def refresh_session(self, token_digest: bytes) -> RefreshSession | None:
        return await self.session.scalar(
            select(RefreshSession).where(RefreshSession.token_digest == token_digest)
        )

    async def end_session(self, session_id: uuid.UUID, now: datetime) -> int:
        """Revoke one refresh session if it is still live; 1 if it was, else 0."""
        result = await self.session.execute(
            update(RefreshSession)
            .where(RefreshSession.id == session_id, RefreshSession.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)

    async def end_sessions_of(self, user: StaffUser, now: datetime) -> None:
        await self.session.execute(
            update(RefreshSession)
            .where(RefreshSession.staff_id == user.id, RefreshSession.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )

    # --- principals ---

    async def staff_principal_rows(
        self, staff_id: uuid.UUID, session_id: uuid.UUID | None
    ) -> Sequence[Row[tuple[StaffUser, str, int, datetime | None, uuid.UUID | None]]]:
        """One round trip: the member, their tenant's slug and policy version, their refresh
        session's `revoked_at`, one row per branch (none when no such member)."""
        params = {"staff_id": staff_id, "session_id": session_id}
        return (await self.session.execute(_STAFF_PRINCIPAL, params)).all()

    async def service_token(self, token_digest: bytes) -> Row[tuple[ServiceToken, str, int]] | None:
        """The service token with this digest, its tenant's slug and policy version."""
        stmt = (
            select(ServiceToken, Tenant.slug, Tenant.policy_version)
            .join(Tenant, Tenant.id == ServiceToken.tenant_id)
            .where(ServiceToken.token_digest == token_digest)
        )
        return (await self.session.execute(stmt)).one_or_none()

    async def patient_principal_row(
        self, patient_id: uuid.UUID
    ) -> Row[tuple[datetime | None, uuid.UUID | None, str, int]] | None:
        """(erased_at, merged_into_id, slug, policy_version) of a patient and their tenant."""
        stmt = (
            select(Patient.erased_at, Patient.merged_into_id, Tenant.slug, Tenant.policy_version)
            .join(Tenant, Tenant.id == Patient.tenant_id)
            .where(Patient.id == patient_id)
        )
        return (await self.session.execute(stmt)).one_or_none()


class TwoFactorRepository:
    """A member's TOTP factor and recovery codes (challenges are staff tokens:
    `StaffRepository`)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def factor(self, user: StaffUser) -> StaffTotp | None:
        """The member's factor, confirmed or still pending."""
        return await self.session.scalar(select(StaffTotp).where(StaffTotp.staff_id == user.id))

    async def drop_factor(self, user: StaffUser) -> int:
        """Delete the member's factor; 1 if there was one, else 0."""
        result = await self.session.execute(
            delete(StaffTotp)
            .where(StaffTotp.staff_id == user.id)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)

    async def drop_recovery_codes(self, user: StaffUser) -> None:
        await self.session.execute(
            delete(StaffRecoveryCode)
            .where(StaffRecoveryCode.staff_id == user.id)
            .execution_options(synchronize_session=False)
        )

    async def spend_recovery_code(
        self, factor: StaffTotp, code_digest: bytes, now: datetime
    ) -> int:
        """Mark the factor's member's unspent code with this digest used; 1 if it was one."""
        result = await self.session.execute(
            update(StaffRecoveryCode)
            .where(
                StaffRecoveryCode.staff_id == factor.staff_id,
                StaffRecoveryCode.code_digest == code_digest,
                StaffRecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)


class PolicyRepository:
    """The bound tenant's Casbin rules and the policy version that tells processes to reload."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- version ---

    async def version(self) -> int | None:
        tenant_id = current_tenant(self.session)
        return await self.session.scalar(
            select(Tenant.policy_version).where(Tenant.id == tenant_id)
        )

    async def bump_version(self) -> None:
        """Every rule change bumps it, so other processes reload on their next request."""
        tenant_id = current_tenant(self.session)
        await self.session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(policy_version=Tenant.policy_version + 1)
            .execution_options(synchronize_session=False)
        )

    # --- rules ---

    async def rules(self) -> Sequence[CasbinRule]:
        return (await self.session.scalars(select(CasbinRule))).all()

    async def drop_user_roles(self, subject: str) -> None:
        await self.session.execute(
            delete(CasbinRule).where(CasbinRule.ptype == "g", CasbinRule.v0 == subject)
        )

    async def drop_role_rules(self, role: str) -> None:
        await self.session.execute(
            delete(CasbinRule).where(CasbinRule.ptype == "p", CasbinRule.v0 == role)
        )

    async def role_links(self, subjects: Sequence[str]) -> Sequence[Row[tuple[str, str]]]:
        """(subject, role) for each role of `subjects`, as stored now."""
        stmt = select(CasbinRule.v0, CasbinRule.v1).where(
            CasbinRule.ptype == "g", CasbinRule.v0.in_(sorted(subjects))
        )
        return (await self.session.execute(stmt)).all()


class RateLimitRepository:
    """The sign-in limiter's windows (not tenant-owned: an address spans tenants)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count_hit(self, key_digest: bytes, window: int) -> int:
        """One upsert counts a hit atomically, whatever process sends it; the window's hits."""
        dialect = self.session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(SignInWindow).values(key_digest=key_digest, window=window, hits=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key_digest", "window"],
            set_={"hits": SignInWindow.hits + 1},
        ).returning(SignInWindow.hits)
        return int((await self.session.execute(stmt)).scalar_one())

    async def hits(self, key_digest: bytes, window: int) -> int | None:
        return await self.session.scalar(
            select(SignInWindow.hits).where(
                SignInWindow.key_digest == key_digest, SignInWindow.window == window
            )
        )

    async def drop_windows_before(self, key_digest: bytes, window: int) -> None:
        await self.session.execute(
            delete(SignInWindow).where(
                SignInWindow.key_digest == key_digest, SignInWindow.window < window
            )
        )

    async def drop_windows(self, key_digest: bytes) -> None:
        await self.session.execute(
            delete(SignInWindow).where(SignInWindow.key_digest == key_digest)
        )
