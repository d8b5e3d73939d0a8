"""The patient's door on a chain made as a customer makes one (`patientpool tenant create`,
then the served API), with WeChat's API stood in on loopback and an SMS gateway address so
campaigns can be launched (nothing is sent in these tests)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from api.app import create_app
from api.context import AppState
from tests.campaigns.standin import Served
from tests.chain.conftest import (  # noqa: F401 - fixtures
    chain_env,
    chain_state,
    master_key_text,
    operator,
)
from tests.door.standin import WeChat


@pytest.fixture
def wechat() -> Iterator[tuple[WeChat, str]]:
    fake = WeChat()
    with Served(fake.app()) as served:
        yield fake, served.url


@pytest.fixture
def door_state(chain_state: AppState, wechat: tuple[WeChat, str]) -> AppState:  # noqa: F811
    url = wechat[1]
    settings = chain_state.settings.model_copy(
        update={"wechat_api_url": url, "sms_api_url": url, "sms_api_key": "unused"}
    )
    return dataclasses.replace(chain_state, settings=settings)


@pytest.fixture
async def api(door_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(door_state.settings, door_state)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
