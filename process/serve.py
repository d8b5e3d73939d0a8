"""The served process's state and app: built from validated settings, once per worker."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.context import AppState
from auth.sessions import SignInLimits
from auth.signing_keys import SigningKeys
from process.jobs import ServedJobs, configure_job_sessions
from process.settings import Settings, load_settings
from tenancy.keyring import KeyProvider, LocalKeyProvider
from tenancy.session import make_engine, session_factory


def app_state(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    key_provider: KeyProvider,
    signing_keys: SigningKeys,
    sign_in_limits: SignInLimits | None = None,
) -> AppState:
    """The state one served process shares across requests, its background jobs included."""
    configure_job_sessions(sessions, settings, key_provider)
    return AppState(
        settings,
        sessions,
        key_provider,
        signing_keys,
        sign_in_limits or SignInLimits.default(),
        jobs=ServedJobs(sessions),
    )


def build_state(settings: Settings) -> AppState:
    engine = make_engine(
        settings.app_database_url,
        echo=settings.sql_echo,
        pool_size=settings.pool_size,
        pooler=settings.database_pooler,
        pool_timeout=settings.pool_timeout_s,
    )
    return app_state(
        settings,
        session_factory(engine, statement_timeout_ms=settings.statement_timeout_ms),
        LocalKeyProvider.from_text(settings.master_key_text()),
        SigningKeys.from_jwks_json(settings.signing_keys_text()),
    )


def served_app(settings: Settings) -> FastAPI:
    return create_app(settings, build_state(settings))


def app_from_environment() -> FastAPI:
    """One served worker's app (`uvicorn --factory`): the settings come from the environment,
    which `patientpool serve` validated before it started the workers."""
    return served_app(load_settings())
