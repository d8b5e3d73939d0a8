"""Test worlds: a tenant with two branches, staff in every role and a few patients, made
through the same services the product uses; and a GraphQL helper."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from api.context import AppState
from api.ids import to_global_id
from auth.models import StaffBranch, StaffUser
from auth.passwords import hash_password
from auth.policy import assign_role
from auth.provisioning import create_tenant
from domain.patients.models import Patient
from domain.patients.service import PatientService
from domain.tenants.models import Branch
from tenancy.keystore import load_cipher

PASSWORD = "correct horse battery"
# One real Argon2id hash of PASSWORD for every test staff member: hashing costs a quarter of a
# second here, and worlds are built hundreds of times. Sign-in still verifies it for real.
_PASSWORD_HASH: list[str] = []


def password_hash() -> str:
    if not _PASSWORD_HASH:
        _PASSWORD_HASH.append(hash_password(PASSWORD))
    return _PASSWORD_HASH[0]


ROLES = [
    "hq_admin",
    "branch_manager",
    "doctor",
    "health_manager",
    "operator",
    "marketing",
    "auditor",
]


@dataclass
class World:
    slug: str
    tenant_id: Any
    branches: dict[str, Branch] = field(default_factory=dict)
    staff: dict[str, Any] = field(default_factory=dict)  # role -> StaffUser
    patients: dict[str, Patient] = field(default_factory=dict)
    plaintext: dict[str, dict[str, str]] = field(default_factory=dict)

    def email(self, role: str) -> str:
        return f"{role.replace('_', '-')}@{self.slug}.test"

    def gid(self, key: str) -> str:
        return to_global_id("Patient", self.patients[key].id)

    def staff_gid(self, role: str) -> str:
        return to_global_id("Staff", self.staff[role].id)

    def branch_gid(self, key: str) -> str:
        return to_global_id("Branch", self.branches[key].id)


# Every personal value a test world seeded: no log line of the whole suite may hold one
# (tests/conftest.py checks at the end of the run).
SEEDED: set[str] = set()
# What every seeded value contains, for a cheap first pass over many log lines.
# WeCom external user ids that tests/wecom/test_groups.py seeds start "wmGRP".
SEEDED_MARKS = ("测试患者", "history-", "allergy-", "diagnosis-", "note-", "+86139", "wmGRP")


def patient_values(n: int, tag: str) -> dict[str, str]:
    values = {
        "name": f"测试患者{tag}{n}",
        "phone": f"+86139{abs(hash((tag, n))) % 10**8:08d}",
        "medical_history": f"history-{tag}-{n} 高血压",
        "allergies": f"allergy-{tag}-{n} 青霉素",
        "diagnoses": f"diagnosis-{tag}-{n}",
        "notes": f"note-{tag}-{n}",
    }
    SEEDED.update(values.values())
    return values


async def build_world(owner: AppState, slug: str) -> World:
    """Branches b1, b2; one staff member per role (branch roles work in b1); patients:
    `assigned` (b1, assigned to the doctor), `hm` (b1, assigned to the health manager),
    `b1` (b1, unassigned), `b2` (b2, unassigned)."""
    async with owner.sessions() as session, session.begin():
        created = await create_tenant(
            session,
            owner.key_provider,
            slug=slug,
            name=f"Chain {slug}",
            admin_email=f"hq-admin@{slug}.test",
            admin_password=PASSWORD,
        )
        world = World(slug, created.tenant.id)
        world.staff["hq_admin"] = created.admin
        for key in ("b1", "b2"):
            branch = Branch(code=key, name=f"Branch {key}", city="上海")
            session.add(branch)
            world.branches[key] = branch
        await session.flush()
        for role in ROLES[1:]:
            at = (
                [world.branches["b1"]]
                if role in ("branch_manager", "doctor", "health_manager", "operator")
                else []
            )
            user = StaffUser(
                email=world.email(role), display_name=role, password_hash=password_hash()
            )
            session.add(user)
            await session.flush()
            session.add_all(StaffBranch(staff_id=user.id, branch_id=b.id) for b in at)
            await assign_role(session, f"user:{user.id}", role)
            world.staff[role] = user
        service = PatientService(session, await load_cipher(session, owner.key_provider))
        specs = {
            "assigned": ("b1", world.staff["doctor"]),
            "hm": ("b1", world.staff["health_manager"]),
            "b1": ("b1", None),
            "b2": ("b2", None),
        }
        for n, (key, (branch, staff)) in enumerate(specs.items()):
            values = patient_values(n, slug)
            world.plaintext[key] = values
            world.patients[key] = await service.create(
                {**values, "home_branch_id": world.branches[branch].id, "assigned_staff": staff}
            )
    return world


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    operation_name: str | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation_name:
        body["operationName"] = operation_name
    response = await client.post("/graphql", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


SIGN_IN = """mutation($t: String!, $e: String!, $p: String!) {
  signIn(tenant: $t, email: $e, password: $p) { accessToken refreshToken expiresIn } }"""


async def sign_in(client: httpx.AsyncClient, world: World, role: str) -> str:
    result = await gql(client, SIGN_IN, {"t": world.slug, "e": world.email(role), "p": PASSWORD})
    assert "errors" not in result, result
    return result["data"]["signIn"]["accessToken"]


def ok(result: dict[str, Any]) -> dict[str, Any]:
    """The data of a response that must have no errors."""
    assert "errors" not in result, result
    return result["data"]


def codes(result: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in result.get("errors", [])]


async def half_written(owner_url: str, world: World) -> list[str]:
    """Patients of the world's tenant admitted through the API without an access-log entry
    naming them (the world's own were made by the services directly, with no request to log).
    Read as the owner on PostgreSQL, straight from the tables."""
    conn = await asyncpg.connect(owner_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT p.id::text FROM patients p WHERE p.tenant_id = $1 AND NOT EXISTS ("
            " SELECT 1 FROM access_log a WHERE a.tenant_id = p.tenant_id"
            " AND a.patient_ids LIKE '%' || p.id::text || '%')",
            world.tenant_id,
        )
        seeded = {str(p.id) for p in world.patients.values()}
        return [r[0] for r in rows if r[0] not in seeded]
    finally:
        await conn.close()


async def make_tag(
    client: httpx.AsyncClient, token: str, group: str, name: str, health: bool = False
) -> str:
    """A new tag in a new group (a health group when `health`), through the API; its id."""
    made = await gql(
        client,
        "mutation($n: String!, $h: Boolean!) { createTagGroup(name: $n, isHealth: $h) { id } }",
        {"n": group, "h": health},
        token=token,
    )
    tag = await gql(
        client,
        "mutation($g: ID!, $n: String!) { createTag(groupId: $g, name: $n) { id } }",
        {"g": made["data"]["createTagGroup"]["id"], "n": name},
        token=token,
    )
    return tag["data"]["createTag"]["id"]
