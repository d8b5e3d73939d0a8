"""Operator commands behind the CLI: the few paths that act on a tenant by its slug."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth import access_log
from auth.access_log import Actor, RequestInfo
from auth.access_log_archive import ArchiveResult, LogVerifyResult, archive_log, verify_log
from auth.policy import load_policy
from auth.provisioning import create_tenant
from auth.staff import StaffService
from auth.trail import AccessTrail
from domain.errors import DomainError
from domain.patients.reencrypt import reencrypt_patients
from domain.referrals import figures
from domain.tenants.branches import BranchService
from domain.tenants.repository import TenantRepository
from process.settings import Settings
from tenancy.keyring import LocalKeyProvider
from tenancy.keystore import (
    load_cipher,
    retire_data_keys_below,
    rotate_data_key,
    shred_tenant_keys,
)
from tenancy.session import make_engine, session_factory, tenant_session


@asynccontextmanager
async def owner_sessions(cfg: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions as the owner role, for the length of one command."""
    engine = make_engine(cfg.owner_database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def owner_session(cfg: Settings) -> AsyncIterator[AsyncSession]:
    """One session as the owner role, bound to no tenant (tenant create, lookups by slug)."""
    async with owner_sessions(cfg) as sessions, sessions() as session:
        yield session


@asynccontextmanager
async def owner_tenant_session(cfg: Settings, slug: str) -> AsyncIterator[AsyncSession]:
    """A session as the owner role bound to the tenant `slug` names (ValueError if none)."""
    async with owner_sessions(cfg) as sessions, slug_session(sessions, slug) as session:
        yield session


@asynccontextmanager
async def slug_session(
    sessions: async_sessionmaker[AsyncSession], slug: str
) -> AsyncIterator[AsyncSession]:
    """A session from `sessions` bound to the tenant `slug` names (ValueError if none)."""
    async with sessions() as session, session.begin():
        tenant = await _tenant_id(session, slug)
    async with tenant_session(sessions, tenant) as session:
        yield session


def provider(cfg: Settings) -> LocalKeyProvider:
    return LocalKeyProvider.from_text(cfg.master_key_text())


async def _tenant_id(session: AsyncSession, slug: str) -> uuid.UUID:
    found = await TenantRepository(session).id_by_slug(slug)
    if found is None:
        raise ValueError(f"no tenant with slug {slug!r}")
    return found


async def create_tenant_command(
    cfg: Settings,
    slug: str,
    name: str,
    admin_email: str,
    kind: str,
    branch_name: str | None = None,
    branch_city: str = "",
    branch_code: str = "main",
) -> str:
    async with owner_session(cfg) as session, session.begin():
        try:
            created = await create_tenant(
                session,
                provider(cfg),
                slug=slug,
                name=name,
                admin_email=admin_email,
                kind=kind,
                branch_name=branch_name,
                branch_city=branch_city,
                branch_code=branch_code,
            )
        except DomainError as exc:
            raise ValueError(exc.message) from None
    return created.admin_password


CLI_ACTOR = Actor("system", "cli:staff-invite")


async def invite_command(
    cfg: Settings,
    slug: str,
    email: str,
    roles: list[str],
    branch_codes: list[str],
    name: str | None = None,
) -> str:
    """An invitation made by the platform operator (e.g. a chain's first auditor, whom its
    HQ admins cannot appoint: they do not hold the access log's permissions). Logged as an
    administrative entry by `system`."""
    async with owner_tenant_session(cfg, slug) as session, session.begin():
        branches = BranchService(session)
        picked = []
        for code in branch_codes:
            branch = await branches.by_code(code)
            if branch is None:
                raise ValueError(f"no branch with code {code!r}")
            picked.append(branch)
        trail = AccessTrail()
        try:
            _user, token = await StaffService(session, trail).invite(
                await load_policy(session),
                None,
                email=email,
                name=name or email.split("@", 1)[0],
                roles=set(roles),
                branches=picked,
            )
        except DomainError as exc:
            raise ValueError(exc.message) from None
        await access_log.append(session, CLI_ACTOR, RequestInfo(), trail.events())
    return token


async def rotate_command(cfg: Settings, slug: str) -> int:
    async with owner_tenant_session(cfg, slug) as session, session.begin():
        return await rotate_data_key(session, provider(cfg))


async def reencrypt_command(
    cfg: Settings, slug: str, batch: int, progress: Callable[[str], None], retire: bool = False
) -> int:
    keys = provider(cfg)
    async with owner_tenant_session(cfg, slug) as session:
        async with session.begin():
            cipher = await load_cipher(session, keys)
        moved = await reencrypt_patients(session, cipher, batch, progress)
        if retire:
            async with session.begin():
                gone = await retire_data_keys_below(session, cipher.active_version)
            progress(f"retired {gone} old data key(s)")
        return moved


async def shred_command(cfg: Settings, slug: str) -> None:
    """Crypto-shred a tenant: its keys are deleted and its sealed fields can never be read."""
    async with owner_tenant_session(cfg, slug) as session, session.begin():
        await shred_tenant_keys(session)


async def _each_tenant(cfg: Settings, slug: str | None) -> list[tuple[uuid.UUID, str]]:
    async with owner_session(cfg) as session, session.begin():
        tenants = await TenantRepository(session).ids_and_slugs(slug)
    if slug is not None and not tenants:
        raise ValueError(f"no tenant with slug {slug!r}")
    return tenants


async def verify_command(cfg: Settings, slug: str | None) -> list[tuple[str, LogVerifyResult]]:
    out: list[tuple[str, LogVerifyResult]] = []
    for tenant_id, tenant_slug in await _each_tenant(cfg, slug):
        async with (
            owner_sessions(cfg) as sessions,
            tenant_session(sessions, tenant_id) as session,
            session.begin(),
        ):
            out.append((tenant_slug, await verify_log(session, cfg.archive_dir)))
    return out


async def referral_figures_command(
    cfg: Settings, slug: str | None, only_check: bool, progress: Callable[[str], None]
) -> list[tuple[str, figures.Check]]:
    """Per tenant: compare the stored referral figures with a recomputation, and unless
    `only_check`, rebuild them (one transaction per tenant; safe to stop and run again)."""
    out: list[tuple[str, figures.Check]] = []
    for tenant_id, tenant_slug in await _each_tenant(cfg, slug):
        async with (
            owner_sessions(cfg) as sessions,
            tenant_session(sessions, tenant_id) as session,
            session.begin(),
        ):
            progress(f"{tenant_slug}: checking referral figures")
            checked = await figures.check(session)
            if checked.drifted and not only_check:
                progress(f"{tenant_slug}: rebuilding")
                await figures.rebuild(session)
        out.append((tenant_slug, checked))
    return out


async def archive_command(
    cfg: Settings, slug: str | None, progress: Callable[[str], None]
) -> list[tuple[str, ArchiveResult]]:
    out: list[tuple[str, ArchiveResult]] = []
    for tenant_id, tenant_slug in await _each_tenant(cfg, slug):
        async with owner_sessions(cfg) as sessions, tenant_session(sessions, tenant_id) as session:
            progress(f"{tenant_slug}: archiving")
            result = await archive_log(session, cfg.archive_dir, progress=progress)
            out.append((tenant_slug, result))
    return out


async def campaigns_send_command(
    cfg: Settings, slug: str | None, once: bool, interval: float, progress: Callable[[str], None]
) -> bool:
    """The sender loop, as the application role (row-level security applies). A tenant whose
    pass fails is reported in one line and retried on the next pass; the others go on.
    Returns whether the last pass had no failure."""
    from domain.campaigns.backends import SmsGateway
    from process.campaign_sender import Backends, run_tenant

    keys = provider(cfg)
    engine = make_engine(cfg.app_database_url)
    sms = SmsGateway(cfg.sms_api_url, cfg.sms_api_key or "") if cfg.sms_api_url else None
    backends = Backends(sms, cfg.wecom_api_url, cfg.survey_url)
    try:
        sessions = session_factory(engine)
        while True:
            clean = True
            for tenant_id, tenant_slug in await _each_tenant(cfg, slug):  # new tenants too
                try:
                    result = await run_tenant(
                        partial(tenant_session, sessions, tenant_id),
                        keys,
                        backends,
                        datetime.now(UTC),
                        lambda m, t=tenant_slug: progress(f"{t}: {m}"),
                    )
                except Exception as exc:  # noqa: BLE001 - one line, then the next tenant
                    clean = False
                    reason = str(exc).splitlines()[0][:200] if str(exc) else ""
                    progress(f"{tenant_slug}: pass failed: {type(exc).__name__}: {reason}")
                    continue
                if result.queued or result.outcomes or result.expired:
                    progress(
                        f"{tenant_slug}: queued {result.queued}; "
                        f"{result.sent or 'nothing sent'}; expired {result.expired}"
                    )
            if once:
                return clean
            await asyncio.sleep(interval)
    finally:
        if sms is not None:
            await sms.aclose()
        await engine.dispose()


async def db_check_command(cfg: Settings) -> list[str]:
    """`check_deployment` as the app's own login role (PATIENTPOOL_DATABASE_URL)."""
    from tenancy.deployment import check_deployment

    engine = make_engine(cfg.app_database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(check_deployment, cfg.deployment_app_role)
    finally:
        await engine.dispose()
