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
    Operator,
    chain_env,
    chain_state,
    master_key_text,
    new_chain,
    operator,
    sign_in_pair,
)
from tests.door.standin import APP_ID, APP_SECRET, WeChat
from tests.support import gql, ok, patient_values


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


CONFIGURE = (
    "mutation($b: ID!, $names: Boolean!) { configureMiniProgram("
    f'appId: "{APP_ID}", secret: "{APP_SECRET}", defaultBranchId: $b, showStaffNames: $names)'
    " { appId showStaffNames defaultBranch { id } } }"
)
CREATE_PATIENT = """mutation($i: CreatePatientInput!) { createPatient(input: $i) {
  patient { id } } }"""


@dataclasses.dataclass
class Chain:
    slug: str
    hq: str  # the HQ admin's access token
    branch: str  # the first branch's global id
    patient: str  # a patient HQ made, with a phone
    phone: str
    name: str
    other: str  # another patient HQ made
    other_phone: str


async def _chain(api: httpx.AsyncClient, op: Operator, unique: str) -> Chain:
    slug = f"door-{unique}"
    password = await new_chain(op, slug, "--branch-name", "上海徐汇店", "--branch-city", "上海")
    hq = (await sign_in_pair(api, slug, f"admin@{slug}.test", password))["accessToken"]
    branches = ok(await gql(api, "{ branches { edges { node { id } } } }", token=hq))
    branch = branches["branches"]["edges"][0]["node"]["id"]
    ids, values = [], []
    for n in range(2):
        v = patient_values(n, f"door-{unique}")
        made = await gql(
            api,
            CREATE_PATIENT,
            {"i": {"name": v["name"], "phone": v["phone"], "homeBranchId": branch}},
            token=hq,
        )
        ids.append(ok(made)["createPatient"]["patient"]["id"])
        values.append(v)
    ok(await gql(api, CONFIGURE, {"b": branch, "names": False}, token=hq))
    return Chain(
        slug, hq, branch, ids[0], values[0]["phone"], values[0]["name"], ids[1], values[1]["phone"]
    )


@pytest.fixture
async def chain(api: httpx.AsyncClient, operator: Operator, unique: str) -> Chain:  # noqa: F811
    return await _chain(api, operator, unique)
