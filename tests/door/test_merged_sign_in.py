"""A merge moves the patient's door with the record: the WeChat identities of the retired
record (openid, unionid) point at the kept one, re-sealed for it, so the patient signing in
again reaches the kept record and sees its history. On a chain made by `tenant create` and the
served API, with the stand-in WeChat, on SQLite and PostgreSQL (where the app role may repoint
an identity and nothing more: migration 0027)."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from api.context import AppState
from api.ids import parse_global_id
from domain.door.models import PatientIdentity
from domain.door.service import IDENTITY_TABLE
from domain.tenants.models import Tenant
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant
from tests.door.conftest import Chain
from tests.door.standin import WeChat
from tests.door.test_patient_door import _entries_about, _history, _sign_in
from tests.support import gql, ok

MERGE = """mutation($k: ID!, $m: ID!) { mergePatients(keepId: $k, mergeId: $m) { id } }"""
MY_ID = "{ myRecord { id } }"


async def _identities(state: AppState, slug: str) -> dict[str, tuple[str, str]]:
    """kind → (patient global id's uuid, the value as it decrypts for that patient's row)."""
    async with state.sessions() as s, s.begin():
        await bind_tenant(s, await s.scalar(select(Tenant.id).where(Tenant.slug == slug)))
        cipher = await load_cipher(s, state.key_provider)
        rows = (await s.scalars(select(PatientIdentity))).all()
        return {
            r.kind: (
                str(r.patient_id),
                cipher.decrypt(
                    r.value_ct, table=IDENTITY_TABLE, column=r.kind, row_id=r.patient_id
                ),
            )
            for r in rows
        }


async def test_after_a_merge_the_patient_signs_in_to_the_kept_record(
    api: httpx.AsyncClient, chain: Chain, wechat: tuple[WeChat, str], door_state: AppState
) -> None:
    fake, _ = wechat
    # A first sign-in that shares no phone: the mini-program makes a lead of its own.
    first = await _sign_in(api, chain.slug, fake.login("o-merge", "u-merge"))
    assert first["newPatient"] is True
    lead = ok(await gql(api, MY_ID, token=first["accessToken"]))["myRecord"]["id"]
    assert lead != chain.patient

    # HQ sees it is the patient they know and merges the lead into their record.
    ok(await gql(api, MERGE, {"k": chain.patient, "m": lead}, token=chain.hq))
    kept = str(parse_global_id(chain.patient, "Patient", "id"))
    assert await _identities(door_state, chain.slug) == {
        "openid": (kept, "o-merge"),
        "unionid": (kept, "u-merge"),
    }

    again = await _sign_in(api, chain.slug, fake.login("o-merge", "u-merge"))
    assert again["newPatient"] is False
    token = again["accessToken"]
    assert ok(await gql(api, MY_ID, token=token))["myRecord"]["id"] == chain.patient

    # Who read my record: the kept record's entries, the merge among them.
    expected = await _entries_about(door_state, chain.slug, chain.patient)
    history = await _history(api, token)
    assert {e["id"] for e in history} == expected
    assert any(e["action"] == "MERGE" for e in history)


ERASE = "mutation($id: ID!) { erasePatient(id: $id) { patient { id } } }"


async def test_an_erased_patient_signing_in_again_starts_one_record_of_their_own(
    api: httpx.AsyncClient, chain: Chain, wechat: tuple[WeChat, str], door_state: AppState
) -> None:
    """Erasure forgets the patient's WeChat identities (their openid and unionid are personal
    data: migration 0029 lets the app delete them). Signing in again makes one new record,
    which the sign-ins after it reach: not a new lead at every sign-in."""
    fake, _ = wechat
    first = await _sign_in(api, chain.slug, fake.login("o-erase", "u-erase"))
    assert first["newPatient"] is True
    erased = ok(await gql(api, MY_ID, token=first["accessToken"]))["myRecord"]["id"]
    ok(await gql(api, ERASE, {"id": erased}, token=chain.hq))
    assert await _identities(door_state, chain.slug) == {}

    again = await _sign_in(api, chain.slug, fake.login("o-erase", "u-erase"))
    assert again["newPatient"] is True
    fresh = ok(await gql(api, MY_ID, token=again["accessToken"]))["myRecord"]["id"]
    assert fresh != erased
    uuid_of = str(parse_global_id(fresh, "Patient", "id"))
    assert await _identities(door_state, chain.slug) == {
        "openid": (uuid_of, "o-erase"),
        "unionid": (uuid_of, "u-erase"),
    }
    third = await _sign_in(api, chain.slug, fake.login("o-erase", "u-erase"))
    assert third["newPatient"] is False
    assert ok(await gql(api, MY_ID, token=third["accessToken"]))["myRecord"]["id"] == fresh
