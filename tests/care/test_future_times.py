"""Times from the future are refused (issue 24): an arrival or an event more than five minutes
ahead of the server's clock answers BAD_USER_INPUT on its field and writes nothing; a few
minutes of clock drift is accepted. (Payments, refunds and completions take the server's
clock and no time from the caller.) On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.context import AppState
from tests.support import World, build_world, codes, gql, ok, sign_in

BOOK = """mutation($p: ID!, $b: ID!, $at: DateTime!) {
  bookVisit(patientId: $p, branchId: $b, scheduledAt: $at) { id } }"""
ARRIVE = """mutation($id: ID!, $at: DateTime) { markArrived(id: $id, arrivedAt: $at) {
  status arrivedAt } }"""
VISIT = """query($p: ID!) { patient(id: $p) { lastVisitAt lifecycleStage leadScore
  lastInteractionAt } }"""
EVENTS = "mutation($e: [EventInput!]!) { recordEvents(events: $e) { inserted duplicates } }"


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"ft-{unique}")


def ahead(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def test_an_arrival_from_the_future_is_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    pid = world.gid("b1")
    visit = ok(
        await gql(
            client, BOOK, {"p": pid, "b": world.branch_gid("b1"), "at": ahead(days=1)}, token=hq
        )
    )["bookVisit"]
    before = ok(await gql(client, VISIT, {"p": pid}, token=hq))["patient"]
    for late in (ahead(days=2), ahead(minutes=6), "2099-01-01T00:00:00+08:00"):
        refused = await gql(client, ARRIVE, {"id": visit["id"], "at": late}, token=hq)
        assert codes(refused) == ["BAD_USER_INPUT"]
        assert refused["errors"][0]["extensions"]["field"] == "arrivedAt"
        assert ok(await gql(client, VISIT, {"p": pid}, token=hq))["patient"] == before
    # Drift within five minutes is not the future.
    arrived = ok(await gql(client, ARRIVE, {"id": visit["id"], "at": ahead(minutes=3)}, token=hq))
    assert arrived["markArrived"]["status"] == "ARRIVED"
    assert ok(await gql(client, VISIT, {"p": pid}, token=hq))["patient"]["lastVisitAt"]


async def test_an_event_from_the_future_is_refused_with_its_batch(
    client: httpx.AsyncClient, world: World
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    pid = world.gid("b1")
    before = ok(await gql(client, VISIT, {"p": pid}, token=hq))["patient"]

    def event(key: str, at: str) -> dict:
        return {"clientEventId": key, "patientId": pid, "type": "EVENT_ATTENDED", "occurredAt": at}

    refused = await gql(
        client,
        EVENTS,
        {"e": [event("now", ahead(minutes=-1)), event("later", ahead(hours=2))]},
        token=hq,
    )
    assert codes(refused) == ["BAD_USER_INPUT"]
    assert refused["errors"][0]["extensions"]["field"] == "occurredAt"
    assert ok(await gql(client, VISIT, {"p": pid}, token=hq))["patient"] == before
    # The same good event alone is new: nothing of the refused batch was kept.
    done = ok(await gql(client, EVENTS, {"e": [event("now", ahead(minutes=-1))]}, token=hq))
    assert done["recordEvents"] == {"inserted": 1, "duplicates": 0}
    assert ok(await gql(client, EVENTS, {"e": [event("soon", ahead(minutes=4))]}, token=hq))
