"""Every role × patient operation × row (assigned to me / my branch / other branch) × field
group, through GraphQL: allowed, masked or denied, as the README's role table says."""

from __future__ import annotations

import httpx
import pytest

from api.context import AppState
from tests.support import ROLES, World, build_world, codes, gql, sign_in

# Which of the world's patients each role may see (rows), and how it sees each field group.
ROWS = {
    "hq_admin": {"assigned", "hm", "b1", "b2"},
    "branch_manager": {"assigned", "hm", "b1"},
    "doctor": {"assigned"},
    "health_manager": {"hm"},
    "operator": {"assigned", "hm", "b1"},
    "marketing": {"assigned", "hm", "b1", "b2"},
    "auditor": set(),
}
READ = {  # role -> (contact, health): "full", "masked" or "denied"
    "hq_admin": ("full", "full"),
    "branch_manager": ("full", "full"),
    "doctor": ("full", "full"),
    "health_manager": ("full", "full"),
    "operator": ("full", "denied"),
    "marketing": ("masked", "denied"),
    "auditor": ("denied", "denied"),
}
# Patients in the role's own care (assigned to them): health fields open with no reason; the
# rest of a role's rows answer REASON_REQUIRED until it states a purpose (auth.reasons).
CARE = {"doctor": {"assigned"}, "health_manager": {"hm"}}
WRITE = {  # role -> (contact, health) may be changed, on rows the role may write
    "hq_admin": (True, True),
    "branch_manager": (True, False),
    "doctor": (False, True),
    "health_manager": (True, True),
    "operator": (True, False),
    "marketing": (False, False),
    "auditor": (False, False),
}
WRITE_ROWS = {role: rows for role, rows in ROWS.items() if role not in ("marketing", "auditor")}

READ_ONE = "query($id: ID!) { patient(id: $id) { id phone medicalHistory } }"
STATE = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: QUALITY_REVIEW,
  note: "matrix review") { id } }"""
LIST = "{ patients(first: 100) { totalCount edges { node { id } } } }"
UPDATE = """mutation($id: ID!, $in: UpdatePatientInput!) {
  updatePatient(id: $id, input: $in) { patient { id } } }"""


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"m-{unique}")


@pytest.mark.parametrize("role", ROLES)
async def test_rows_and_fields(client: httpx.AsyncClient, world: World, role: str) -> None:
    token = await sign_in(client, world, role)
    listed = await gql(client, LIST, token=token)
    if not ROWS[role]:
        assert codes(listed) == ["FORBIDDEN"]
    else:
        ids = {e["node"]["id"] for e in listed["data"]["patients"]["edges"]}
        assert ids == {world.gid(k) for k in ROWS[role]}
        assert listed["data"]["patients"]["totalCount"] == len(ROWS[role])

    contact, health = READ[role]
    for key in world.patients:
        result = await gql(client, READ_ONE, {"id": world.gid(key)}, token=token)
        if key not in ROWS[role]:
            expected = "FORBIDDEN" if not ROWS[role] else "NOT_FOUND"
            assert codes(result) == [expected], (role, key, result)
            assert result["data"] is None
            continue
        node = result["data"]["patient"]
        errors = {tuple(e["path"]): e["extensions"]["code"] for e in result.get("errors", [])}
        phone = world.plaintext[key]["phone"]
        if contact == "full":
            assert node["phone"] == phone
        elif contact == "masked":
            assert node["phone"] == f"{phone[3:6]}****{phone[-4:]}"
        else:
            assert node["phone"] is None
            assert errors[("patient", "phone")] == "FORBIDDEN"
        if health == "full":
            if key not in CARE.get(role, set()):
                assert node["medicalHistory"] is None
                assert errors[("patient", "medicalHistory")] == "FORBIDDEN"
                assert not codes(await gql(client, STATE, {"id": world.gid(key)}, token=token))
                result = await gql(client, READ_ONE, {"id": world.gid(key)}, token=token)
                node = result["data"]["patient"]
            assert node["medicalHistory"] == world.plaintext[key]["medical_history"]
        else:
            assert node["medicalHistory"] is None
            assert errors[("patient", "medicalHistory")] == "FORBIDDEN"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("group", ["contact", "health"])
async def test_writes(client: httpx.AsyncClient, world: World, role: str, group: str) -> None:
    token = await sign_in(client, world, role)
    admin = await sign_in(client, world, "hq_admin")
    change = {"contact": {"phone": "+8613700001111"}, "health": {"notes": "changed"}}[group]
    may_write_group = WRITE[role][0 if group == "contact" else 1]
    for key in world.patients:  # HQ checks each write: a review, so it states its purpose
        assert not codes(await gql(client, STATE, {"id": world.gid(key)}, token=admin))
    for key in world.patients:
        result = await gql(client, UPDATE, {"id": world.gid(key), "in": change}, token=token)
        after = await gql(
            client,
            "query($id: ID!) { patient(id: $id) { phone notes } }",
            {"id": world.gid(key)},
            token=admin,
        )
        value = after["data"]["patient"]["phone" if group == "contact" else "notes"]
        wrote = value == next(iter(change.values()))
        if key in WRITE_ROWS.get(role, set()) and may_write_group:
            assert "errors" not in result, (role, key, result)
            assert wrote
            # put it back for the next key's check
            original = world.plaintext[key]["phone" if group == "contact" else "notes"]
            field = "phone" if group == "contact" else "notes"
            await gql(client, UPDATE, {"id": world.gid(key), "in": {field: original}}, token=admin)
        else:
            assert codes(result) in (["FORBIDDEN"], ["NOT_FOUND"]), (role, key, result)
            assert not wrote, (role, key)
