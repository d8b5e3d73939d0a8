"""Sign-in and tokens through the API: forged, expired, wrong-key, wrong-tenant and `alg: none`
tokens are refused; revoked refresh tokens mint nothing; disabled users stop at once; nobody
grants more than they hold."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest

from api.context import AppState
from auth.signing_keys import SigningKeys
from auth.tokens import AUDIENCE, ISSUER, issue_access_token
from tests.support import PASSWORD, SIGN_IN, World, build_world, codes, gql, sign_in

ME = "{ me { roles tenant { slug } } }"


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"t-{unique}")


def _kid(header: str) -> str:
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def _public_key_bytes(client: httpx.AsyncClient) -> bytes:
    """The verifying key's public bytes: the classic HS256 key-confusion attack uses them."""
    from cryptography.hazmat.primitives import serialization

    keys = client._transport.app.state.patientpool.signing_keys  # type: ignore[attr-defined]
    public = keys._verifiers[keys.signing_kid]
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _hs256(claims: dict[str, object], kid: str, secret: bytes) -> str:
    """Signed by hand: PyJWT itself refuses a public key as an HMAC secret."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def test_sign_in_refresh_sign_out(client: httpx.AsyncClient, world: World) -> None:
    result = await gql(
        client, SIGN_IN, {"t": world.slug, "e": world.email("doctor"), "p": PASSWORD}
    )
    tokens = result["data"]["signIn"]
    assert (await gql(client, ME, token=tokens["accessToken"]))["data"]["me"]["roles"] == ["doctor"]
    refresh_q = (
        "mutation($r: String!) { refreshTokens(refreshToken: $r) { accessToken refreshToken } }"
    )
    new = (await gql(client, refresh_q, {"r": tokens["refreshToken"]}))["data"]["refreshTokens"]
    # the used refresh token is spent; presenting it again also ends the new session (theft)
    again = await gql(client, refresh_q, {"r": tokens["refreshToken"]})
    assert codes(again) == ["UNAUTHENTICATED"]
    assert codes(await gql(client, refresh_q, {"r": new["refreshToken"]})) == ["UNAUTHENTICATED"]
    assert codes(await gql(client, ME, token=new["accessToken"])) == ["UNAUTHENTICATED"]


async def test_sign_out_revokes(client: httpx.AsyncClient, world: World) -> None:
    result = await gql(
        client, SIGN_IN, {"t": world.slug, "e": world.email("operator"), "p": PASSWORD}
    )
    tokens = result["data"]["signIn"]
    assert (await gql(client, "mutation { signOut }", token=tokens["accessToken"]))["data"] == {
        "signOut": True
    }
    assert codes(await gql(client, ME, token=tokens["accessToken"])) == ["UNAUTHENTICATED"]
    refresh_q = "mutation($r: String!) { refreshTokens(refreshToken: $r) { accessToken } }"
    assert codes(await gql(client, refresh_q, {"r": tokens["refreshToken"]})) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    ("tenant", "email", "password"),
    [
        ("right", "right", "wrong password"),
        ("right", "nobody@x.test", PASSWORD),
        ("no-such-tenant", "right", PASSWORD),
    ],
)
async def test_sign_in_failures_are_generic(
    client: httpx.AsyncClient, world: World, tenant: str, email: str, password: str
) -> None:
    variables = {
        "t": world.slug if tenant == "right" else tenant,
        "e": world.email("doctor") if email == "right" else email,
        "p": password,
    }
    result = await gql(client, SIGN_IN, variables)
    assert codes(result) == ["UNAUTHENTICATED"]
    assert result["errors"][0]["message"] == "invalid credentials"


async def test_lockout_after_repeated_failures(client: httpx.AsyncClient, world: World) -> None:
    for _ in range(5):
        await gql(client, SIGN_IN, {"t": world.slug, "e": world.email("operator"), "p": "bad"})
    locked = await gql(
        client, SIGN_IN, {"t": world.slug, "e": world.email("operator"), "p": PASSWORD}
    )
    assert codes(locked) == ["UNAUTHENTICATED"]


async def test_rate_limited_per_account(client: httpx.AsyncClient, world: World) -> None:
    results = [
        await gql(client, SIGN_IN, {"t": world.slug, "e": world.email("marketing"), "p": "bad"})
        for _ in range(11)
    ]
    assert codes(results[-1]) == ["RATE_LIMITED"]


async def test_forged_tokens_refused(
    client: httpx.AsyncClient, world: World, owner_state: AppState, unique: str
) -> None:
    good = await sign_in(client, world, "hq_admin")
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other = await build_world(owner_state, f"t2-{unique}")
    now = int(time.time())
    stranger = SigningKeys.from_jwks_json(
        SigningKeys.generate_jwks_json(
            kid=claims
            and json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
        )
    )
    forged = {
        "payload altered": f"{header}.{_b64({**claims, 'tid': str(other.tenant_id)})}.{signature}",
        "signature altered": f"{header}.{payload}.{signature[:-4]}AAAA",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg none with kid": f"{_b64({'alg': 'none', 'kid': 'x'})}.{payload}.",
        "HS256 with public key": _hs256(claims, _kid(header), _public_key_bytes(client)),
        "another key, same kid": issue_access_token(
            stranger,
            tenant_id=world.tenant_id,
            user_id=world.staff["hq_admin"].id,
            session_id=None,
            token_version=1,
        )[0],
        "expired": issue_access_token(
            client._transport.app.state.patientpool.signing_keys,  # type: ignore[attr-defined]
            tenant_id=world.tenant_id,
            user_id=world.staff["hq_admin"].id,
            session_id=None,
            token_version=1,
            now=now - 3600,
        )[0],
        "wrong tenant": issue_access_token(
            client._transport.app.state.patientpool.signing_keys,  # type: ignore[attr-defined]
            tenant_id=other.tenant_id,
            user_id=world.staff["hq_admin"].id,
            session_id=None,
            token_version=1,
        )[0],
        "missing tid": client._transport.app.state.patientpool.signing_keys.sign(  # type: ignore[attr-defined]
            {
                "sub": str(world.staff["hq_admin"].id),
                "iat": now,
                "exp": now + 60,
                "iss": ISSUER,
                "aud": AUDIENCE,
                "ver": 1,
            }
        ),
        "garbage": "not.a.token",
        "random user": issue_access_token(
            client._transport.app.state.patientpool.signing_keys,  # type: ignore[attr-defined]
            tenant_id=world.tenant_id,
            user_id=uuid.uuid4(),
            session_id=None,
            token_version=1,
        )[0],
    }
    for name, token in forged.items():
        result = await gql(client, ME, token=token)
        assert codes(result) == ["UNAUTHENTICATED"], name
        assert result["data"] is None, name


async def test_disabled_user_and_password_change(client: httpx.AsyncClient, world: World) -> None:
    admin = await sign_in(client, world, "hq_admin")
    doctor = await sign_in(client, world, "doctor")
    disable = "mutation($s: ID!, $a: Boolean!) { setStaffActive(staffId: $s, active: $a) }"
    assert "errors" not in await gql(
        client, disable, {"s": world.staff_gid("doctor"), "a": False}, token=admin
    )
    assert codes(await gql(client, ME, token=doctor)) == ["UNAUTHENTICATED"]
    assert codes(
        await gql(client, SIGN_IN, {"t": world.slug, "e": world.email("doctor"), "p": PASSWORD})
    ) == ["UNAUTHENTICATED"]
    operator = await sign_in(client, world, "operator")
    change = 'mutation { changePassword(currentPassword: "%s", newPassword: "a new long one") }'
    assert (await gql(client, change % PASSWORD, token=operator))["data"] == {
        "changePassword": True
    }
    assert codes(await gql(client, ME, token=operator)) == ["UNAUTHENTICATED"]


async def test_no_privilege_escalation(
    client: httpx.AsyncClient, world: World, owner_state: AppState, unique: str
) -> None:
    manager = await sign_in(client, world, "branch_manager")
    admin = await sign_in(client, world, "hq_admin")
    roles_q = (
        "mutation($s: ID!, $r: [String!]!) { setStaffRoles(staffId: $s, roles: $r) { roles } }"
    )
    # A branch manager cannot grant themselves (or anyone) hq_admin.
    me = world.staff_gid("branch_manager")
    assert codes(await gql(client, roles_q, {"s": me, "r": ["hq_admin"]}, token=manager)) == [
        "FORBIDDEN"
    ]
    assert codes(
        await gql(
            client, roles_q, {"s": world.staff_gid("operator"), "r": ["hq_admin"]}, token=manager
        )
    ) == ["FORBIDDEN"]
    # An HQ admin cannot hand out the auditor's access-log permissions they do not hold.
    assert codes(
        await gql(
            client, roles_q, {"s": world.staff_gid("operator"), "r": ["auditor"]}, token=admin
        )
    ) == ["FORBIDDEN"]
    grant = (
        'mutation { setRolePermissions(role: "operator", permissions: '
        '[{object: "accesslog", action: "read"}]) { name } }'
    )
    assert codes(await gql(client, grant, token=admin)) == ["FORBIDDEN"]
    # …but can move people between roles they hold the permissions of.
    ok = await gql(
        client, roles_q, {"s": world.staff_gid("operator"), "r": ["branch_manager"]}, token=admin
    )
    assert ok["data"]["setStaffRoles"]["roles"] == ["branch_manager"]
    operator = await sign_in(client, world, "operator")
    assert (await gql(client, ME, token=operator))["data"]["me"]["roles"] == ["branch_manager"]
    # An HQ admin of another tenant cannot touch this tenant's staff.
    other = await build_world(owner_state, f"e2-{unique}")
    other_admin = await sign_in(client, other, "hq_admin")
    assert codes(
        await gql(
            client, roles_q, {"s": world.staff_gid("doctor"), "r": ["operator"]}, token=other_admin
        )
    ) == ["NOT_FOUND"]


async def test_service_token_is_scoped(client: httpx.AsyncClient, world: World) -> None:
    admin = await sign_in(client, world, "hq_admin")
    made = await gql(
        client,
        'mutation { createServiceToken(name: "mini-program", permissions: '
        '[{object: "branches", action: "read"}]) { token } }',
        token=admin,
    )
    token = made["data"]["createServiceToken"]["token"]
    assert (await gql(client, "{ me { tenant { slug } roles } }", token=token))["data"]["me"] == {
        "tenant": {"slug": world.slug},
        "roles": [],
    }
    assert codes(await gql(client, "{ patients { totalCount } }", token=token)) == ["FORBIDDEN"]
    forged = token[:-6] + "AAAAAA"
    assert codes(await gql(client, ME, token=forged)) == ["UNAUTHENTICATED"]


async def test_service_token_records_events_in_its_own_tenant_only(
    client: httpx.AsyncClient, world: World, owner_state: AppState, unique: str
) -> None:
    """A mini-program backend's token with events:write records events for any patient of its
    tenant (auth.guard.event_scope); another tenant's patient is unknown to it, and a token
    without the permission is refused."""
    other = await build_world(owner_state, f"t2-{unique}")
    admin = await sign_in(client, world, "hq_admin")
    make = (
        'mutation($p: [PermissionInput!]!) { createServiceToken(name: "backend", '
        "permissions: $p) { token } }"
    )
    events = [{"object": "events", "action": "write"}]
    writer = (await gql(client, make, {"p": events}, token=admin))["data"]["createServiceToken"]
    reader = (
        await gql(client, make, {"p": [{"object": "branches", "action": "read"}]}, token=admin)
    )["data"]["createServiceToken"]
    record = "mutation($e: [EventInput!]!) { recordEvents(events: $e) { inserted } }"

    def event(patient: str) -> dict[str, object]:
        return {
            "clientEventId": f"svc-{patient}",
            "patientId": patient,
            "type": "READ_ARTICLE",
            "occurredAt": "2026-11-30T10:00:00+08:00",
        }

    mine = await gql(client, record, {"e": [event(world.gid("b1"))]}, token=writer["token"])
    assert mine["data"]["recordEvents"] == {"inserted": 1}
    theirs = await gql(client, record, {"e": [event(other.gid("b1"))]}, token=writer["token"])
    assert codes(theirs) == ["NOT_FOUND"]
    refused = await gql(client, record, {"e": [event(world.gid("b1"))]}, token=reader["token"])
    assert codes(refused) == ["FORBIDDEN"]
