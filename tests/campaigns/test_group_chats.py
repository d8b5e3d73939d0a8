"""Customer groups against the stand-in WeCom API: the resync adds missing members and
removes departed ones (and dismisses groups WeCom no longer lists); a campaign to a group
creates exactly one group-message task (chat_type group) for the group's owner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from api.context import AppState
from domain.campaigns.backends import WecomError
from process.group_sync import NotConfigured, sync_tenant
from tenancy.session import tenant_session
from tests.campaigns.conftest import add_patients, configure_wecom, tick
from tests.campaigns.standin import STAFF, Chat, StandIn
from tests.support import World, build_world, codes, gql, ok, sign_in

SHANGHAI = ZoneInfo("Asia/Shanghai")

GROUPS = (
    "{ groupChats(first: 10) { totalCount edges { node { id name ownerWecomUserId status "
    'memberCount owner { displayName } joined(since: "2020-01-01T00:00:00Z") '
    'left(since: "2020-01-01T00:00:00Z") members(first: 50) { edges { node { id } } } '
    "campaigns { status } } } } }"
)
CREATE = """mutation($i: GroupChatCampaignInput!) { createGroupChatCampaign(input: $i) {
  id status } }"""
LINK = """mutation($s: ID!, $u: String!) { linkWecomStaff(staffId: $s, wecomUserId: $u) {
  id } }"""


async def _groups(client: httpx.AsyncClient, token: str) -> dict[str, dict[str, Any]]:
    edges = ok(await gql(client, GROUPS, token=token))["groupChats"]["edges"]
    return {e["node"]["name"]: e["node"] for e in edges}


def _bound(state: AppState, world: World) -> Any:
    return partial(tenant_session, state.sessions, world.tenant_id)


async def _sync(state: AppState, world: World, url: str) -> Any:
    return await sync_tenant(_bound(state, world), state.key_provider, url)


async def test_resync_adds_missing_members_and_removes_departed_ones(
    cclient: httpx.AsyncClient,
    sending_state: AppState,
    owner_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    await configure_wecom(cclient, world)
    people = await add_patients(owner_state, world, 3, wecom=True)
    a, b, c = (p.external or "" for p in people)
    fake.chats["wrMAMA"] = Chat("孕妈群", STAFF, [(STAFF, 1), (a, 2), (b, 2), ("wmNOPATIENT", 2)])
    fake.chats["wrTEETH"] = Chat("正畸交流群", "lisi", [(c, 2)])
    progress: list[str] = []
    first = await sync_tenant(
        _bound(sending_state, world), sending_state.key_provider, url, progress.append
    )
    assert (first.groups, first.joined, first.left, first.dismissed) == (2, 4, 0, 0)
    assert progress[0] == "2 groups listed by WeCom" and len(progress) == 3
    admin = await sign_in(cclient, world, "hq_admin")
    seen = await _groups(cclient, admin)
    mama = seen["孕妈群"]
    assert (mama["ownerWecomUserId"], mama["memberCount"], mama["owner"]) == (STAFF, 3, None)
    assert {e["node"]["id"] for e in mama["members"]["edges"]} == {people[0].gid, people[1].gid}

    # b left, c joined the first group; the second was dismissed in WeCom.
    fake.chats["wrMAMA"].members = [(STAFF, 1), (a, 2), (c, 2), ("wmNOPATIENT", 2)]
    del fake.chats["wrTEETH"]
    second = await _sync(sending_state, world, url)
    assert (second.groups, second.joined, second.left, second.dismissed) == (1, 1, 1, 1)
    seen = await _groups(cclient, admin)
    mama = seen["孕妈群"]
    assert (mama["memberCount"], mama["joined"], mama["left"]) == (3, 4, 1)
    assert {e["node"]["id"] for e in mama["members"]["edges"]} == {people[0].gid, people[2].gid}
    assert (seen["正畸交流群"]["status"], seen["正畸交流群"]["memberCount"]) == ("DISMISSED", 0)
    # In line already: a third run changes nothing.
    third = await _sync(sending_state, world, url)
    assert (third.joined, third.left, third.dismissed) == (0, 0, 0)

    # The owner, once linked to a staff member, is named and sees their group.
    ok(await gql(cclient, LINK, {"s": world.staff_gid("doctor"), "u": STAFF}, token=admin))
    assert (await _groups(cclient, admin))["孕妈群"]["owner"] == {"displayName": "doctor"}
    doctor = await sign_in(cclient, world, "doctor")
    assert set(await _groups(cclient, doctor)) == {"孕妈群"}
    operator = await sign_in(cclient, world, "operator")
    bad = {"s": world.staff_gid("doctor"), "u": "张 三"}
    assert codes(await gql(cclient, LINK, bad, token=admin)) == ["BAD_USER_INPUT"]
    assert codes(await gql(cclient, LINK, bad | {"u": "x"}, token=operator)) == ["FORBIDDEN"]


async def test_resync_needs_the_secret_and_reports_wecom_failures(
    cclient: httpx.AsyncClient,
    sending_state: AppState,
    owner_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
    unique: str,
) -> None:
    fake, url = provider
    bare = await build_world(owner_state, f"cg-{unique}")
    with pytest.raises(NotConfigured):
        await _sync(sending_state, bare, url)
    await configure_wecom(cclient, world)
    fake.chats["wrX"] = Chat("x", STAFF, [])
    with pytest.raises(WecomError):
        await _sync(sending_state, world, f"{url}/nowhere")


async def test_a_group_campaign_sends_one_group_task(
    cclient: httpx.AsyncClient,
    sending_state: AppState,
    owner_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    await configure_wecom(cclient, world)
    people = await add_patients(owner_state, world, 2, wecom=True)
    fake.chats["wrCAMP"] = Chat("复诊群", STAFF, [(p.external or "", 2) for p in people])
    await _sync(sending_state, world, url)
    marketing = await sign_in(cclient, world, "marketing")
    group = (await _groups(cclient, marketing))["复诊群"]
    now = datetime.now(UTC)
    values = {
        "groupChatId": group["id"],
        "name": "春季复诊",
        "content": "春季复诊季：群内预约享免费检查",
        "windowStart": (now - timedelta(minutes=1)).isoformat(),
        "windowEnd": (now + timedelta(days=2)).isoformat(),
    }
    created = ok(await gql(cclient, CREATE, {"i": values}, token=marketing))
    assert created["createGroupChatCampaign"]["status"] == "SCHEDULED"

    before = len(fake.tasks)
    # The next noon in Shanghai, inside the window: the chain's default quiet hours hold at
    # night, so a pass run then (as CI may run it) would rightly send nothing yet.
    noon = now.astimezone(SHANGHAI).replace(hour=12, minute=0, second=0, microsecond=0)
    noon = (noon if noon > now else noon + timedelta(days=1)).astimezone(UTC)
    result = await tick(sending_state, world, url, now=noon)
    assert result.outcomes["group_sent"] == 1
    await tick(sending_state, world, url, now=noon)  # a second pass sends nothing again
    tasks = list(fake.tasks.values())[before:]
    assert len(tasks) == 1
    task = tasks[0]
    assert (task.chat_type, task.sender, task.chat_ids, task.externals) == (
        "group",
        STAFF,
        ["wrCAMP"],
        [],
    )
    assert task.text == values["content"]
    seen = (await _groups(cclient, marketing))["复诊群"]
    assert seen["campaigns"] == [{"status": "AWAITING_STAFF"}]

    # Bad input answers with codes; a doctor may not create campaigns.
    for change, code in (
        ({"windowEnd": values["windowStart"]}, "BAD_USER_INPUT"),
        ({"content": " "}, "BAD_USER_INPUT"),
        ({"groupChatId": "bad"}, "BAD_USER_INPUT"),
        ({"groupChatId": people[0].gid}, "BAD_USER_INPUT"),
    ):
        got = await gql(cclient, CREATE, {"i": values | change}, token=marketing)
        assert codes(got) == [code], (change, got)
    doctor = await sign_in(cclient, world, "doctor")
    assert codes(await gql(cclient, CREATE, {"i": values}, token=doctor)) == ["FORBIDDEN"]
