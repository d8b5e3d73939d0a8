"""`patientpool wecom sync-groups --tenant S`: bring a tenant's customer groups in line with
WeCom (groupchat/list, then groupchat/get per group): names and owners set, missing customers
joined, departed ones left, groups WeCom no longer lists dismissed. One transaction per group,
so an interrupted run keeps what it did and the next run finishes it; patients moved to the
strong-private tier are on the access log as the system actor `wecom`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from auth import access_log
from auth.access_log import AccessEvent, Action, Actor, RequestInfo
from domain.tenants.repository import TenantRepository
from domain.wecom import groups
from domain.wecom.callbacks import api_secret
from domain.wecom.groups_api import WecomGroupChats
from domain.wecom.repository import WecomRepository
from process.campaign_sender import TenantSessions
from process.settings import Settings
from tenancy.keyring import KeyProvider, LocalKeyProvider
from tenancy.keystore import load_cipher
from tenancy.session import make_engine, session_factory, tenant_session

ACTOR = Actor("system", "wecom")


class NotConfigured(Exception):
    """The tenant has no WeCom app, or no customer-contact secret to call WeCom's API with."""


@dataclass
class SyncResult:
    groups: int = 0
    joined: int = 0
    left: int = 0
    dismissed: int = 0


async def sync_tenant(
    sessions: TenantSessions,
    keys: KeyProvider,
    api_url: str,
    progress: Callable[[str], None] = lambda _m: None,
    client: WecomGroupChats | None = None,
) -> SyncResult:
    """`sessions` opens a session bound to the tenant (tenancy.session.tenant_session). Raises
    NotConfigured, or the client's WecomError when WeCom cannot be read."""
    async with sessions() as s, s.begin():
        cipher = await load_cipher(s, keys)
        app = await WecomRepository(s).app()
        secret = api_secret(cipher, app) if app is not None else None
        if app is None or not secret:
            raise NotConfigured("no WeCom app with a customer-contact secret (configureWecom)")
        corp_id, branch_id = app.corp_id, app.default_branch_id
    api = client or WecomGroupChats(api_url, corp_id, secret)
    result = SyncResult()
    try:
        chat_ids = [c async for c in api.chat_ids()]
        progress(f"{len(chat_ids)} groups listed by WeCom")
        for n, chat_id in enumerate(chat_ids, 1):
            detail = await api.chat(chat_id)
            detail["chat_id"] = chat_id
            async with sessions() as s, s.begin():
                now = datetime.now(UTC)
                _group, change = await groups.apply_detail(s, cipher, branch_id, detail, now)
                if change.strengthened:
                    await access_log.append(
                        s,
                        ACTOR,
                        RequestInfo(operation_name="wecom:sync-groups"),
                        [AccessEvent(Action.UPDATE, change.strengthened, [])],
                    )
            result.groups += 1
            result.joined += change.joined
            result.left += change.left
            progress(f"group {n}/{len(chat_ids)}: {change.joined} joined, {change.left} left")
        async with sessions() as s, s.begin():
            result.dismissed = await groups.dismiss_missing(s, set(chat_ids), datetime.now(UTC))
    finally:
        if client is None:
            await api.aclose()
    return result


async def sync_groups_command(
    cfg: Settings, slug: str, progress: Callable[[str], None]
) -> SyncResult:
    """As the application role (row-level security applies). Raises ValueError for an unknown
    tenant, NotConfigured, or WecomError."""
    engine = make_engine(cfg.app_database_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as s, s.begin():
            tenant_id = await TenantRepository(s).id_by_slug(slug)
        if tenant_id is None:
            raise ValueError(f"no tenant with slug {slug!r}")
        keys = LocalKeyProvider.from_text(cfg.master_key_text())
        bound = partial(tenant_session, sessions, tenant_id)
        return await sync_tenant(bound, keys, cfg.wecom_api_url, progress)
    finally:
        await engine.dispose()
