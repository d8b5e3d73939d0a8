"""WeCom callback endpoint, one per tenant: `GET|POST /wecom/{tenant}/callback`.

GET answers WeCom's URL check; POST receives external-contact events (domain/wecom). Every
refusal looks the same (403 "refused": unknown tenant, no app, bad signature, stale or
replayed), so the endpoint tells an outsider nothing; malformed XML is 400. What an event does
to a patient is written to the access log, as the system actor `wecom`, in its transaction.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.context import AppState, new_request_id
from auth import access_log
from auth.access_log import AccessEvent, Action, Actor, RequestInfo
from domain.tenants.repository import TenantRepository
from domain.wecom import callbacks
from domain.wecom.models import WecomApp
from domain.wecom.repository import WecomRepository
from tenancy.keyring import FieldCipher, KeyShreddedError
from tenancy.keystore import load_cipher
from tenancy.session import tenant_session

log = logging.getLogger(__name__)
ACTOR = Actor("system", "wecom")
REFUSED = PlainTextResponse("refused", status_code=403)


def wecom_router(state: AppState) -> APIRouter:
    router = APIRouter()

    async def _tenant(slug: str) -> uuid.UUID:
        async with state.sessions() as session, session.begin():
            tenant_id = await TenantRepository(session).id_by_slug(slug)
        if tenant_id is None:
            raise callbacks.Refused("unknown tenant")
        return tenant_id

    async def _app(session: AsyncSession) -> tuple[WecomApp, FieldCipher]:
        app = await WecomRepository(session).app()
        if app is None:
            raise callbacks.Refused("no WeCom app")
        try:
            cipher = await load_cipher(session, state.key_provider)
        except KeyShreddedError:
            raise callbacks.Refused("tenant keys destroyed") from None
        return app, cipher

    @router.get("/wecom/{slug}/callback", include_in_schema=False)
    async def verify(
        slug: str, msg_signature: str, timestamp: str, nonce: str, echostr: str
    ) -> PlainTextResponse:
        try:
            tenant_id = await _tenant(slug)
            async with tenant_session(state.sessions, tenant_id) as session, session.begin():
                app, cipher = await _app(session)
                crypto = callbacks.crypto_for(cipher, app)
            echo = callbacks.verify_url(crypto, msg_signature, timestamp, nonce, echostr)
        except callbacks.Refused as exc:
            log.info("wecom url check refused for %s: %s", slug[:63], exc)
            return REFUSED
        return PlainTextResponse(echo)

    @router.post("/wecom/{slug}/callback", include_in_schema=False)
    async def receive(
        slug: str, request: Request, msg_signature: str, timestamp: str, nonce: str
    ) -> PlainTextResponse:
        body = await request.body()
        info = RequestInfo(
            request_id=new_request_id(),
            client_addr=request.client.host if request.client else "",
            user_agent=request.headers.get("user-agent", "")[:300],
        )
        try:
            tenant_id = await _tenant(slug)
            async with tenant_session(state.sessions, tenant_id) as session, session.begin():
                app, cipher = await _app(session)
                crypto = callbacks.crypto_for(cipher, app)
                event = callbacks.open_message(crypto, body, msg_signature, timestamp, nonce)
                done = await callbacks.handle(session, cipher, app, msg_signature, event)
                if done.patient_id is not None and not done.duplicate:
                    action = Action.CREATE if done.outcome == "created" else Action.UPDATE
                    groups = ["contact"] if done.outcome == "created" else []
                    named = RequestInfo(
                        info.request_id,
                        f"wecom:{event.get('ChangeType', '')}"[:100],
                        info.client_addr,
                        info.user_agent,
                    )
                    await access_log.append(
                        session, ACTOR, named, [AccessEvent(action, [done.patient_id], groups)]
                    )
                if done.patient_ids and not done.duplicate:
                    # a group event moved these patients to the strong-private tier
                    named = RequestInfo(
                        info.request_id,
                        f"wecom:group:{done.outcome}"[:100],
                        info.client_addr,
                        info.user_agent,
                    )
                    changed = [AccessEvent(Action.UPDATE, list(done.patient_ids), [])]
                    await access_log.append(session, ACTOR, named, changed)
        except callbacks.Refused as exc:
            log.info("wecom callback refused for %s: %s", slug[:63], exc)
            return REFUSED
        except callbacks.Malformed as exc:
            log.info("wecom callback malformed for %s: %s", slug[:63], exc)
            return PlainTextResponse("malformed", status_code=400)
        return PlainTextResponse("success")

    return router
