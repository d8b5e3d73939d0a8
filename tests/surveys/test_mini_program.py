"""A survey on the mini-program channel: the patient signed in from the mini-program (the
stand-in WeChat), with marketing consent there, finds the survey in `mySurveys` after the
sender's pass and answers it; a staff token reaches no `mySurveys`. On a chain made as a
customer makes one (the door's fixtures)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import pytest

from api.app import create_app
from api.context import AppState
from domain.door.repository import DoorRepository
from process.campaign_sender import Backends, run_tenant
from tenancy.session import tenant_session
from tests.chain.conftest import (  # noqa: F401 - fixtures
    Operator,
    chain_env,
    chain_state,
    master_key_text,
    operator,
)
from tests.door.conftest import Chain, _chain, door_state, wechat  # noqa: F401 - fixtures
from tests.door.standin import WeChat
from tests.support import codes, gql, ok
from tests.surveys.conftest import SURVEY_URL
from tests.surveys.test_surveys import ANSWER, FORM, RULE, RULES, TEMPLATE, _answers, _questions

SIGN_IN = """mutation($t: String!, $c: String!, $p: String) {
  signInPatient(tenant: $t, code: $c, phoneCode: $p) { accessToken } }"""
MINE = "{ mySurveys { title token expiresAt } }"


@pytest.fixture
def survey_door_state(door_state: AppState) -> AppState:  # noqa: F811
    settings = door_state.settings.model_copy(update={"survey_url": SURVEY_URL})
    return dataclasses.replace(door_state, settings=settings)


@pytest.fixture
async def sapi(survey_door_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(survey_door_state.settings, survey_door_state)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_the_mini_program_shows_the_survey_to_the_signed_in_patient(
    sapi: httpx.AsyncClient,
    survey_door_state: AppState,
    operator: Operator,  # noqa: F811
    unique: str,
    wechat: tuple[WeChat, str],  # noqa: F811
) -> None:
    fake, url = wechat
    chain: Chain = await _chain(sapi, operator, f"sv{unique}")
    signed = await gql(
        sapi, SIGN_IN, {"t": chain.slug, "c": fake.login("o-sv"), "p": fake.phone_code(chain.phone)}
    )
    patient = ok(signed)["signInPatient"]["accessToken"]
    ok(
        await gql(
            sapi,
            'mutation { grantMyConsent(purpose: MARKETING, channel: MINI_PROGRAM, textVersion: "1")'
            " { current { granted } } }",
            token=patient,
        )
    )
    hq = chain.hq
    ok(await gql(sapi, RULES, None, hq))
    made = ok(await gql(sapi, TEMPLATE, {"i": _questions("小程序体验")}, hq))
    now = datetime.now(UTC)
    rule = {
        "name": "诊后",
        "templateId": made["createSurveyTemplate"]["id"],
        "channels": ["MINI_PROGRAM"],
        "startsAt": (now - timedelta(days=5)).isoformat(),
    }
    ok(await gql(sapi, RULE, {"i": rule}, hq))
    at = (now - timedelta(days=2)).isoformat()
    booked = ok(
        await gql(
            sapi,
            "mutation($p: ID!, $b: ID!, $at: DateTime!) { bookVisit(patientId: $p, branchId: $b, "
            "scheduledAt: $at) { id } }",
            {"p": chain.patient, "b": chain.branch, "at": at},
            hq,
        )
    )
    ok(
        await gql(
            sapi,
            "mutation($id: ID!, $at: DateTime) { markArrived(id: $id, arrivedAt: $at) { id } }",
            {"id": booked["bookVisit"]["id"], "at": at},
            hq,
        )
    )
    assert ok(await gql(sapi, MINE, token=patient))["mySurveys"] == []

    async with survey_door_state.sessions() as s, s.begin():
        tenant_id = await DoorRepository(s).tenant_id(chain.slug)
    assert tenant_id is not None
    result = await run_tenant(
        partial(tenant_session, survey_door_state.sessions, tenant_id),
        survey_door_state.key_provider,
        Backends(None, url, SURVEY_URL),
        datetime.now(UTC),
    )
    assert result.outcomes["survey_delivered"] == 1

    (mine,) = ok(await gql(sapi, MINE, token=patient))["mySurveys"]
    assert mine["title"] == "小程序体验"
    assert ok(await gql(sapi, FORM, {"t": mine["token"]}))["surveyForm"]["title"] == "小程序体验"
    answered = await gql(sapi, ANSWER, {"t": mine["token"], "a": _answers(5, 10)}, patient)
    assert ok(answered)["answerSurvey"]["accepted"] is True
    assert ok(await gql(sapi, MINE, token=patient))["mySurveys"] == []
    # Staff tokens reach no patient field.
    assert codes(await gql(sapi, MINE, token=hq)) == ["FORBIDDEN"]
