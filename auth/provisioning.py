"""Creating a tenant: the one operation that starts outside any tenant.

It makes the tenant row, its data and blind-index keys (wrapped by the master key), its
access-log chain, the default roles, and its first HQ admin, all in one transaction.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from auth.access_log import start_chain
from auth.models import StaffBranch, StaffUser
from auth.passwords import hash_password
from auth.policy import assign_role, seed_default_roles
from auth.repository import StaffRepository
from domain.errors import BadInput, Conflict
from domain.tenants.branches import BranchService
from domain.tenants.models import Branch, Tenant, TenantKind
from domain.tenants.repository import TenantRepository
from tenancy.keyring import KeyProvider
from tenancy.keystore import create_initial_keys
from tenancy.session import bind_tenant

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class NewTenant:
    tenant: Tenant
    admin: StaffUser
    admin_password: str
    branch: Branch | None = None


def check_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL.match(email) or len(email) > 254:
        raise BadInput("email is not an email address", field="email")
    return email


async def create_tenant(
    session: AsyncSession,
    provider: KeyProvider,
    *,
    slug: str,
    name: str,
    admin_email: str,
    admin_password: str | None = None,
    kind: str = TenantKind.OTHER,
    branch_name: str | None = None,
    branch_city: str = "",
    branch_code: str = "main",
) -> NewTenant:
    if not SLUG.match(slug):
        raise BadInput("slug must be 3-63 lowercase letters, digits or dashes", field="slug")
    if not name.strip():
        raise BadInput("name must not be empty", field="name")
    email = check_email(admin_email)
    if await TenantRepository(session).id_by_slug(slug) is not None:
        raise Conflict("a tenant with this slug exists", field="slug")
    tenant = Tenant(slug=slug, name=name.strip(), kind=str(TenantKind(kind)))
    session.add(tenant)
    await session.flush()
    await bind_tenant(session, tenant.id)
    await create_initial_keys(session, provider)
    await start_chain(session)
    await seed_default_roles(session)
    password = admin_password or secrets.token_urlsafe(12)
    admin = await add_staff(session, email=email, name="HQ admin", password=password)
    await assign_role(session, f"user:{admin.id}", "hq_admin")
    branch = None
    if branch_name is not None:
        branch = await BranchService(session).create(
            code=branch_code, name=branch_name, city=branch_city
        )
    return NewTenant(tenant, admin, password, branch)


async def add_staff(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    password: str,
    branches: list[Branch] | None = None,
) -> StaffUser:
    email = check_email(email)
    if await StaffRepository(session).id_with_email(email) is not None:
        raise Conflict("a staff member with this email exists", field="email")
    user = StaffUser(email=email, display_name=name, password_hash=hash_password(password))
    session.add(user)
    await session.flush()
    for branch in branches or []:
        session.add(StaffBranch(staff_id=user.id, branch_id=branch.id))
    await session.flush()
    return user
