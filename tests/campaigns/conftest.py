"""Campaign fixtures: a stand-in provider on loopback, an app configured to send through it,
patients who can be reached, and one pass of the sender."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.context import AppState
from domain.campaigns.backends import SmsGateway
from domain.campaigns.sender import STALE_AFTER
from domain.consent import service as consent
from domain.consent.models import ContactChannel, Purpose
from domain.patients.models import Patient
from domain.patients.service import PatientService
from process.campaign_sender import Backends, TickResult, run_tenant
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant, tenant_session
from tests.campaigns.standin import CORP_ID, CORP_SECRET, SMS_KEY, Served, StandIn
from tests.support import World, build_world, gql, sign_in

CONFIGURE = (
    f'mutation($b: ID!, $s: String) {{ configureWecom(corpId: "{CORP_ID}", '
    f'token: "standintoken", encodingAesKey: "{"a" * 43}", defaultBranchId: $b, secret: $s) '
    "{ bulkSendEnabled } }"
)


@pytest.fixture
def provider() -> Iterator[tuple[StandIn, str]]:
    fake = StandIn()
    with Served(fake.app()) as served:
        yield fake, served.url


@pytest.fixture
def sending_state(state: AppState, provider: tuple[StandIn, str]) -> AppState:
    url = provider[1]
    cfg = state.settings.model_copy(
        update={"sms_api_url": url, "sms_api_key": SMS_KEY, "wecom_api_url": url}
    )
    return dataclasses.replace(state, settings=cfg)


@pytest.fixture
async def cclient(sending_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(sending_state.settings, sending_state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"c-{unique}")


@dataclass
class Reachable:
    patient: Patient
    phone: str
    external: str | None

    @property
    def gid(self) -> str:
        from api.ids import to_global_id

        return to_global_id("Patient", self.patient.id)


async def add_patients(
    owner: AppState,
    world: World,
    n: int,
    *,
    consent_on: tuple[ContactChannel, ...] = (ContactChannel.SMS,),
    wecom: bool = False,
    branch: str = "b1",
) -> list[Reachable]:
    """`n` patients in `branch` with a phone (and a WeCom contact), with marketing consent on
    `consent_on`, made through the product's services."""
    out = []
    tag = uuid.uuid4().hex[:8]
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        service = PatientService(s, await load_cipher(s, owner.key_provider))
        for i in range(n):
            phone = f"+86138{int(tag, 16) % 10**4:04d}{i:04d}"
            external = f"wm{tag}{i:04d}" if wecom else None
            values = {
                "name": f"触达{tag}{i}",
                "phone": phone,
                "home_branch_id": world.branches[branch].id,
            }
            if external:
                values["wecom_external_id"] = external
            patient = await service.create(values)
            for channel in consent_on:
                change = consent.ConsentChange(
                    Purpose.MARKETING, channel, True, "2026-09", "mini_program"
                )
                await consent.record(s, patient, change, "test")
            out.append(Reachable(patient, phone, external))
    return out


async def withdraw(owner: AppState, world: World, who: Reachable, channel: ContactChannel) -> None:
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        patient = await s.scalar(select(Patient).where(Patient.id == who.patient.id))
        change = consent.ConsentChange(Purpose.MARKETING, channel, False, "2026-09", "wecom_chat")
        await consent.record(s, patient, change, "test")


async def tick(
    state: AppState,
    world: World,
    url: str,
    now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
    sms: SmsGateway | None = None,
) -> TickResult:
    gateway = sms or SmsGateway(url, SMS_KEY)
    try:
        return await run_tenant(
            partial(tenant_session, state.sessions, world.tenant_id),
            state.key_provider,
            Backends(gateway, url),
            now or datetime.now(UTC),
            stale_after=stale_after,
        )
    finally:
        await gateway.aclose()


SEGMENT = """mutation($n: String!, $f: SegmentFilterInput!) {
  createSegment(name: $n, filter: $f) { id } }"""
CREATE = """mutation($i: CampaignInput!) { createCampaign(input: $i) {
  id status matched } }"""
LAUNCH = """mutation($id: ID!) { launchCampaign(id: $id) {
  id status matched excludedNoConsent excludedNoAddress excludedByCap } }"""
REACH = """query($id: ID!) { campaign(id: $id) { status reach { audience pending awaitingStaff
  delivered failed withdrawn optedOut expired cancelled visits orders revenue
  convertedPatients } } }"""


async def segment(client: httpx.AsyncClient, token: str, flt: dict[str, Any]) -> str:
    result = await gql(client, SEGMENT, {"n": f"seg-{uuid.uuid4().hex[:8]}", "f": flt}, token)
    assert "errors" not in result, result
    return result["data"]["createSegment"]["id"]


async def campaign(
    client: httpx.AsyncClient,
    token: str,
    segment_id: str,
    channel: str = "SMS",
    content: str = "春季正畸体验日，回复TD退订",
    start: datetime | None = None,
    days: int = 3,
) -> str:
    start = start or datetime.now(UTC) - timedelta(minutes=1)
    variables = {
        "i": {
            "name": f"camp-{uuid.uuid4().hex[:6]}",
            "segmentId": segment_id,
            "channel": channel,
            "content": content,
            "windowStart": start.isoformat(),
            "windowEnd": (start + timedelta(days=days)).isoformat(),
        }
    }
    result = await gql(client, CREATE, variables, token)
    assert "errors" not in result, result
    return result["data"]["createCampaign"]["id"]


async def launch(client: httpx.AsyncClient, token: str, campaign_id: str) -> dict[str, Any]:
    result = await gql(client, LAUNCH, {"id": campaign_id}, token)
    assert "errors" not in result, result
    return result["data"]["launchCampaign"]


async def reach(client: httpx.AsyncClient, token: str, campaign_id: str) -> dict[str, Any]:
    result = await gql(client, REACH, {"id": campaign_id}, token)
    assert "errors" not in result, result
    return result["data"]["campaign"]


async def configure_wecom(client: httpx.AsyncClient, world: World) -> None:
    admin = await sign_in(client, world, "hq_admin")
    variables = {"b": world.branch_gid("b1"), "s": CORP_SECRET}
    result = await gql(client, CONFIGURE, variables, admin)
    assert result["data"]["configureWecom"]["bulkSendEnabled"] is True, result
