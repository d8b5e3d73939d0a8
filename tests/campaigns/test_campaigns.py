"""Campaigns end to end through the GraphQL API, the sender and a stand-in provider on real
HTTP: who is reached (consent, caps, quiet hours), what a crash does, what WeCom tasks do,
and what a campaign brought in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from api.context import AppState
from api.ids import parse_global_id, to_global_id
from auth.access_log import AccessLogEntry
from domain.campaigns.backends import SmsGateway, WecomTasks
from domain.campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from domain.campaigns.rules import Rules
from domain.consent.models import ContactChannel
from tenancy.session import bind_tenant
from tests.campaigns.conftest import (
    add_patients,
    campaign,
    configure_wecom,
    launch,
    reach,
    segment,
    tick,
    withdraw,
)
from tests.campaigns.standin import SMS_KEY, StandIn
from tests.support import World, codes, gql, make_tag, sign_in

SMS, WECOM = ContactChannel.SMS, ContactChannel.WECOM
RULES = """mutation($cap: Int!, $days: Int!, $qs: String!, $qe: String!) {
  setContactRules(frequencyCap: $cap, frequencyDays: $days, quietStart: $qs, quietEnd: $qe,
  timezone: "Asia/Shanghai") { frequencyCap frequencyDays quietStart quietEnd timezone } }"""


async def _deliveries(owner: AppState, world: World) -> list[Delivery]:
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        return list((await s.scalars(select(Delivery))).all())


async def _ready(client: httpx.AsyncClient, world: World) -> tuple[str, str, str]:
    """HQ and marketing tokens, no quiet hours, a cap of 5, and a segment of branch b1."""
    admin = await sign_in(client, world, "hq_admin")
    marketing = await sign_in(client, world, "marketing")
    await _rules(client, admin, 5, "00:00", "00:00")
    return (
        admin,
        marketing,
        await segment(client, marketing, {"branchIds": [world.branch_gid("b1")]}),
    )


async def _rules(client: httpx.AsyncClient, token: str, cap: int, qs: str, qe: str) -> None:
    variables = {"cap": cap, "days": 7, "qs": qs, "qe": qe}
    result = await gql(client, RULES, variables, token)
    assert "errors" not in result, result


async def test_sms_campaign_reaches_only_consenting_patients_and_counts_what_it_brought(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    sending_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    admin, marketing, seg = await _ready(cclient, world)
    people = await add_patients(owner_state, world, 5)
    cid = await campaign(cclient, marketing, seg)

    launched = await launch(cclient, marketing, cid)
    # b1 holds the world's 3 patients (no consent) and our 5.
    assert launched["matched"] == 8
    assert launched["excludedNoConsent"] == 3
    assert launched["status"] == "SENDING"

    # Between audience and sending: one withdraws, one is erased.
    await withdraw(owner_state, world, people[0], SMS)
    erased = await gql(
        cclient,
        "mutation($id: ID!) { erasePatient(id: $id) { patient { id } } }",
        {"id": people[1].gid},
        admin,
    )
    assert "errors" not in erased, erased

    result = await tick(sending_state, world, url)
    reached = set(fake.handed_to_carrier)
    assert reached == {p.phone for p in people[2:]}
    assert all(n == 1 for n in fake.handed_to_carrier.values())
    assert {m["text"] for m in fake.messages.values()} == {"春季正畸体验日，回复TD退订"}
    assert result.outcomes == {"delivered": 3, "withdrawn": 2}

    # What it brought in: a visit and a paid order of one reached patient, in the window.
    doctor = world.staff["doctor"]
    from api.ids import to_global_id

    booked = await gql(
        cclient,
        "mutation($p: ID!, $b: ID!, $at: DateTime!, $d: ID) { bookVisit(patientId: $p, "
        "branchId: $b, scheduledAt: $at, doctorId: $d) { id } }",
        {
            "p": people[2].gid,
            "b": world.branch_gid("b1"),
            "at": datetime.now(UTC).isoformat(),
            "d": to_global_id("Staff", doctor.id),
        },
        admin,
    )
    visit_id = booked["data"]["bookVisit"]["id"]
    arrived = await gql(
        cclient, "mutation($id: ID!) { markArrived(id: $id) { id } }", {"id": visit_id}, admin
    )
    assert "errors" not in arrived, arrived
    order = await gql(
        cclient,
        "mutation($p: ID!, $b: ID!) { createOrder(patientId: $p, branchId: $b, lines: "
        '[{service: "隐形矫正", quantity: 1, unitPrice: "12800.00"}]) { id } }',
        {"p": people[2].gid, "b": world.branch_gid("b1")},
        admin,
    )
    paid = await gql(
        cclient,
        "mutation($id: ID!) { payOrder(id: $id) { id } }",
        {"id": order["data"]["createOrder"]["id"]},
        admin,
    )
    assert "errors" not in paid, paid
    # A later withdrawal by a reached patient counts as an opt-out.
    await withdraw(owner_state, world, people[3], SMS)

    figures = await reach(cclient, marketing, cid)
    assert figures["status"] == "DONE"
    assert figures["reach"] == {
        "audience": 5,
        "pending": 0,
        "awaitingStaff": 0,
        "delivered": 3,
        "failed": 0,
        "withdrawn": 2,
        "optedOut": 1,
        "expired": 0,
        "cancelled": 0,
        "visits": 1,
        "orders": 1,
        "revenue": "12800.00",
        "convertedPatients": 1,
    }

    # Every step is in the access log: the launch (by the marketer, the audience's ids) and
    # the sender's reads of contact data (as the system actor).
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        entries = (await s.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq))).all()
    launch_entry = next(
        e
        for e in entries
        if e.operation_name == ""
        and e.action == "list"
        and e.actor_id == str(world.staff["marketing"].id)
    )
    assert all(str(p.patient.id) in launch_entry.patient_ids for p in people)
    sends = [e for e in entries if e.actor_id == "campaigns" and e.action == "read"]
    assert len(sends) == 1 and sends[0].field_groups == "contact"
    assert all(str(p.patient.id) in sends[0].patient_ids for p in people)


async def test_launch_is_refused_without_rights_and_across_tenants(
    cclient: httpx.AsyncClient, owner_state: AppState, world: World, unique: str
) -> None:
    from tests.support import build_world

    other = await build_world(owner_state, f"c2-{unique}")
    marketing = await sign_in(cclient, world, "marketing")
    seg = await segment(cclient, marketing, {"branchIds": [world.branch_gid("b1")]})
    cid = await campaign(cclient, marketing, seg)
    for role in ("operator", "doctor", "auditor"):
        token = await sign_in(cclient, world, role)
        assert codes(
            await gql(
                cclient, "mutation($id: ID!) { launchCampaign(id: $id) { id } }", {"id": cid}, token
            )
        ) == ["FORBIDDEN"]
    # Another chain's marketer: the campaign and the segment do not exist for them.
    theirs = await sign_in(cclient, other, "marketing")
    for query in (
        "mutation($id: ID!) { launchCampaign(id: $id) { id } }",
        "mutation($id: ID!) { cancelCampaign(id: $id) { id } }",
        "query($id: ID!) { campaign(id: $id) { id } }",
        "query($id: ID!) { node(id: $id) { id } }",
    ):
        assert codes(await gql(cclient, query, {"id": cid}, theirs)) == ["NOT_FOUND"]
    listed = await gql(cclient, "{ campaigns { totalCount } }", token=theirs)
    assert listed["data"]["campaigns"]["totalCount"] == 0
    bad = await gql(
        cclient,
        "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }",
        {
            "i": {
                "name": "x",
                "segmentId": seg,
                "channel": "SMS",
                "content": "hi",
                "windowStart": datetime.now(UTC).isoformat(),
                "windowEnd": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            }
        },
        theirs,
    )
    assert codes(bad) == ["BAD_USER_INPUT"]
    # Nothing was queued by any of it.
    assert await _deliveries(owner_state, world) == []


async def test_bad_input_is_refused_with_a_code_and_writes_nothing(
    cclient: httpx.AsyncClient, client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    marketing = await sign_in(cclient, world, "marketing")
    seg = await segment(cclient, marketing, {"branchIds": [world.branch_gid("b1")]})
    now = datetime.now(UTC)
    base = {
        "name": "x",
        "segmentId": seg,
        "channel": "SMS",
        "content": "hi",
        "windowStart": now.isoformat(),
        "windowEnd": (now + timedelta(days=1)).isoformat(),
    }
    for change in (
        {"content": ""},
        {"content": "字" * 501},
        {"windowEnd": (now - timedelta(days=1)).isoformat()},
        {"windowEnd": (now + timedelta(days=31)).isoformat()},
        {"windowStart": "2026-12-01T10:00:00"},  # no offset
        {"attributionDays": 0},
        {"channel": "WECOM"},  # no WeCom secret configured
        {"segmentId": "U2VnbWVudDpub3Q"},
    ):
        result = await gql(
            cclient,
            "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }",
            {"i": {**base, **change}},
            marketing,
        )
        assert codes(result) == ["BAD_USER_INPUT"], (change, result)
    # An app with no SMS gateway configured refuses SMS campaigns instead of queuing them.
    token = await sign_in(client, world, "marketing")
    result = await gql(
        client,
        "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }",
        {"i": base},
        token,
    )
    assert codes(result) == ["BAD_USER_INPUT"]
    assert "SMS gateway" in result["errors"][0]["message"]
    admin = await sign_in(cclient, world, "hq_admin")
    for qs, cap in (("25:00", 2), ("08:00", 0)):
        result = await gql(cclient, RULES, {"cap": cap, "days": 7, "qs": qs, "qe": "09:00"}, admin)
        assert codes(result) == ["BAD_USER_INPUT"]
    listed = await gql(cclient, "{ campaigns { totalCount } }", token=marketing)
    assert listed["data"]["campaigns"]["totalCount"] == 0


async def test_no_campaign_picks_its_audience_by_health_tags(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    sending_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    """A campaign reaches a chain or branches, outside the sender's own care, and marketing
    is no stated purpose: a segment naming a health tag (at any depth) cannot be its audience,
    even for HQ, who may build such a segment for the patients in their own care."""
    admin = await sign_in(cclient, world, "hq_admin")
    health = await make_tag(cclient, admin, "诊断-camp", "牙周炎-camp", health=True)
    plain = await segment(cclient, admin, {"branchIds": [world.branch_gid("b1")]})
    campaign_of = "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }"
    now = datetime.now(UTC)
    base = {
        "name": "x",
        "channel": "SMS",
        "content": "洁牙优惠，回复TD退订",
        "windowStart": now.isoformat(),
        "windowEnd": (now + timedelta(days=1)).isoformat(),
    }
    for flt in ({"tagsAny": [health]}, {"or": [{"scoreMin": 0}, {"not": {"tagsAll": [health]}}]}):
        seg = await segment(cclient, admin, flt)
        refused = await gql(cclient, campaign_of, {"i": {**base, "segmentId": seg}}, admin)
        assert codes(refused) == ["FORBIDDEN"], flt
        assert "health tags" in refused["errors"][0]["message"]
    made = await gql(cclient, campaign_of, {"i": {**base, "segmentId": plain}}, admin)
    assert "errors" not in made, made
    listed = await gql(cclient, "{ campaigns { totalCount } }", token=admin)
    assert listed["data"]["campaigns"]["totalCount"] == 1

    # One scheduled before this release, over the health segment: the sender's pass cancels
    # it (it would refuse it on every pass) and goes on with the tenant's other campaigns.
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        legacy = Campaign(
            name="旧活动", segment_id=parse_global_id(seg, "Segment"), channel="sms",
            content=base["content"], window_start=now - timedelta(minutes=1),
            window_end=now + timedelta(days=1), attribution_days=7,
            status=CampaignStatus.SCHEDULED, created_by="user:legacy",
        )  # fmt: skip
        s.add(legacy)
    _, url = provider
    await tick(sending_state, world, url)
    status = "query($id: ID!) { campaign(id: $id) { status } }"
    for gid, expected in (
        (to_global_id("Campaign", legacy.id), {"CANCELLED"}),
        (made["data"]["createCampaign"]["id"], {"SENDING", "DONE"}),  # went ahead
    ):
        found = await gql(cclient, status, {"id": gid}, admin)
        assert found["data"]["campaign"]["status"] in expected, found


async def test_frequency_cap_holds_across_channels_under_concurrent_launches(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    world: World,
) -> None:
    admin = await sign_in(cclient, world, "hq_admin")
    marketing = await sign_in(cclient, world, "marketing")
    await configure_wecom(cclient, world)
    await _rules(cclient, admin, 1, "00:00", "00:00")
    people = await add_patients(owner_state, world, 12, consent_on=(SMS, WECOM), wecom=True)
    seg = await segment(cclient, marketing, {"branchIds": [world.branch_gid("b1")]})
    by_sms = await campaign(cclient, marketing, seg, "SMS")
    by_wecom = await campaign(cclient, marketing, seg, "WECOM")
    by_sms_too = await campaign(cclient, marketing, seg, "SMS")

    launched = await asyncio.gather(
        *(launch(cclient, marketing, c) for c in (by_sms, by_wecom, by_sms_too))
    )
    # Each patient's one slot went to exactly one campaign, whichever channel.
    rows = await _deliveries(owner_state, world)
    per_patient: dict[object, int] = {}
    for d in rows:
        per_patient[d.patient_id] = per_patient.get(d.patient_id, 0) + 1
    assert set(per_patient) == {p.patient.id for p in people}
    assert set(per_patient.values()) == {1}
    assert sum(c["excludedByCap"] for c in launched) == 2 * len(people)

    # With room for two, a fourth campaign reaches everyone once more, and a fifth no one.
    await _rules(cclient, admin, 2, "00:00", "00:00")
    fourth = await launch(cclient, marketing, await campaign(cclient, marketing, seg))
    fifth = await launch(cclient, marketing, await campaign(cclient, marketing, seg, "WECOM"))
    assert fourth["excludedByCap"] == 0
    assert fifth["excludedByCap"] == len(people)


async def test_quiet_hours_hold_on_every_channel(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    sending_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    admin = await sign_in(cclient, world, "hq_admin")
    marketing = await sign_in(cclient, world, "marketing")
    await configure_wecom(cclient, world)
    await _rules(cclient, admin, 5, "21:00", "08:00")
    people = await add_patients(owner_state, world, 3, consent_on=(SMS, WECOM), wecom=True)
    fake.contacts.update(p.external for p in people if p.external)
    seg = await segment(cclient, marketing, {"branchIds": [world.branch_gid("b1")]})
    for channel in ("SMS", "WECOM"):
        await launch(cclient, marketing, await campaign(cclient, marketing, seg, channel))

    rows = await _deliveries(owner_state, world)
    rules = Rules(5, 7, 21 * 60, 8 * 60)
    assert all(not rules.is_quiet(d.next_attempt_at) for d in rows)
    shanghai = ZoneInfo("Asia/Shanghai")
    first = max(d.next_attempt_at for d in rows).astimezone(shanghai)
    night = first.replace(hour=23, minute=30)
    night = night if night > first else night + timedelta(days=1)
    early = (night + timedelta(hours=7)).replace(hour=7, minute=59)
    for quiet in (night, early):
        result = await tick(sending_state, world, url, now=quiet.astimezone(UTC))
        assert result.outcomes == {}
    assert not fake.messages and not fake.tasks
    morning = early.replace(hour=8, minute=1)
    result = await tick(sending_state, world, url, now=morning.astimezone(UTC))
    assert result.outcomes == {"delivered": 3, "awaiting_staff": 3}
    assert len(fake.messages) == 3 and len(fake.tasks) == 1


def test_quiet_hours_arithmetic() -> None:
    rules = Rules(quiet_start_minute=21 * 60, quiet_end_minute=8 * 60, timezone="Asia/Shanghai")
    tz = ZoneInfo("Asia/Shanghai")
    at = datetime(2026, 12, 1, 22, 15, tzinfo=tz)
    assert rules.is_quiet(at)
    assert rules.next_allowed(at) == datetime(2026, 12, 2, 8, 0, tzinfo=tz)
    assert rules.next_allowed(datetime(2026, 12, 2, 7, 0, tzinfo=tz)) == datetime(
        2026, 12, 2, 8, 0, tzinfo=tz
    )
    noon = datetime(2026, 12, 2, 12, 0, tzinfo=tz)
    assert not rules.is_quiet(noon) and rules.next_allowed(noon) == noon
    daytime = Rules(quiet_start_minute=12 * 60, quiet_end_minute=14 * 60)
    assert daytime.is_quiet(noon) and not daytime.is_quiet(noon + timedelta(hours=2))
    assert not Rules(quiet_start_minute=0, quiet_end_minute=0).is_quiet(noon)


class SenderKilled(BaseException):
    """The process dies (not an error the sender could handle)."""


class DyingGateway(SmsGateway):
    """The real gateway client, killed after `after` messages have reached the provider."""

    def __init__(self, url: str, after: int) -> None:
        super().__init__(url, SMS_KEY)
        self.left = after

    async def send(self, key: str, phone: str, text: str):  # type: ignore[no-untyped-def]
        sent = await super().send(key, phone, text)
        self.left -= 1
        if self.left == 0:
            raise SenderKilled()
        return sent


async def test_a_sender_crash_loses_no_delivery_and_sends_none_twice(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    sending_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    _admin, marketing, seg = await _ready(cclient, world)
    people = await add_patients(owner_state, world, 12)
    cid = await campaign(cclient, marketing, seg)
    await launch(cclient, marketing, cid)

    with pytest.raises(SenderKilled):
        await tick(sending_state, world, url, sms=DyingGateway(url, 5))
    assert len(fake.messages) == 5
    rows = await _deliveries(owner_state, world)
    assert {d.status for d in rows} == {DeliveryStatus.SENDING}  # claimed, outcome unknown

    # A restarted sender does not touch them before they are stale…
    await tick(sending_state, world, url)
    assert len(fake.messages) == 5
    # …then resends them all with the same keys: the 5 the provider had are not sent again.
    now = datetime.now(UTC) + timedelta(minutes=6)
    result = await tick(sending_state, world, url, now=now)
    assert result.outcomes == {"delivered": 12}
    assert fake.duplicates == 5
    assert sorted(fake.handed_to_carrier) == sorted(p.phone for p in people)
    assert set(fake.handed_to_carrier.values()) == {1}
    figures = await reach(cclient, marketing, cid)
    assert figures["reach"]["delivered"] == 12 and figures["status"] == "DONE"


async def test_failures_are_retried_then_given_up_and_opt_outs_recorded(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    sending_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    admin, marketing, seg = await _ready(cclient, world)
    people = await add_patients(owner_state, world, 4)
    fake.opted_out.add(people[0].phone)
    cid = await campaign(cclient, marketing, seg)
    await launch(cclient, marketing, cid)

    fake.fail_next = 2  # the provider is down for two requests
    now = datetime.now(UTC)
    first = await tick(sending_state, world, url, now=now)
    assert first.outcomes["pending"] == 2 and first.outcomes.total() == 4
    later = await tick(sending_state, world, url, now=now + timedelta(minutes=2))
    assert later.outcomes.total() == 2 and "pending" not in later.outcomes
    figures = (await reach(cclient, marketing, cid))["reach"]
    assert (figures["delivered"], figures["optedOut"], figures["pending"]) == (3, 1, 0)
    consents = await gql(
        cclient,
        "query($p: ID!) { patientConsents(patientId: $p) { current { channel granted } "
        "history { granted method recordedBy } } }",
        {"p": people[0].gid},
        admin,
    )
    history = consents["data"]["patientConsents"]["history"]
    assert history[-1] == {
        "granted": False,
        "method": "provider_opt_out",
        "recordedBy": "system:campaigns",
    }
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        changes = (
            await s.scalars(
                select(AccessLogEntry.patient_ids).where(
                    AccessLogEntry.actor_id == "campaigns", AccessLogEntry.action == "update"
                )
            )
        ).all()
    assert changes == [f'["{people[0].patient.id}"]']
    attempts = sorted(d.attempts for d in await _deliveries(owner_state, world))
    assert attempts == [1, 1, 2, 2]

    # A provider that stays down: five attempts, then failed; nothing is sent after.
    cid2 = await campaign(cclient, marketing, seg)
    await launch(cclient, marketing, cid2)
    fake.fail_next = 10_000
    moment = datetime.now(UTC)
    for _ in range(6):
        await tick(sending_state, world, url, now=moment)
        moment += timedelta(hours=2)
    figures = (await reach(cclient, marketing, cid2))["reach"]
    assert figures["failed"] == 3  # the opt-out withdrew consent: not in this audience
    assert figures["delivered"] == 0
    assert len(fake.messages) == 3  # nothing more reached the provider


async def test_window_closing_expires_what_is_left_and_cancel_stops_sending(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    sending_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    _admin, marketing, seg = await _ready(cclient, world)
    await add_patients(owner_state, world, 3)
    late = await campaign(cclient, marketing, seg, days=1)
    await launch(cclient, marketing, late)
    after_window = datetime.now(UTC) + timedelta(days=2)
    result = await tick(sending_state, world, url, now=after_window)
    assert result.expired == 3 and not fake.messages
    assert (await reach(cclient, marketing, late))["reach"]["expired"] == 3

    stopped = await campaign(cclient, marketing, seg)
    await launch(cclient, marketing, stopped)
    cancelled = await gql(
        cclient,
        "mutation($id: ID!) { cancelCampaign(id: $id) { status } }",
        {"id": stopped},
        marketing,
    )
    assert cancelled["data"]["cancelCampaign"]["status"] == "CANCELLED"
    await tick(sending_state, world, url)
    assert not fake.messages
    assert (await reach(cclient, marketing, stopped))["reach"]["cancelled"] == 3
    again = await gql(
        cclient,
        "mutation($id: ID!) { launchCampaign(id: $id) { id } }",
        {"id": stopped},
        marketing,
    )
    assert codes(again) == ["CONFLICT"]


async def test_scheduled_campaign_is_queued_by_the_sender_when_its_window_opens(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    sending_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    _admin, marketing, seg = await _ready(cclient, world)
    people = await add_patients(owner_state, world, 2)
    opens = datetime.now(UTC) + timedelta(hours=1)
    cid = await campaign(cclient, marketing, seg, start=opens)
    early = await gql(
        cclient, "mutation($id: ID!) { launchCampaign(id: $id) { id } }", {"id": cid}, marketing
    )
    assert codes(early) == ["BAD_USER_INPUT"]
    # Consent withdrawn before the window opens: the audience, computed then, leaves them out.
    await withdraw(owner_state, world, people[0], SMS)
    await tick(sending_state, world, url)
    assert (await reach(cclient, marketing, cid))["status"] == "SCHEDULED"
    result = await tick(sending_state, world, url, now=opens + timedelta(minutes=1))
    assert result.queued == 1 and result.outcomes == {"delivered": 1}
    assert set(fake.handed_to_carrier) == {people[1].phone}
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        audience_logs = await s.scalar(
            select(func.count())
            .select_from(AccessLogEntry)
            .where(AccessLogEntry.actor_id == "campaigns", AccessLogEntry.action == "list")
        )
    assert audience_logs == 1


class DyingTasks(WecomTasks):
    """The real WeCom client, killed right after WeCom created the task."""

    async def create_task(self, external_userids: list[str], text: str):  # type: ignore[no-untyped-def]
        await super().create_task(external_userids, text)
        raise SenderKilled()


async def test_orthodontics_not_converted_as_a_wecom_campaign(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    sending_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's story: a chain admin runs "orthodontics, not converted" as a WeCom
    campaign that reaches only consenting patients, and sees what it brought in."""
    fake, url = provider
    admin = await sign_in(cclient, world, "hq_admin")
    await configure_wecom(cclient, world)
    await _rules(cclient, admin, 5, "00:00", "00:00")
    people = await add_patients(owner_state, world, 5, consent_on=(WECOM,), wecom=True)
    sms_only = await add_patients(owner_state, world, 1, consent_on=(SMS,), wecom=True)
    fake.contacts.update(p.external for p in people[:4] if p.external)  # people[4] removed us

    tag_id = await make_tag(cclient, admin, "项目", "正畸")
    tagged = await gql(
        cclient,
        "mutation($t: ID!, $p: [ID!]!) { tagPatients(tagId: $t, patientIds: $p) { added } }",
        {"t": tag_id, "p": [p.gid for p in [*people, *sms_only]]},
        admin,
    )
    assert "errors" not in tagged, tagged
    converted = await gql(
        cclient,
        'mutation($p: ID!) { changeStage(patientId: $p, stage: "converted", reason: "paid") '
        "{ id } }",
        {"p": people[3].gid},
        admin,
    )
    assert "errors" not in converted, converted
    seg = await segment(cclient, admin, {"tagsAny": [tag_id], "not": {"stages": ["CONVERTED"]}})
    cid = await campaign(cclient, admin, seg, "WECOM", content="正畸复诊季：到店免费面诊")
    launched = await launch(cclient, admin, cid)
    assert (launched["matched"], launched["excludedNoConsent"]) == (5, 1)

    # The sender dies right after WeCom created the task, before recording it…
    monkeypatch.setattr("process.campaign_sender.WecomTasks", DyingTasks)
    with pytest.raises(SenderKilled):
        await tick(sending_state, world, url)
    monkeypatch.undo()
    assert len(fake.tasks) == 1
    # …and the next sender adopts that task instead of creating a second one.
    result = await tick(sending_state, world, url, now=datetime.now(UTC) + timedelta(minutes=6))
    assert result.outcomes == {"awaiting_staff": 4}
    assert len(fake.tasks) == 1
    (task,) = fake.tasks.values()
    assert sorted(task.externals) == sorted(p.external for p in (*people[:3], people[4]))
    assert task.text == "正畸复诊季：到店免费面诊"
    figures = await reach(cclient, admin, cid)
    assert figures["reach"]["awaitingStaff"] == 4 and figures["status"] == "SENDING"

    # The staff member confirms in WeCom; the sender reads the results back.
    fake.confirm(task.msgid)
    result = await tick(sending_state, world, url)
    assert result.outcomes == {"delivered": 3, "failed": 1}
    figures = await reach(cclient, admin, cid)
    assert figures["status"] == "DONE"
    assert (figures["reach"]["delivered"], figures["reach"]["failed"]) == (3, 1)


async def test_two_senders_at_once_send_each_message_once(
    cclient: httpx.AsyncClient,
    owner_state: AppState,
    sending_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    _admin, marketing, seg = await _ready(cclient, world)
    people = await add_patients(owner_state, world, 150)  # two claims' worth
    await launch(cclient, marketing, await campaign(cclient, marketing, seg))
    results = await asyncio.gather(*(tick(sending_state, world, url) for _ in range(2)))
    assert sum(r.outcomes["delivered"] for r in results) == 150
    assert sorted(fake.handed_to_carrier) == sorted(p.phone for p in people)
    assert set(fake.handed_to_carrier.values()) == {1} and fake.duplicates == 0


async def test_a_page_of_campaigns_with_reach_costs_the_same_statements_as_one(
    cclient: httpx.AsyncClient, owner_state: AppState, state: AppState, world: World
) -> None:
    from tests.api.test_limits import statements

    _admin, marketing, seg = await _ready(cclient, world)
    await add_patients(owner_state, world, 2)
    page = (
        "{ campaigns(first: 50) { edges { node { name reach { audience delivered optedOut "
        "visits orders revenue convertedPatients } } } } }"
    )
    counts = []
    for _ in range(2):
        await launch(cclient, marketing, await campaign(cclient, marketing, seg))
        await launch(cclient, marketing, await campaign(cclient, marketing, seg))
        with statements(state) as seen:
            result = await gql(cclient, page, token=marketing)
        assert "errors" not in result, result
        counts.append(len(seen))
    assert len(result["data"]["campaigns"]["edges"]) == 4
    assert counts[0] == counts[1]
