"""The private pool through GraphQL: channels, events and scores, tags, segments, merges."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from api.context import AppState
from api.ids import to_global_id
from domain.patients.models import Patient
from domain.pool.models import PatientTag
from domain.pool.service import PoolService, run_rescore
from process.jobs import resume_jobs
from tenancy.session import bind_tenant, stamp_rows
from tests.support import World, build_world, codes, gql, make_tag, sign_in

EVENTS = "mutation($e: [EventInput!]!) { recordEvents(events: $e) { inserted duplicates } }"
SEGMENT_PAGE = """query($id: ID!, $first: Int, $after: String) { segment(id: $id) { count
  members(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor }
    edges { node { id name leadScore lifecycleStage tags { name } } } } } }"""


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"p-{unique}")


def _events(pid: str, kinds: list[str], tag: str) -> list[dict[str, Any]]:
    start = datetime.now(UTC) - timedelta(days=2)
    return [
        {
            "clientEventId": f"{tag}-{i}",
            "patientId": pid,
            "type": k,
            "occurredAt": (start + timedelta(hours=i)).isoformat(),
        }
        for i, k in enumerate(kinds)
    ]


async def test_admin_builds_a_segment_end_to_end(client: httpx.AsyncClient, world: World) -> None:
    """ "orthodontics, not converted, score ≥ 60, in branch X", paged through GraphQL alone."""
    token = await sign_in(client, world, "hq_admin")
    made = await gql(
        client,
        'mutation { createChannel(code: "xiaohongshu", name: "小红书") { code } }',
        token=token,
    )
    assert made["data"]["createChannel"]["code"] == "xiaohongshu"
    ortho = await make_tag(client, token, "项目", "正畸")
    unconverted = await make_tag(client, token, "转化", "未转化")
    hot = [world.gid("assigned"), world.gid("hm"), world.gid("b1")]
    for pid in hot:  # attend an event (50) + download material (10) = 60
        result = await gql(
            client,
            EVENTS,
            {"e": _events(pid, ["EVENT_ATTENDED", "DOWNLOAD_MATERIAL"], pid)},
            token=token,
        )
        assert result["data"]["recordEvents"] == {"inserted": 2, "duplicates": 0}
    # sent twice, late: nothing changes
    again = await gql(
        client,
        EVENTS,
        {"e": _events(hot[0], ["EVENT_ATTENDED", "DOWNLOAD_MATERIAL"], hot[0])},
        token=token,
    )
    assert again["data"]["recordEvents"] == {"inserted": 0, "duplicates": 2}
    everyone = [world.gid(k) for k in world.patients]
    tag_q = "mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) { added } }"
    assert (await gql(client, tag_q, {"t": ortho, "p": everyone}, token=token))["data"] == {
        "tagPatients": {"added": 4}
    }
    assert (
        await gql(client, tag_q, {"t": unconverted, "p": [*hot[:2], world.gid("b2")]}, token=token)
    )["data"]["tagPatients"]["added"] == 3
    detail = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { leadScore lifecycleStage "
        "scoreExplanation { score lines { what count points } } "
        "stageHistory { fromStage toStage changedBy reason } tags { name } } }",
        {"id": hot[0]},
        token=token,
    )
    p = detail["data"]["patient"]
    assert p["leadScore"] == 60 and p["lifecycleStage"] == "QUALIFIED"
    assert {(line["what"], line["points"]) for line in p["scoreExplanation"]["lines"]} == {
        ("event_attended", 50),
        ("download_material", 10),
    }
    assert p["stageHistory"][-1]["toStage"] == "qualified"
    assert {t["name"] for t in p["tags"]} == {"正畸", "未转化"}

    segment = await gql(
        client,
        "mutation($f: SegmentFilterInput!) { createSegment("
        'name: "正畸未转化高分", filter: $f) { id } }',
        {
            "f": {
                "tagsAll": [ortho, unconverted],
                "scoreMin": 60,
                "branchIds": [world.branch_gid("b1")],
            }
        },
        token=token,
    )
    sid = segment["data"]["createSegment"]["id"]
    first = await gql(client, SEGMENT_PAGE, {"id": sid, "first": 1}, token=token)
    seg = first["data"]["segment"]
    assert seg["count"] == 2 and seg["members"]["pageInfo"]["hasNextPage"]
    second = await gql(
        client,
        SEGMENT_PAGE,
        {"id": sid, "first": 1, "after": seg["members"]["pageInfo"]["endCursor"]},
        token=token,
    )
    ids = {
        seg["members"]["edges"][0]["node"]["id"],
        second["data"]["segment"]["members"]["edges"][0]["node"]["id"],
    }
    assert ids == set(hot[:2])
    # the qualified leads got a call task for their branch
    metrics = await gql(
        client,
        "{ poolMetrics { total byStage { key count } "
        "newByChannel { key period count } scoreDistribution { key count } } }",
        token=token,
    )
    stages = {b["key"]: b["count"] for b in metrics["data"]["poolMetrics"]["byStage"]}
    assert stages["qualified"] == 3
    assert {b["key"]: b["count"] for b in metrics["data"]["poolMetrics"]["scoreDistribution"]} == {
        "0": 1,
        "60": 3,
    }


async def test_rules_change_rescores_in_the_background(
    client: httpx.AsyncClient, world: World
) -> None:
    token = await sign_in(client, world, "hq_admin")
    await gql(client, EVENTS, {"e": _events(world.gid("b2"), ["INTERACTION"], "r")}, token=token)
    job = await gql(
        client,
        "mutation { setScoringRules(input: {rules: [{eventType: INTERACTION,"
        " points: 7}], threshold: 100}) { id total } }",
        token=token,
    )
    job_id = job["data"]["setScoringRules"]["id"]
    for _ in range(100):
        state = await gql(
            client,
            "query($id: ID!) { job(id: $id) { status done total } }",
            {"id": job_id},
            token=token,
        )
        if state["data"]["job"]["status"] == "done":
            break
        await asyncio.sleep(0.05)
    assert state["data"]["job"] == {
        "status": "done",
        "done": len(world.patients),
        "total": len(world.patients),
    }
    score = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { leadScore } }",
        {"id": world.gid("b2")},
        token=token,
    )
    assert score["data"]["patient"]["leadScore"] == 7


async def test_a_job_cut_off_resumes_when_a_process_starts(
    client: httpx.AsyncClient, state: AppState, owner_state: AppState, world: World
) -> None:
    """A rescoring job stopped half-way (a crash, a deploy) is picked up by the next process
    at start and finishes from its cursor, not from the beginning."""
    async with owner_state.sessions() as s:
        await bind_tenant(s, world.tenant_id)
        async with s.begin():
            job = await PoolService(s, "user:test").set_rules(
                [("interaction", 5, None, 1)], (30, 0, 100)
            )
        cut = await run_rescore(s, job.id, "user:test", batch=1, stop_after_batches=2)
    assert (cut.status, cut.done) == ("running", 2)
    tasks = await resume_jobs(state.sessions)
    await asyncio.gather(*tasks)
    token = await sign_in(client, world, "hq_admin")
    seen = await gql(
        client,
        "query($id: ID!) { job(id: $id) { status done total } }",
        {"id": to_global_id("Job", job.id)},
        token=token,
    )
    total = len(world.patients)
    assert seen["data"]["job"] == {"status": "done", "done": total, "total": total}


async def _bulk_patients(owner: AppState, world: World, n: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        rows = [
            {
                "id": i,
                "home_branch_id": world.branches["b1"].id,
                "referral_code": f"B{k:07d}",
                "created_at": datetime.now(UTC),
                "updated_at": datetime.now(UTC),
            }
            for k, i in enumerate(ids)
        ]
        await s.execute(Patient.__table__.insert(), stamp_rows(s, rows))
    return ids


async def test_bulk_tagging_ten_thousand_is_atomic(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    token = await sign_in(client, world, "hq_admin")
    tag = await make_tag(client, token, "活动", "双十一")
    ids = [to_global_id("Patient", i) for i in await _bulk_patients(owner_state, world, 10_000)]
    q = "mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) { added } }"
    # one id of another world half-way through: nothing at all is tagged
    broken = [*ids[:5000], to_global_id("Patient", uuid.uuid4()), *ids[5000:9999]]
    failed = await gql(client, q, {"t": tag, "p": broken}, token=token)
    assert codes(failed) == ["NOT_FOUND"]

    async def tagged() -> int:
        async with owner_state.sessions() as s, s.begin():
            await bind_tenant(s, world.tenant_id)
            return int(await s.scalar(select(func.count()).select_from(PatientTag)) or 0)

    assert await tagged() == 0
    done = await gql(client, q, {"t": tag, "p": ids}, token=token)
    assert done["data"]["tagPatients"]["added"] == 10_000
    assert await tagged() == 10_000
    too_many = await gql(
        client, q, {"t": tag, "p": [*ids, to_global_id("Patient", uuid.uuid4())]}, token=token
    )
    assert codes(too_many) == ["BAD_USER_INPUT"]


async def test_scope_and_health_tags(client: httpx.AsyncClient, world: World) -> None:
    admin = await sign_in(client, world, "hq_admin")
    health_tag = await make_tag(client, admin, "诊断标签", "牙周炎", health=True)
    everyone = [world.gid(k) for k in world.patients]
    # A health tag is health data: HQ, whose care holds none of them, states why first.
    state = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: QUALITY_REVIEW,
      note: "coding review") { id } }"""
    for gid in everyone:
        assert not codes(await gql(client, state, {"id": gid}, token=admin))
    tagged = await gql(
        client,
        "mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) { added } }",
        {"t": health_tag, "p": everyone},
        token=admin,
    )
    assert tagged["data"]["tagPatients"]["added"] == len(everyone), tagged
    preview = "query($f: SegmentFilterInput!) { previewSegment(filter: $f) { count } }"
    # a branch manager of b1 counts only b1's patients
    manager = await sign_in(client, world, "branch_manager")
    count = await gql(client, preview, {"f": {"scoreMin": 0}}, token=manager)
    assert count["data"]["previewSegment"]["count"] == 3
    assert (await gql(client, preview, {"f": {"scoreMin": 0}}, token=admin))["data"][
        "previewSegment"
    ]["count"] == 4
    # marketing may not filter by, nor see, a health tag
    marketing = await sign_in(client, world, "marketing")
    refused = await gql(client, preview, {"f": {"tagsAny": [health_tag]}}, token=marketing)
    assert codes(refused) == ["FORBIDDEN"]
    tags = "{ tags(first: 100) { totalCount edges { node { name } } } }"
    hidden = await gql(client, tags, token=marketing)
    assert "errors" not in hidden and "牙周炎" not in str(hidden)
    listed = await gql(client, "{ patients { edges { node { tags { name } } } } }", token=marketing)
    assert "牙周炎" not in str(listed)
    assert "牙周炎" in str(await gql(client, tags, token=admin))


async def test_merge_and_duplicates(
    client: httpx.AsyncClient, owner_state: AppState, world: World, unique: str
) -> None:
    token = await sign_in(client, world, "hq_admin")
    create = """mutation($in: CreatePatientInput!) { createPatient(input: $in) {
      patient { id } } }"""
    # a mini-program user with the same WeChat id as a past patient
    await gql(
        client,
        "mutation($id: ID!) { updatePatient(id: $id, input: {wechatId: "
        '"wxid_same"}) { patient { id } } }',
        {"id": world.gid("b1")},
        token=token,
    )
    # HQ, who sees the past patient, would get them back (OneID); a health manager, who sees
    # only their own patients, makes a second record: the duplicate HQ then merges.
    mine = await sign_in(client, world, "health_manager")
    made = await gql(
        client,
        create,
        {
            "in": {
                "name": "小程序用户",
                "wechatId": "wxid_same",
                "homeBranchId": world.branch_gid("b2"),
                "assignedStaffId": world.staff_gid("health_manager"),
            }
        },
        token=mine,
    )
    dup = made["data"]["createPatient"]["patient"]["id"]
    assert dup != world.gid("b1")
    await gql(client, EVENTS, {"e": _events(dup, ["LIVE_STREAM_ATTENDED"], "m")}, token=token)
    groups = await gql(
        client,
        "{ possibleDuplicates { edges { node { matchedOn patients { id } } } } }",
        token=token,
    )
    assert {
        "matchedOn": "wechat_id",
        "patients": sorted([{"id": world.gid("b1")}, {"id": dup}], key=lambda p: p["id"]),
    } in [
        {"matchedOn": g["matchedOn"], "patients": sorted(g["patients"], key=lambda p: p["id"])}
        for g in (e["node"] for e in groups["data"]["possibleDuplicates"]["edges"])
    ]
    other = await build_world(owner_state, f"p2-{unique}")
    merge = (
        "mutation($k: ID!, $m: ID!) { mergePatients(keepId: $k, mergeId: $m) "
        "{ id leadScore wechatId } }"
    )
    across = await gql(client, merge, {"k": world.gid("b1"), "m": other.gid("b1")}, token=token)
    assert codes(across) == ["NOT_FOUND"]
    merged = await gql(client, merge, {"k": world.gid("b1"), "m": dup}, token=token)
    assert merged["data"]["mergePatients"] == {
        "id": world.gid("b1"),
        "leadScore": 60,
        "wechatId": "wxid_same",
    }
    gone = await gql(
        client, "query($id: ID!) { patient(id: $id) { id } }", {"id": dup}, token=token
    )
    assert codes(gone) == ["NOT_FOUND"] or gone["data"]["patient"]["id"] == dup
    after = await gql(client, "{ possibleDuplicates { totalCount edges { cursor } } }", token=token)
    assert after["data"]["possibleDuplicates"] == {"totalCount": 0, "edges": []}


async def test_segment_page_is_constant_in_statements(
    client: httpx.AsyncClient, state: AppState, owner_state: AppState, world: World
) -> None:
    token = await sign_in(client, world, "hq_admin")
    tag = await make_tag(client, token, "批量", "全部")
    ids = [to_global_id("Patient", i) for i in await _bulk_patients(owner_state, world, 60)]
    await gql(
        client,
        "mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) { added } }",
        {"t": tag, "p": ids},
        token=token,
    )
    seg = await gql(
        client,
        'mutation($f: SegmentFilterInput!) { createSegment(name: "all", filter: $f) { id } }',
        {"f": {"tagsAny": [tag]}},
        token=token,
    )
    sid = seg["data"]["createSegment"]["id"]
    engine = state.sessions.kw["bind"].sync_engine
    counts: list[int] = []
    for first in (2, 50):
        seen: list[str] = []

        def hit(_c: Any, _cur: Any, statement: str, *_a: Any, _seen: list[str] = seen) -> None:
            _seen.append(statement)

        event.listen(engine, "before_cursor_execute", hit)
        try:
            page = await gql(client, SEGMENT_PAGE, {"id": sid, "first": first}, token=token)
        finally:
            event.remove(engine, "before_cursor_execute", hit)
        assert len(page["data"]["segment"]["members"]["edges"]) == first
        counts.append(len(seen))
    assert counts[0] == counts[1], counts
