"""WeCom customer groups from `change_external_chat` callbacks, made with wechatpy's crypto as
WeCom makes them: create, join, leave, dismiss, each once however often delivered; members
linked to the right patients by WeCom external id; what each role sees of a group; another
chain's group never visible; `inGroupChat` segments exact."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.context import AppState
from api.ids import to_global_id
from auth.access_log import AccessLogEntry
from domain.wecom.group_models import GroupMember
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant
from tests.readme import blocks
from tests.support import SEEDED, World, build_world, codes, gql, ok, sign_in
from tests.wecom.test_callbacks import CORP, Wecom

CONFIGURE = (
    "mutation($c: String!, $t: String!, $k: String!, $b: ID!) { configureWecom(corpId: $c, "
    "token: $t, encodingAesKey: $k, defaultBranchId: $b) { corpId } }"
)
SET_EXTERNAL = (
    "mutation($id: ID!, $w: String!) { updatePatient(id: $id, input: {wecomExternalId: $w}) "
    "{ patient { id } } }"
)
GROUPS = (
    "{ groupChats(first: 10) { totalCount edges { node { id name status memberCount joined "
    "left branch { code } } } } }"
)
# joined/left since a fixed moment: the events are dated a minute ago, maybe last month.
GROUP = (
    'query($id: ID!) { groupChat(id: $id) { id status memberCount joined(since: "2020-01-01'
    'T00:00:00Z") left(since: "2020-01-01T00:00:00Z") members(first: 50) { totalCount '
    "edges { node { id poolTier } } } } }"
)
TIER = "query($id: ID!) { patient(id: $id) { poolTier } }"
PREVIEW = (
    "query($f: SegmentFilterInput!) { previewSegment(filter: $f) { count "
    "members(first: 50) { edges { node { id } } } } }"
)
AT = int(time.time()) - 60  # WeCom's CreateTime: when the change happened
# Customers: the world's patients b1, b2 and hm get these WeCom ids; STRANGER is no patient.
EXTERNAL = {"b1": "wmGRPb1", "b2": "wmGRPb2", "hm": "wmGRPhm"}
STRANGER = "wmGRPstranger"
SEEDED.update([*EXTERNAL.values(), STRANGER])  # identifiers: never in a log line


def chat_event(
    chat_id: str, change: str, detail: str = "", members: tuple[str, ...] = (), at: int = AT
) -> str:
    """A change_external_chat event as WeCom documents it (客户群变更事件)."""
    update = ""
    if change == "update":
        items = "".join(f"<Item><![CDATA[{m}]]></Item>" for m in members)
        update = (
            f"<UpdateDetail><![CDATA[{detail}]]></UpdateDetail><JoinScene>1</JoinScene>"
            f"<QuitScene>0</QuitScene><MemChangeCnt>{len(members)}</MemChangeCnt>"
            f"<MemChangeList>{items}</MemChangeList>"
            f"<LastMemVer><![CDATA[v{at - 1}]]></LastMemVer>"
            f"<CurMemVer><![CDATA[v{at}]]></CurMemVer>"
        )
    return (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_chat]]></Event>"
        f"<ChatId><![CDATA[{chat_id}]]></ChatId><ChangeType><![CDATA[{change}]]></ChangeType>"
        f"{update}</xml>"
    )


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"g-{unique}")


async def _set_up(client: httpx.AsyncClient, world: World, seed: str) -> tuple[Wecom, str]:
    """WeCom configured (new contacts and groups in b1); patients given their WeCom ids."""
    wecom = Wecom(world.slug, seed)
    admin = await sign_in(client, world, "hq_admin")
    variables = {"c": CORP, "t": wecom.token, "k": wecom.key, "b": world.branch_gid("b1")}
    ok(await gql(client, CONFIGURE, variables, token=admin))
    for key, external in EXTERNAL.items():
        ok(await gql(client, SET_EXTERNAL, {"id": world.gid(key), "w": external}, token=admin))
    return wecom, admin


async def _deliver(client: httpx.AsyncClient, wecom: Wecom, plain: str) -> tuple[str, str]:
    url, body = wecom.request(plain)
    response = await client.post(url, content=body)
    assert (response.status_code, response.text) == (200, "success")
    return url, body


async def _only_group(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    found = ok(await gql(client, GROUPS, token=token))["groupChats"]
    assert found["totalCount"] == 1, found
    return found["edges"][0]["node"]


async def _members(client: httpx.AsyncClient, token: str, gid: str) -> tuple[dict, set[str]]:
    group = ok(await gql(client, GROUP, {"id": gid}, token=token))["groupChat"]
    return group, {e["node"]["id"] for e in group["members"]["edges"]}


async def _wecom_log(owner: AppState, world: World) -> list[tuple[str, list[str]]]:
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        rows = await s.execute(
            select(AccessLogEntry.action, AccessLogEntry.patient_ids)
            .where(AccessLogEntry.actor_id == "wecom")
            .order_by(AccessLogEntry.seq)
        )
        return [(a, sorted(json.loads(p))) for a, p in rows.all()]


async def test_a_group_lives_through_its_callbacks_once_each(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    wecom, admin = await _set_up(client, world, "life")
    await _deliver(client, wecom, chat_event("wrLIFE", "create"))
    group = await _only_group(client, admin)
    assert (group["status"], group["memberCount"], group["branch"]["code"]) == ("ACTIVE", 0, "b1")

    # Two patients, a customer who is no patient, and a staff member join.
    joined = ("wmGRPb1", "wmGRPb2", STRANGER, "zhangsan")
    url, body = await _deliver(
        client, wecom, chat_event("wrLIFE", "update", "add_member", joined, AT + 10)
    )
    seen, ids = await _members(client, admin, group["id"])
    assert (seen["memberCount"], seen["joined"], seen["members"]["totalCount"]) == (3, 3, 2)
    assert ids == {world.gid("b1"), world.gid("b2")}
    assert {e["node"]["poolTier"] for e in seen["members"]["edges"]} == {"STRONG_PRIVATE"}
    for key in ("b1", "b2"):
        tier = ok(await gql(client, TIER, {"id": world.gid(key)}, token=admin))
        assert tier["patient"]["poolTier"] == "STRONG_PRIVATE"
    changed = [str(world.patients[k].id) for k in ("b1", "b2")]
    assert await _wecom_log(owner_state, world) == [("update", sorted(changed))]

    # WeCom's retry of the same request, and the same event delivered again: nothing twice.
    assert (await client.post(url, content=body)).text == "success"
    await _deliver(client, wecom, chat_event("wrLIFE", "update", "add_member", joined, AT + 10))
    again, _ = await _members(client, admin, group["id"])
    assert (again["memberCount"], again["joined"]) == (3, 3)
    assert await _wecom_log(owner_state, world) == [("update", sorted(changed))]

    # b2 leaves; joining again later is a new stay.
    leave = chat_event("wrLIFE", "update", "del_member", ("wmGRPb2",), AT + 20)
    await _deliver(client, wecom, leave)
    await _deliver(client, wecom, leave)
    after, ids = await _members(client, admin, group["id"])
    assert (after["memberCount"], after["joined"], after["left"]) == (2, 3, 1)
    assert ids == {world.gid("b1")}

    await _deliver(client, wecom, chat_event("wrLIFE", "dismiss", at=AT + 30))
    gone, ids = await _members(client, admin, group["id"])
    assert (gone["status"], gone["memberCount"], gone["left"], ids) == ("DISMISSED", 0, 3, set())
    # A late join to a dismissed group changes nothing.
    await _deliver(
        client, wecom, chat_event("wrLIFE", "update", "add_member", ("wmGRPhm",), AT + 40)
    )
    assert (await _members(client, admin, group["id"]))[0]["memberCount"] == 0
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        stays = (await s.scalars(select(GroupMember))).all()
    assert len(stays) == 3 and all(m.left_at is not None for m in stays)
    # Only the blind index is kept, never the WeCom id itself.
    assert all(b"wmGRP" not in m.member_bidx for m in stays)


async def test_members_follow_the_patient_scope_and_reads_are_logged(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    wecom, admin = await _set_up(client, world, "scope")
    await _deliver(client, wecom, chat_event("wrSCOPE", "create"))
    members = ("wmGRPb1", "wmGRPb2", "wmGRPhm", STRANGER)
    await _deliver(client, wecom, chat_event("wrSCOPE", "update", "add_member", members, AT + 1))
    gid = (await _only_group(client, admin))["id"]

    # The operator works in b1: b2's patient is counted, not listed.
    operator = await sign_in(client, world, "operator")
    seen, ids = await _members(client, operator, gid)
    assert seen["memberCount"] == 4
    assert ids == {world.gid("b1"), world.gid("hm")}
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        entry = await s.scalar(
            select(AccessLogEntry)
            .where(AccessLogEntry.actor_id == str(world.staff["operator"].id))
            .order_by(AccessLogEntry.seq.desc())
        )
    assert entry is not None and entry.action == "list"
    assert sorted(json.loads(entry.patient_ids)) == sorted(
        str(world.patients[k].id) for k in ("b1", "hm")
    )
    # The doctor owns no group (no linked WeCom user): none visible, the id answers NOT_FOUND.
    doctor = await sign_in(client, world, "doctor")
    assert ok(await gql(client, GROUPS, token=doctor))["groupChats"]["totalCount"] == 0
    assert codes(await gql(client, GROUP, {"id": gid}, token=doctor)) == ["NOT_FOUND"]
    # The auditor has no groupchats right.
    auditor = await sign_in(client, world, "auditor")
    assert codes(await gql(client, GROUPS, token=auditor)) == ["FORBIDDEN"]

    # Pool metrics count the members in scope.
    figures = "{ poolMetrics { groupChats { groups members activeMembers joined left } } }"
    got = ok(await gql(client, figures, token=admin))["poolMetrics"]["groupChats"]
    assert got == {"groups": 1, "members": 3, "activeMembers": 0, "joined": 4, "left": 0}


async def test_another_chains_group_is_never_visible(
    client: httpx.AsyncClient, owner_state: AppState, world: World, unique: str
) -> None:
    wecom, admin = await _set_up(client, world, "mine")
    await _deliver(client, wecom, chat_event("wrMINE", "create"))
    await _deliver(
        client, wecom, chat_event("wrMINE", "update", "add_member", ("wmGRPb1",), AT + 1)
    )
    gid = (await _only_group(client, admin))["id"]

    other = await build_world(owner_state, f"g2-{unique}")
    theirs = await sign_in(client, other, "hq_admin")
    assert ok(await gql(client, GROUPS, token=theirs))["groupChats"]["totalCount"] == 0
    foreign = await gql(client, GROUP, {"id": gid}, token=theirs)
    missing = await gql(client, GROUP, {"id": to_global_id("GroupChat", other.tenant_id)}, theirs)
    assert codes(foreign) == ["NOT_FOUND"] and foreign["errors"] == missing["errors"]
    node = "query($id: ID!) { node(id: $id) { id ... on GroupChat { memberCount } } }"
    mine = ok(await gql(client, node, {"id": gid}, token=admin))["node"]
    assert mine == {"id": gid, "memberCount": 1}
    assert codes(await gql(client, node, {"id": gid}, token=theirs)) == ["NOT_FOUND"]
    assert codes(await gql(client, PREVIEW, {"f": {"inGroupChat": [gid]}}, theirs)) == ["NOT_FOUND"]
    # The same ChatId sent to the other chain's endpoint with its own key is its own group.
    their_wecom, _ = await _set_up(client, other, "theirs")
    await _deliver(client, their_wecom, chat_event("wrMINE", "create"))
    assert (await _only_group(client, theirs))["id"] != gid
    assert (await _only_group(client, admin))["memberCount"] == 1


async def test_in_group_chat_segments_are_exact(client: httpx.AsyncClient, world: World) -> None:
    wecom, admin = await _set_up(client, world, "seg")
    for chat, members in (("wrSEG1", ("wmGRPb1", "wmGRPb2")), ("wrSEG2", ("wmGRPhm",))):
        await _deliver(client, wecom, chat_event(chat, "create"))
        await _deliver(client, wecom, chat_event(chat, "update", "add_member", members, AT + 1))
    edges = ok(await gql(client, GROUPS, token=admin))["groupChats"]["edges"]
    by_count = {e["node"]["memberCount"]: e["node"]["id"] for e in edges}
    one, two = by_count[2], by_count[1]
    await _deliver(
        client, wecom, chat_event("wrSEG1", "update", "del_member", ("wmGRPb2",), AT + 2)
    )

    async def match(flt: dict[str, Any]) -> set[str]:
        preview = ok(await gql(client, PREVIEW, {"f": flt}, token=admin))["previewSegment"]
        ids = {e["node"]["id"] for e in preview["members"]["edges"]}
        assert preview["count"] == len(ids)
        return ids

    everyone = {world.gid(k) for k in world.patients}
    assert await match({"inGroupChat": [one]}) == {world.gid("b1")}
    assert await match({"inGroupChat": [one, two]}) == {world.gid("b1"), world.gid("hm")}
    assert await match({"not": {"inGroupChat": [one, two]}}) == everyone - {
        world.gid("b1"),
        world.gid("hm"),
    }
    assert await match({"inGroupChat": [two], "branchIds": [world.branch_gid("b2")]}) == set()
    # Saved segments evaluate live.
    saved = ok(
        await gql(
            client,
            'mutation($f: SegmentFilterInput!) { createSegment(name: "群成员", filter: $f) '
            "{ count } }",
            {"f": {"inGroupChat": [two]}},
            token=admin,
        )
    )
    assert saved["createSegment"]["count"] == 1
    assert codes(await gql(client, PREVIEW, {"f": {"inGroupChat": ["nope"]}}, admin)) == [
        "BAD_USER_INPUT"
    ]
    branch_as_group = {"inGroupChat": [world.branch_gid("b1")]}
    assert codes(await gql(client, PREVIEW, {"f": branch_as_group}, admin)) != []


async def test_the_readme_query_runs(client: httpx.AsyncClient, world: World) -> None:
    (query,) = blocks("graphql", "## WeCom customer groups (社群)")
    wecom, admin = await _set_up(client, world, "readme")
    await _deliver(client, wecom, chat_event("wrREADME", "create"))
    await _deliver(
        client, wecom, chat_event("wrREADME", "update", "add_member", ("wmGRPb1",), AT + 1)
    )
    data = ok(await gql(client, query, {"since": "2020-01-01T00:00:00Z"}, token=admin))
    (edge,) = data["groupChats"]["edges"]
    assert (edge["node"]["memberCount"], edge["node"]["joined"]) == (1, 1)
    assert edge["node"]["members"]["edges"][0]["node"]["id"] == world.gid("b1")
    assert data["poolMetrics"]["groupChats"]["members"] == 1


async def test_an_erased_patient_is_forgotten_by_the_groups(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    wecom, admin = await _set_up(client, world, "erase")
    await _deliver(client, wecom, chat_event("wrERASE", "create"))
    members = ("wmGRPb1", "wmGRPb2")
    await _deliver(client, wecom, chat_event("wrERASE", "update", "add_member", members, AT + 1))
    gid = (await _only_group(client, admin))["id"]
    erase = "mutation($id: ID!) { erasePatient(id: $id) { patient { id } } }"
    ok(await gql(client, erase, {"id": world.gid("b1")}, token=admin))
    seen, ids = await _members(client, admin, gid)
    assert (seen["memberCount"], seen["joined"], seen["left"]) == (1, 2, 1)
    assert ids == {world.gid("b2")}
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        digests = set((await s.scalars(select(GroupMember.member_bidx))).all())
        cipher = await load_cipher(s, owner_state.key_provider)
    # b2's stay keeps its index; b1's matches nobody any more.
    b1, b2 = (cipher.blind_index(e, kind="wecom_external_id") for e in members)
    assert len(digests) == 2 and b2 in digests and b1 not in digests


async def test_a_page_of_groups_costs_the_same_statements_as_fewer(
    client: httpx.AsyncClient, state: AppState, world: World
) -> None:
    from tests.api.test_limits import statements

    wecom, admin = await _set_up(client, world, "cost")
    page = (
        "{ groupChats(first: 50) { edges { node { name memberCount joined left status "
        "owner { displayName } branch { code } campaigns { status } } } } }"
    )
    counts = []
    for n in range(2):
        for k in range(2):
            chat = f"wrCOST{n}{k}"
            await _deliver(client, wecom, chat_event(chat, "create"))
            await _deliver(
                client, wecom, chat_event(chat, "update", "add_member", ("wmGRPb1",), AT + k)
            )
        with statements(state) as seen:
            result = ok(await gql(client, page, token=admin))
        counts.append(len(seen))
    assert len(result["groupChats"]["edges"]) == 4
    assert counts[0] == counts[1]
