"""Data steps that migrations share: granting a revision's new permissions to existing
tenants' default roles, and giving existing tenants a new default role."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def grant_to_default_roles(
    bind: Connection,
    new_permissions: dict[str, list[tuple[str, str]]],
    new_roles: frozenset[str] = frozenset(),
) -> None:
    """Existing tenants' default roles get the new permissions (roles a chain has deleted
    or never had are left alone, except `new_roles`, which every tenant gets); each tenant's
    policy version moves so processes reload."""
    on_pg = bind.dialect.name == "postgresql"
    rules = sa.table(
        "casbin_rules",
        sa.column("tenant_id", sa.Uuid()),
        sa.column("id", sa.Uuid()),
        *(sa.column(c) for c in ("ptype", "v0", "v1", "v2", "v3", "v4", "v5")),
    )
    tenants = sa.table("tenants", sa.column("id", sa.Uuid()), sa.column("policy_version"))
    for (tid,) in bind.execute(sa.select(tenants.c.id)).all():
        if on_pg:
            bind.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tid)})
        existing = {
            (r.v0, r.v2, r.v3)
            for r in bind.execute(
                sa.select(rules.c.v0, rules.c.v2, rules.c.v3).where(
                    rules.c.tenant_id == tid, rules.c.ptype == "p"
                )
            )
        }
        roles = {role for role, _obj, _act in existing} | new_roles
        rows = [
            {
                "tenant_id": tid,
                "id": uuid.uuid4(),
                "ptype": "p",
                "v0": role,
                "v1": str(tid),
                "v2": obj,
                "v3": act,
                "v4": "",
                "v5": "",
            }
            for role, perms in new_permissions.items()
            if role in roles
            for obj, act in perms
            if (role, obj, act) not in existing
        ]
        if rows:
            bind.execute(rules.insert(), rows)
            bind.execute(
                tenants.update()
                .where(tenants.c.id == tid)
                .values(policy_version=tenants.c.policy_version + 1)
            )


def add_role_to_tenants(bind: Connection, role: str, permissions: list[tuple[str, str]]) -> None:
    """A new default role for every existing tenant (one of that name a chain made itself
    gains the permissions it lacks)."""
    grant_to_default_roles(bind, {role: permissions}, frozenset({role}))


def take_from_default_roles(
    bind: Connection, permissions: dict[str, list[tuple[str, str]]]
) -> None:
    """Existing tenants' roles of these names lose these permissions (where they hold them);
    each tenant whose rules changed gets a new policy version so processes reload."""
    on_pg = bind.dialect.name == "postgresql"
    rules = sa.table(
        "casbin_rules",
        sa.column("tenant_id", sa.Uuid()),
        *(sa.column(c) for c in ("ptype", "v0", "v2", "v3")),
    )
    tenants = sa.table("tenants", sa.column("id", sa.Uuid()), sa.column("policy_version"))
    for (tid,) in bind.execute(sa.select(tenants.c.id)).all():
        if on_pg:
            bind.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tid)})
        removed = 0
        for role, perms in permissions.items():
            for obj, act in perms:
                result = bind.execute(
                    rules.delete().where(
                        rules.c.tenant_id == tid,
                        rules.c.ptype == "p",
                        rules.c.v0 == role,
                        rules.c.v2 == obj,
                        rules.c.v3 == act,
                    )
                )
                removed += result.rowcount or 0
        if removed:
            bind.execute(
                tenants.update()
                .where(tenants.c.id == tid)
                .values(policy_version=tenants.c.policy_version + 1)
            )
