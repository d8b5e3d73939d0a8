"""WeCom external-contact callbacks, with messages made by wechatpy as WeCom makes them:
valid ones act once (an exact resend answers success and does nothing again); forged, stale,
foreign and malformed ones are refused and change nothing."""

from __future__ import annotations

import random
import string
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import xmltodict
from sqlalchemy import select
from wechatpy.crypto import _get_signature
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

from api.context import AppState
from auth.access_log import AccessLogEntry
from domain.wecom.models import WecomApp
from tenancy.session import bind_tenant
from tests.support import World, build_world, codes, gql, sign_in

CORP = "ww0123456789abcdef"
CONFIGURE = (
    "mutation($c: String!, $t: String!, $k: String!, $b: ID!) { configureWecom(corpId: $c, "
    "token: $t, encodingAesKey: $k, defaultBranchId: $b) { corpId callbackPath "
    "defaultBranch { code } } }"
)
COUNT = "{ patients(first: 100) { totalCount edges { node { id poolTier sourceChannel } } } }"


def _secret(n: int, rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


class Wecom:
    """WeCom's side of one tenant's app: makes signed, encrypted callbacks."""

    def __init__(self, slug: str, seed: str) -> None:
        rng = random.Random(seed)
        self.slug, self.token, self.key = slug, _secret(16, rng), _secret(43, rng)
        self.crypto = WeChatCrypto(self.token, self.key, CORP)

    def event(self, change: str, external: str, state: str = "", at: int = 1_764_000_000) -> str:
        return (
            f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]>"
            f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[change_external_contact]]></Event>"
            f"<ChangeType><![CDATA[{change}]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID>"
            f"<ExternalUserID><![CDATA[{external}]]></ExternalUserID>"
            f"<State><![CDATA[{state}]]></State><WelcomeCode><![CDATA[w]]></WelcomeCode></xml>"
        )

    def request(self, plain: str, timestamp: int | None = None) -> tuple[str, str]:
        ts = str(timestamp or int(time.time()))
        nonce = _secret(10, random.Random())
        body = self.crypto.encrypt_message(plain, nonce, ts)
        signature = xmltodict.parse(body)["xml"]["MsgSignature"]
        query = urlencode({"msg_signature": signature, "timestamp": ts, "nonce": nonce})
        return f"/wecom/{self.slug}/callback?{query}", body


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"w-{unique}")


async def _configure(client: httpx.AsyncClient, world: World, wecom: Wecom) -> dict[str, Any]:
    admin = await sign_in(client, world, "hq_admin")
    variables = {"c": CORP, "t": wecom.token, "k": wecom.key, "b": world.branch_gid("b2")}
    return await gql(client, CONFIGURE, variables, token=admin)


async def _state(client: httpx.AsyncClient, owner: AppState, world: World) -> tuple[Any, list[str]]:
    """The patients, and what the WeCom actor wrote to the access log."""
    admin = await sign_in(client, world, "hq_admin")
    patients = (await gql(client, COUNT, token=admin))["data"]["patients"]
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        stmt = select(AccessLogEntry.action).where(AccessLogEntry.actor_id == "wecom")
        logged = list((await s.scalars(stmt)).all())
    return patients, logged


async def test_configuration_is_sealed_and_kept_to_hq(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    wecom = Wecom(world.slug, "cfg")
    result = await _configure(client, world, wecom)
    assert result["data"]["configureWecom"] == {
        "corpId": CORP,
        "callbackPath": f"/wecom/{world.slug}/callback",
        "defaultBranch": {"code": "b2"},
    }
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        app = await s.scalar(select(WecomApp))
    assert wecom.token.encode() not in app.token_ct
    assert wecom.key.encode() not in app.aes_key_ct
    operator = await sign_in(client, world, "operator")
    variables = {"c": CORP, "t": "abc", "k": wecom.key, "b": world.branch_gid("b1")}
    assert codes(await gql(client, CONFIGURE, variables, token=operator)) == ["FORBIDDEN"]
    admin = await sign_in(client, world, "hq_admin")
    bad = {**variables, "k": "short"}
    assert codes(await gql(client, CONFIGURE, bad, token=admin)) == ["BAD_USER_INPUT"]
    seen = await gql(client, "{ wecomSettings { corpId } }", token=admin)
    assert seen["data"]["wecomSettings"] == {"corpId": CORP}


async def test_url_check(client: httpx.AsyncClient, world: World) -> None:
    wecom = Wecom(world.slug, "url")
    await _configure(client, world, wecom)
    ts, nonce = str(int(time.time())), "n0nce"
    echo = PrpCrypto(wecom.crypto.key).encrypt("echo-4711", CORP).decode()
    signature = _get_signature(wecom.token, ts, nonce, echo)
    params = {"msg_signature": signature, "timestamp": ts, "nonce": nonce, "echostr": echo}
    ok = await client.get(f"/wecom/{world.slug}/callback", params=params)
    assert (ok.status_code, ok.text) == (200, "echo-4711")
    forged = await client.get(
        f"/wecom/{world.slug}/callback", params={**params, "msg_signature": "0" * 40}
    )
    assert (forged.status_code, forged.text) == (403, "refused")


async def test_a_new_contact_joins_the_pool_once(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    wecom = Wecom(world.slug, "add")
    await _configure(client, world, wecom)
    (before, logged) = await _state(client, owner_state, world)
    event = wecom.event("add_external_contact", "wmEXT0001", state="xhs-qr-2026")
    url, body = wecom.request(event)
    done = await client.post(url, content=body)
    assert (done.status_code, done.text) == (200, "success")
    after, logged_after = await _state(client, owner_state, world)
    assert after["totalCount"] == before["totalCount"] + 1
    new = [
        e["node"] for e in after["edges"] if e["node"] not in [x["node"] for x in before["edges"]]
    ]
    assert new[0]["poolTier"] == "STRONG_PRIVATE"
    assert new[0]["sourceChannel"] == "xhs-qr-2026"
    assert logged_after == [*logged, "create"]

    # WeCom delivers the same event again (new nonce, new signature): nothing changes twice.
    again_url, again_body = wecom.request(event)
    again = await client.post(again_url, content=again_body)
    assert (again.status_code, again.text) == (200, "success")
    # The very same request resent (WeCom's retry of a slow answer) succeeds and does nothing.
    resend = await client.post(url, content=body)
    assert (resend.status_code, resend.text) == (200, "success")
    assert await _state(client, owner_state, world) == (after, logged_after)


async def test_known_patient_is_linked_then_unfollowed(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    wecom = Wecom(world.slug, "link")
    await _configure(client, world, wecom)
    admin = await sign_in(client, world, "hq_admin")
    await gql(
        client,
        'mutation($id: ID!) { updatePatient(id: $id, input: {wecomExternalId: "wmKNOWN"}) '
        "{ patient { id } } }",
        {"id": world.gid("b1")},
        token=admin,
    )
    tier = "query($id: ID!) { patient(id: $id) { poolTier } }"
    for change, expected in (
        ("add_external_contact", "STRONG_PRIVATE"),
        ("del_follow_user", "SEMI_PRIVATE"),
    ):
        url, body = wecom.request(wecom.event(change, "wmKNOWN"))
        assert (await client.post(url, content=body)).status_code == 200
        seen = await gql(client, tier, {"id": world.gid("b1")}, token=admin)
        assert seen["data"]["patient"]["poolTier"] == expected
    total = (await gql(client, COUNT, token=admin))["data"]["patients"]["totalCount"]
    assert total == len(world.patients)


@pytest.mark.parametrize(
    "attack",
    [
        "forged signature",
        "stale",
        "other tenant's key",
        "same token, other key",
        "malformed xml",
        "unknown tenant",
        "not configured",
    ],
)
async def test_bad_callbacks_change_nothing(
    client: httpx.AsyncClient, owner_state: AppState, world: World, unique: str, attack: str
) -> None:
    wecom = Wecom(world.slug, "bad")
    await _configure(client, world, wecom)
    other = await build_world(owner_state, f"w2-{unique}")
    theirs = Wecom(other.slug, "theirs")
    await _configure(client, other, theirs)
    event = wecom.event("add_external_contact", "wmATTACK")
    before = await _state(client, owner_state, world)
    expected = 403
    if attack == "forged signature":
        url, body = wecom.request(event)
        url = url.replace("msg_signature=", "msg_signature=0")
    elif attack == "stale":
        url, body = wecom.request(event, timestamp=int(time.time()) - 3600)
    elif attack == "other tenant's key":
        url, body = theirs.request(event)
        url = url.replace(other.slug, world.slug)
    elif attack == "same token, other key":
        forger = Wecom(world.slug, "forger")
        forger.token = wecom.token
        forger.crypto = WeChatCrypto(wecom.token, forger.key, CORP)
        url, body = forger.request(event)
        expected = 400  # right signature (the token leaked), content not ours to read
    elif attack == "malformed xml":
        url, _ = wecom.request(event)
        body = "<xml><Encrypt>unclosed"
        expected = 400
    elif attack == "unknown tenant":
        url, body = wecom.request(event)
        url = url.replace(world.slug, f"nobody-{unique}")
    else:  # a tenant with no WeCom app
        third = await build_world(owner_state, f"w3-{unique}")
        url, body = Wecom(third.slug, "none").request(event)
    response = await client.post(url, content=body)
    assert response.status_code == expected, response.text
    assert "Traceback" not in response.text and world.slug not in response.text
    assert await _state(client, owner_state, world) == before
