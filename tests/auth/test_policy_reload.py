"""Casbin rules are cached per process and reloaded when another process changes them."""

from __future__ import annotations

import httpx
from sqlalchemy import update

from api.context import AppState
from auth.models import CasbinRule
from domain.tenants.models import Tenant
from tenancy.session import bind_tenant
from tests.support import build_world, codes, gql, sign_in

Q = "query($id: ID!) { patient(id: $id) { medicalHistory } }"


async def test_rule_change_elsewhere_is_seen_on_next_request(
    client: httpx.AsyncClient, owner_state: AppState, unique: str
) -> None:
    world = await build_world(owner_state, f"pr-{unique}")
    token = await sign_in(client, world, "operator")
    assert codes(await gql(client, Q, {"id": world.gid("b1")}, token=token)) == ["FORBIDDEN"]

    # Another process writes a rule (as set_role_permissions does) …
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        s.add(
            CasbinRule(
                ptype="p", v0="operator", v1=str(world.tenant_id), v2="fields:health", v3="read"
            )
        )
    # … which this process does not see while the policy version stands (it is cached) …
    assert codes(await gql(client, Q, {"id": world.gid("b1")}, token=token)) == ["FORBIDDEN"]
    # … and sees on the next request once the version moves.
    async with owner_state.sessions() as s, s.begin():
        await s.execute(
            update(Tenant)
            .where(Tenant.id == world.tenant_id)
            .values(policy_version=Tenant.policy_version + 1)
        )
    # The rule applies now: health fields of a patient outside the operator's own care ask
    # for a stated purpose (auth.reasons), and open once one is stated.
    result = await gql(client, Q, {"id": world.gid("b1")}, token=token)
    assert result["errors"][0]["extensions"] == {"code": "FORBIDDEN", "reason": "REASON_REQUIRED"}
    state = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: CARE,
      note: "covering") { id } }"""
    assert not codes(await gql(client, state, {"id": world.gid("b1")}, token=token))
    result = await gql(client, Q, {"id": world.gid("b1")}, token=token)
    assert result["data"]["patient"]["medicalHistory"] == world.plaintext["b1"]["medical_history"]
