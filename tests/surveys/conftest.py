"""Survey fixtures: the campaigns' stand-in provider, an app that knows the survey page, and
patients (values from tests.support.patient_values) with marketing consent on SMS."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import httpx
import pytest

from api.app import create_app
from api.context import AppState
from domain.campaigns.backends import SmsGateway
from domain.consent import service as consent
from domain.consent.models import ContactChannel, Purpose
from domain.patients.models import Patient
from domain.patients.service import PatientService
from process.campaign_sender import Backends, TickResult, run_tenant
from tenancy.keyring import normalise_phone
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant, tenant_session
from tests.campaigns.conftest import provider  # noqa: F401 - the stand-in, as a fixture
from tests.campaigns.standin import SMS_KEY, StandIn
from tests.support import World, build_world, patient_values

SURVEY_URL = "https://survey.example.test/s"


@pytest.fixture
def survey_state(state: AppState, provider: tuple[StandIn, str]) -> AppState:  # noqa: F811
    url = provider[1]
    cfg = state.settings.model_copy(
        update={
            "sms_api_url": url,
            "sms_api_key": SMS_KEY,
            "wecom_api_url": url,
            "survey_url": SURVEY_URL,
        }
    )
    return dataclasses.replace(state, settings=cfg)


@pytest.fixture
async def sclient(survey_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(survey_state.settings, survey_state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"s-{unique}")


@pytest.fixture
async def other(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"so-{unique}")


@dataclass
class Reached:
    patient: Patient
    phone: str  # as the gateway receives it


async def add_patients(
    owner: AppState, world: World, branches: list[str], *, consent_sms: bool = True
) -> list[Reached]:
    """One patient per entry of `branches`, with SMS marketing consent."""
    out = []
    tag = f"sv{uuid.uuid4().hex[:6]}"
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        service = PatientService(s, await load_cipher(s, owner.key_provider))
        for i, branch in enumerate(branches):
            values = patient_values(i, tag)
            patient = await service.create({**values, "home_branch_id": world.branches[branch].id})
            if consent_sms:
                change = consent.ConsentChange(
                    Purpose.MARKETING, ContactChannel.SMS, True, "2026-09", "mini_program"
                )
                await consent.record(s, patient, change, "test")
            out.append(Reached(patient, normalise_phone(values["phone"])))
    return out


async def withdraw_sms(owner: AppState, world: World, patient: Patient) -> None:
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        row = await s.get(Patient, (world.tenant_id, patient.id))
        change = consent.ConsentChange(
            Purpose.MARKETING, ContactChannel.SMS, False, "2026-09", "wecom_chat"
        )
        await consent.record(s, row, change, "test")


async def tick(state: AppState, world: World, url: str, now: datetime | None = None) -> TickResult:
    """One pass of the sender (campaigns and surveys) for `world`, at `now`."""
    gateway = SmsGateway(url, SMS_KEY)
    try:
        return await run_tenant(
            partial(tenant_session, state.sessions, world.tenant_id),
            state.key_provider,
            Backends(gateway, url, SURVEY_URL),
            now or datetime.now(UTC),
        )
    finally:
        await gateway.aclose()


def tokens_by_phone(fake: StandIn) -> dict[str, str]:
    """The survey token each number received (the link's last path segment)."""
    return {
        m["to"]: m["text"].rsplit("/", 1)[1]
        for m in fake.messages.values()
        if SURVEY_URL in m["text"]
    }
