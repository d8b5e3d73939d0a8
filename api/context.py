"""Per-request context: one tenant-bound session (one transaction), the principal, the cipher,
the access trail and the DataLoaders. Nothing below `api/` reads this object; it hands the
pieces down as explicit parameters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.fastapi import BaseContext

from api import metrics, signals
from api.edge_settings import EdgeSettings
from api.plans.compiler import PlanCache
from auth import access_log
from auth.access_log import AccessEvent, RequestInfo
from auth.principal import Principal
from auth.sessions import SignInLimits, check_bearer, principal_from_bearer
from auth.signing_keys import SigningKeys
from auth.tokens import AccessClaims
from auth.trail import AccessTrail
from domain.pool.models import Job
from tenancy.keyring import FieldCipher, KeyProvider
from tenancy.keystore import load_cipher
from tenancy.session import tenant_session


class BackgroundJobs(Protocol):
    """What the serving process does with background jobs (process.jobs): start one a request
    created, once that request has committed, and resume those a stopped process left."""

    def start(self, job: Job, actor: str) -> object: ...

    async def resume(self) -> object: ...


@dataclass
class AppState:
    """What lives as long as the process: built once at start from validated settings
    (process.serve)."""

    settings: EdgeSettings
    sessions: async_sessionmaker[AsyncSession]
    key_provider: KeyProvider
    signing_keys: SigningKeys
    sign_in_limits: SignInLimits = field(default_factory=SignInLimits.default)
    jobs: BackgroundJobs = field(kw_only=True)
    plans: PlanCache = field(init=False)

    def __post_init__(self) -> None:
        self.plans = PlanCache(enabled=self.settings.compiled_plans)


class Context(BaseContext):
    def __init__(
        self,
        app: AppState,
        bearer: str | None,
        info: RequestInfo,
        requested_operation_name: str | None = None,
        uploads: dict[str, bytes] | None = None,
        trusted_document: str | None = None,
    ) -> None:
        super().__init__()
        self.app = app
        self.bearer = bearer
        # What the client sent as `operationName` (Strawberry's own falls back to the first
        # operation of the document, which hides a missing name).
        self.requested_operation_name = requested_operation_name
        self.request_info = info
        # Files of a multipart request, read by the HTTP edge, by the token it put in their
        # variable's place (api.http_edge).
        self._uploads = uploads or {}
        # The hash of the document when the HTTP edge found it in the trusted registry: its
        # queries run by their compiled plan (api.execution).
        self.trusted_document = trusted_document
        self.request_id = info.request_id
        self.session: AsyncSession = app.sessions()
        self.trail = AccessTrail()
        self.loaders: dict[str, Any] = {}
        self._after_commit: list[Callable[[], None]] = []
        # Loaded once per request, on first use; concurrent resolvers share one future, so they
        # all resume in the same tick (which keeps DataLoader batches whole).
        self._once: dict[str, asyncio.Future[Any]] = {}
        self._ready: dict[str, Any] = {}
        self._finishing = False
        self._claims: tuple[AccessClaims | None] | None = None

    def _load_once(self, name: str, factory: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        if name not in self._once:
            if self._finishing:
                # A resolver a failed operation left running (graphql-core settles them in the
                # background): it gets nothing, and the session is not touched again.
                raise RequestFinished("the operation has ended")
            self._once[name] = asyncio.ensure_future(factory())
        # Shielded: graphql-core cancels the resolvers a failing operation left pending, and a
        # cancellation reaching the load would stop the session mid-statement (it could then
        # neither roll back nor close). The load runs to its end; finish() waits for it.
        return asyncio.shield(self._once[name])

    def upload(self, token: object) -> bytes | None:
        """The bytes of the file an `Upload` variable names, or None (not sent as a file)."""
        return self._uploads.get(token) if isinstance(token, str) else None

    def claims(self) -> AccessClaims | None:
        """The bearer token checked without the database (signature, expiry), once per request:
        its claims (None for a service token), or AuthError. The gate asks first; the principal
        load then uses them instead of verifying the token again."""
        if self._claims is None:
            self._claims = (check_bearer(self.app.signing_keys, self.bearer),)
        return self._claims[0]

    async def principal(self) -> Principal:
        """The caller, verified on first use (so a refused query never touches the database)."""
        claims = self.claims()
        bearer = self.bearer or ""
        return await self._load_once(
            "principal",
            lambda: principal_from_bearer(self.session, self.app.signing_keys, bearer, claims),
        )

    def loaded(self, name: str) -> Any:
        """A per-request value already loaded (principal, cipher), else None: lets hot field
        resolvers answer without an await once the root resolver has loaded what they need
        (remembered on the first read: a page's fields ask hundreds of times)."""
        value = self._ready.get(name)
        if value is None:
            fut = self._once.get(name)
            if fut is None or not fut.done() or fut.cancelled() or fut.exception():
                return None
            value = self._ready[name] = fut.result()
        return value

    async def cipher(self) -> FieldCipher:
        await self.principal()
        return await self._load_once(
            "cipher", lambda: load_cipher(self.session, self.app.key_provider)
        )

    @property
    def _principal(self) -> Principal | None:
        # None while loading, or when the load failed or was cancelled (graphql-core cancels
        # what a failing operation left pending)
        principal: Principal | None = self.loaded("principal")
        return principal

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run once the operation has committed (e.g. start a background job it created)."""
        self._after_commit.append(callback)

    def loader(self, name: str, factory: Any) -> Any:
        """One DataLoader of each kind per request."""
        if name not in self.loaders:
            self.loaders[name] = factory()
        return self.loaders[name]

    async def finish(self, ok: bool) -> None:
        """Commit everything (with its access-log entries) or nothing.

        On failure the change is rolled back, and what was already read is still logged, in a
        transaction of its own.
        """
        # A failing operation can leave a load of ours (the principal, the cipher) running.
        await self._end_loads()
        principal = self._principal
        if ok:
            if principal is not None:
                await _append(self.session, principal, self.request_info, self.trail.events())
            await self.session.commit()
            for callback in self._after_commit:
                callback()
            return
        await _settled(self.session.rollback)
        if principal is None:
            return
        events = self.trail.events(reads_only=True)
        if events:
            async with (
                tenant_session(self.app.sessions, principal.tenant_id) as log_session,
                log_session.begin(),
            ):
                await _append(log_session, principal, self.request_info, events)

    async def close(self) -> None:
        await _settled(self.session.close)

    async def abandon(self) -> None:
        """The operation ended without a result: no new load starts, the ones under way end,
        and the session rolls back and closes."""
        await self._end_loads()
        await self.close()

    async def _end_loads(self) -> None:
        """No per-request load starts from now on, and the ones under way end first (a
        rollback or close would cut them off mid-statement)."""
        self._finishing = True
        pending = [f for f in self._once.values() if not f.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        record, principal = signals.current(), self._principal
        if record is not None and principal is not None:
            record.tenant_id, record.principal_id = principal.tenant_id, principal.id


async def _append(
    session: AsyncSession, principal: Principal, info: RequestInfo, events: list[AccessEvent]
) -> None:
    if not events:
        return
    with metrics.ACCESS_LOG_APPEND.time():
        await access_log.append(session, principal.actor, info, events)


class RequestFinished(Exception):
    """A resolver asked for a per-request load after its operation had ended."""


# How long a rollback or close waits for a statement that a resolver left running when its
# operation failed (graphql-core settles such resolvers in the background) to end.
SETTLE_TRIES, SETTLE_PAUSE = 200, 0.005


async def _settled(step: Callable[[], Awaitable[None]]) -> None:
    """Run the session's rollback or close once no statement is in progress on it."""
    for _ in range(SETTLE_TRIES - 1):
        try:
            await step()
            return
        except InvalidRequestError:  # "… is already in progress"
            await asyncio.sleep(SETTLE_PAUSE)
    await step()


def new_request_id() -> str:
    return uuid.uuid4().hex
