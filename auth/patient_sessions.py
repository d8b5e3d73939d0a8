"""Signing a patient in from the chain's mini-program (signInPatient).

The `wx.login` code goes to WeChat's code2Session (and a shared phone code to getPhoneNumber)
outside any database transaction; then one transaction finds or makes the patient's record
(domain.door.service), logs it with the patient as actor, and a patient token is issued: its
own audience and type, so it is never taken for a staff token nor the reverse. Every failure a
caller can cause (unknown chain, no mini-program, a code WeChat refuses) answers alike.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth import access_log
from auth.access_log import Action, Actor, RequestInfo
from auth.roles import PATIENT_ROLE
from auth.sessions import AuthError, SignInLimits
from auth.signing_keys import SigningKeys
from auth.tokens import issue_patient_token
from auth.trail import AccessTrail
from domain.door.repository import DoorRepository
from domain.door.service import DoorService, app_secret
from domain.door.wechat import MiniProgramClient, WeChatError
from domain.patients.models import FieldGroup
from tenancy.keyring import KeyProvider
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant

REFUSED = "WeChat did not confirm this sign-in; call wx.login again and send the new code"


@dataclass(frozen=True)
class PatientToken:
    access_token: str
    expires_in: int
    patient_id: uuid.UUID
    created: bool


def patient_actor(patient_id: uuid.UUID) -> Actor:
    return Actor("patient", str(patient_id), (PATIENT_ROLE,))


async def sign_in_patient(
    sessions: async_sessionmaker[AsyncSession],
    keys: SigningKeys,
    key_provider: KeyProvider,
    limits: SignInLimits,
    wechat_api_url: str,
    *,
    tenant_slug: str,
    code: str,
    phone_code: str | None,
    info: RequestInfo,
    referral_code: str | None = None,
) -> PatientToken:
    if not await limits.patient.hit(sessions, f"{tenant_slug}\x00{info.client_addr}"):
        raise AuthError("too many sign-in attempts; try again later", "RATE_LIMITED")
    if not 1 <= len(code) <= 128 or (phone_code is not None and not 1 <= len(phone_code) <= 128):
        raise AuthError(REFUSED)
    async with sessions() as session, session.begin():
        tenant_id = await DoorRepository(session).tenant_id(tenant_slug)
        if tenant_id is None:
            raise AuthError(REFUSED)
        await bind_tenant(session, tenant_id)
        app = await DoorRepository(session).app()
        if app is None:
            raise AuthError(REFUSED)
        client = MiniProgramClient(
            wechat_api_url, app.app_id, app_secret(await load_cipher(session, key_provider), app)
        )
    # WeChat is asked with no transaction open: a slow answer holds no connection.
    try:
        wechat = await client.code2session(code)
        phone = await client.phone_number(phone_code) if phone_code else None
    except WeChatError:
        raise AuthError(REFUSED) from None
    async with sessions() as session, session.begin():
        await bind_tenant(session, tenant_id)
        app = await DoorRepository(session).app()
        if app is None:
            raise AuthError(REFUSED)
        done = await DoorService(session, await load_cipher(session, key_provider)).sign_in(
            app, wechat, phone, referral_code
        )
        trail = AccessTrail()
        if done.created:
            trail.changed(Action.CREATE, [done.patient.id], [str(FieldGroup.CONTACT)])
        if done.referrer is not None:
            trail.changed(Action.UPDATE, [done.referrer.id])
        elif done.linked:
            trail.changed(Action.UPDATE, [done.patient.id], [str(FieldGroup.CONTACT)])
        await access_log.append(session, patient_actor(done.patient.id), info, trail.events())
        token, expires_in = issue_patient_token(
            keys, tenant_id=tenant_id, patient_id=done.patient.id
        )
    return PatientToken(token, expires_in, done.patient.id, done.created)
