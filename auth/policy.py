"""Casbin RBAC in domains (domain = tenant): the rules live in `casbin_rules`, per tenant.

Each process caches one enforcer per tenant, keyed by the tenant's `policy_version`; every
change bumps the version, so other processes reload on their next request that sees it.
Subjects are `user:<id>` and `service:<id>`; roles are plain names (`hq_admin`, …).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import casbin
from casbin.model import Model
from casbin.persist import Adapter
from sqlalchemy.ext.asyncio import AsyncSession

from auth.models import CasbinRule
from auth.repository import PolicyRepository
from auth.roles import (
    CATALOGUE,
    DEFAULT_ROLES,
    IMPLIES,
    RULE_MAKING,
    STAFF_MANAGING,
    Permission,
)
from tenancy.session import current_tenant

MODEL_TEXT = """
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act
"""


class PolicyError(Exception):
    """A rule change that is not allowed; `code` is a GraphQL error code."""

    def __init__(self, message: str, code: str = "FORBIDDEN") -> None:
        super().__init__(message)
        self.code = code


class _RowsAdapter(Adapter):
    """Feeds rows already read through the tenant-bound session into a Casbin model."""

    def __init__(self, rows: Iterable[CasbinRule]) -> None:
        self._rows = list(rows)

    def load_policy(self, model: Model) -> None:
        for r in self._rows:
            values = [v for v in (r.v0, r.v1, r.v2, r.v3, r.v4, r.v5) if v != ""]
            model.add_policy(r.ptype[0], r.ptype, values)


MAX_MEMOISED_DECISIONS = 50_000


@dataclass
class TenantPolicy:
    """A tenant's loaded enforcer: answers 'may this subject do this?' in process."""

    domain: str
    version: int
    enforcer: casbin.Enforcer
    # Decisions of this policy version (it never changes in place: a change bumps the version
    # and loads a new TenantPolicy). Casbin's matcher costs ~0.3 ms a call; a hit, a dict read.
    _decisions: dict[tuple[str, str, str], bool] = field(default_factory=dict, repr=False)

    def allows(self, subject: str, obj: str, act: str) -> bool:
        key = (subject, obj, act)
        decided = self._decisions.get(key)
        if decided is None:
            if len(self._decisions) >= MAX_MEMOISED_DECISIONS:
                self._decisions.clear()
            decided = self._decisions[key] = bool(
                self.enforcer.enforce(subject, self.domain, obj, act)
            )
        return decided

    def roles_of(self, subject: str) -> list[str]:
        return sorted(self.enforcer.get_roles_for_user_in_domain(subject, self.domain))

    def permissions_of_role(self, role: str) -> set[Permission]:
        return {(p[2], p[3]) for p in self.enforcer.get_filtered_policy(0, role, self.domain)}

    def permissions_of(self, subject: str) -> set[Permission]:
        perms = self.permissions_of_role(subject)
        for role in self.roles_of(subject):
            perms |= self.permissions_of_role(role)
        return perms


_cache: dict[uuid.UUID, TenantPolicy] = {}


def _domain(session: AsyncSession) -> tuple[uuid.UUID, str]:
    tenant_id = current_tenant(session)
    if tenant_id is None:
        raise PolicyError("no tenant bound", "UNAUTHENTICATED")
    return tenant_id, str(tenant_id)


async def load_policy(session: AsyncSession, version: int | None = None) -> TenantPolicy:
    """The bound tenant's enforcer, reloaded only when its policy version moved."""
    tenant_id, domain = _domain(session)
    if version is None:
        version = await PolicyRepository(session).version()
    cached = _cache.get(tenant_id)
    if cached is not None and cached.version == version:
        return cached
    rows = await PolicyRepository(session).rules()
    model = casbin.model.Model()
    model.load_model_from_text(MODEL_TEXT)
    enforcer = casbin.Enforcer(model, _RowsAdapter(rows))
    policy = TenantPolicy(domain, int(version or 0), enforcer)
    _cache[tenant_id] = policy
    return policy


async def _bump(session: AsyncSession) -> None:
    _domain(session)  # refuses an unbound session
    await PolicyRepository(session).bump_version()


async def seed_default_roles(session: AsyncSession) -> None:
    _, domain = _domain(session)
    for role, perms in DEFAULT_ROLES.items():
        for obj, act in sorted(perms):
            session.add(CasbinRule(ptype="p", v0=role, v1=domain, v2=obj, v3=act))
    await _bump(session)
    await session.flush()


async def assign_role(session: AsyncSession, subject: str, role: str) -> None:
    _, domain = _domain(session)
    session.add(CasbinRule(ptype="g", v0=subject, v1=role, v2=domain))
    await _bump(session)
    await session.flush()


async def grant_permissions(
    session: AsyncSession, subject: str, permissions: Iterable[Permission]
) -> None:
    """Direct rules for a subject (service tokens)."""
    _, domain = _domain(session)
    for obj, act in permissions:
        if (obj, act) not in CATALOGUE:
            raise PolicyError(f"unknown permission {obj}:{act}", "BAD_USER_INPUT")
        session.add(CasbinRule(ptype="p", v0=subject, v1=domain, v2=obj, v3=act))
    await _bump(session)
    await session.flush()


def _held(policy: TenantPolicy, granter: str) -> set[Permission]:
    held = policy.permissions_of(granter)
    for perm in list(held):
        held |= IMPLIES.get(perm, set())
    return held


def check_grant(policy: TenantPolicy, granter: str, wanted: set[Permission]) -> None:
    """Changing rules, service tokens and `setStaffRoles`: HQ (`policies:write`) only, and
    never more than the granter holds."""
    if not policy.allows(granter, "policies", "write"):
        raise PolicyError("not allowed to change roles or rules")
    if wanted - _held(policy, granter):
        raise PolicyError("cannot grant a permission you do not hold")


def check_role_grant(policy: TenantPolicy, granter: str, wanted: set[Permission]) -> None:
    """Giving a staff member roles carrying `wanted`: HQ as `check_grant`; a granter who
    manages staff in a scope (branch or region managers) likewise never more than they hold,
    and never a RULE_MAKING permission. The scope itself (which staff, which branches) is
    checked by the caller against the granter's staff scope."""
    if policy.allows(granter, "policies", "write"):
        check_grant(policy, granter, wanted)
        return
    if not any(policy.allows(granter, obj, act) for obj, act in STAFF_MANAGING):
        raise PolicyError("not allowed to change roles or rules")
    if wanted & RULE_MAKING:
        raise PolicyError("only HQ grants roles that manage staff or change rules")
    if wanted - _held(policy, granter):
        raise PolicyError("cannot grant a permission you do not hold")


async def set_user_roles(
    session: AsyncSession, policy: TenantPolicy, granter: str, subject: str, roles: set[str]
) -> None:
    """Replace a user's roles; the granter must hold every permission the new roles carry."""
    known = {p[0] for p in policy.enforcer.get_filtered_policy(1, policy.domain)}
    unknown = roles - known
    if unknown:
        raise PolicyError(f"unknown role {sorted(unknown)[0]}", "BAD_USER_INPUT")
    wanted: set[Permission] = set()
    for role in roles - set(policy.roles_of(subject)):
        wanted |= policy.permissions_of_role(role)
    check_grant(policy, granter, wanted)
    await replace_user_roles(session, policy, subject, roles)


async def replace_user_roles(
    session: AsyncSession, policy: TenantPolicy, subject: str, roles: set[str]
) -> None:
    """Replace a user's roles, the grant already checked by the caller."""
    await PolicyRepository(session).drop_user_roles(subject)
    for role in sorted(roles):
        session.add(CasbinRule(ptype="g", v0=subject, v1=role, v2=policy.domain))
    await _bump(session)
    await session.flush()


async def set_role_permissions(
    session: AsyncSession,
    policy: TenantPolicy,
    granter: str,
    role: str,
    permissions: set[Permission],
) -> None:
    """Replace a role's rules; the granter may only add permissions they hold themselves."""
    bad = permissions - CATALOGUE
    if bad:
        obj, act = sorted(bad)[0]
        raise PolicyError(f"unknown permission {obj}:{act}", "BAD_USER_INPUT")
    check_grant(policy, granter, permissions - policy.permissions_of_role(role))
    await PolicyRepository(session).drop_role_rules(role)
    for obj, act in sorted(permissions):
        session.add(CasbinRule(ptype="p", v0=role, v1=policy.domain, v2=obj, v3=act))
    await _bump(session)
    await session.flush()


async def roles_of_users(
    session: AsyncSession, user_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    """Each user's roles as stored now (this transaction's changes included, unlike a loaded
    policy, which is the one the request started with)."""
    ids = {f"user:{u}": u for u in user_ids}
    out: dict[uuid.UUID, list[str]] = {u: [] for u in ids.values()}
    if not ids:
        return out
    for subject, role in await PolicyRepository(session).role_links(list(ids)):
        out[ids[subject]].append(role)
    return {u: sorted(r) for u, r in out.items()}
