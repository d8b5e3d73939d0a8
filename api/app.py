"""The FastAPI application: GraphQL at /graphql, /healthz, /readyz and /metrics."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from strawberry.fastapi import GraphQLRouter

from api import metrics, signals
from api.context import AppState, Context
from api.documents import TrustedDocuments
from api.edge_settings import EdgeSettings
from api.errors import describe_failure
from api.exports.routes import exports_router
from api.http_edge import GRAPHQL_REQUEST, GRAPHQL_TRUSTED, GRAPHQL_UPLOADS, GraphQLEdge
from api.limits import MAX_BODY_BYTES, MAX_DOCUMENT_BYTES
from api.metrics import metrics_router
from api.schema import build_schema
from api.wecom.routes import wecom_router
from auth.access_log import RequestInfo
from migrations.runner import head_revision, recorded_revision
from tenancy.leader import StartupLock

log = logging.getLogger(__name__)


def create_app(settings: EdgeSettings, state: AppState) -> FastAPI:
    """The app over a process's state (process.serve builds both from the environment)."""
    engine = state.sessions.kw["bind"]
    signals.count_statements(engine)
    metrics.watch_pool(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.is_production and not settings.trusted_documents_only:
            log.warning(
                "PATIENTPOOL_PERSISTED_QUERIES=allow: any GraphQL document is accepted, not "
                "only the trusted ones"
            )
        # Of several processes serving this database, one resumes the jobs (tenancy.leader).
        startup = StartupLock(
            engine.url.render_as_string(hide_password=False),
            transaction_pooled=settings.database_pooler == "pgbouncer",
        )
        try:
            if await startup.acquire():
                log.info("start-up work: this process resumes background jobs")
                await state.jobs.resume()
            else:
                log.info("start-up work: left to the process holding the start-up lock")
        except Exception as exc:  # noqa: BLE001  (serving goes on; the jobs resume next start)
            log.error("could not resume background jobs: %s", describe_failure(exc))
        # Everything built so far (schema, models, policy caches) lives as long as the process:
        # freezing it keeps the collector from re-scanning it on every full collection, which
        # otherwise pauses a request for tens of milliseconds now and then (the p99).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await startup.release()
            await engine.dispose()
            metrics.process_stopped()

    async def get_context(request: HTTPConnection) -> Context:
        # HTTPConnection, not Request: a WebSocket handshake reaches here too, and is then
        # refused by the router (no subprotocols are offered).
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        record = signals.current()
        info = RequestInfo(
            request_id=record.request_id
            if record is not None
            else signals.request_id_from(request.headers.get("x-request-id", "")),
            client_addr=request.client.host if request.client else "",
            user_agent=request.headers.get("user-agent", "")[:300],
        )
        edge = request.scope.get("state", {})
        sent = edge.get(GRAPHQL_REQUEST) or {}
        return Context(
            state,
            bearer,
            info,
            sent.get("operationName"),
            edge.get(GRAPHQL_UPLOADS),
            trusted_document=edge.get(GRAPHQL_TRUSTED),
        )

    app = FastAPI(
        title="patientpool",
        lifespan=lifespan,
        docs_url=None if settings.is_production else "/docs",
        redoc_url=None,
        openapi_url=None if settings.is_production else "/openapi.json",
    )
    app.state.patientpool = state
    router: GraphQLRouter = GraphQLRouter(
        build_schema(settings),
        context_getter=get_context,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=False,
        multipart_uploads_enabled=False,
        # No subscriptions, so no WebSocket endpoint: nothing to authenticate on connect.
        subscription_protocols=(),
    )
    app.include_router(router, prefix="/graphql")
    app.add_middleware(
        GraphQLEdge,
        path="/graphql",
        max_body_bytes=MAX_BODY_BYTES,
        max_document_bytes=MAX_DOCUMENT_BYTES,
        max_upload_bytes=settings.max_upload_bytes,
        documents=TrustedDocuments(state.sessions),
        trusted_only=settings.trusted_documents_only,
        graphiql=settings.graphiql_enabled,
    )
    app.include_router(wecom_router(state))
    app.include_router(exports_router(state))
    if settings.metrics_networks:
        app.include_router(metrics_router(settings))
    # Outermost: every request gets its id before anything else runs, and its log line after.
    app.add_middleware(signals.RequestSignals)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            async with state.sessions() as session:
                current = await recorded_revision(session)
        except Exception:  # noqa: BLE001 - any failure means "not ready", the reason is logged
            return JSONResponse({"status": "unavailable", "reason": "database"}, status_code=503)
        if current != head_revision():
            return JSONResponse(
                {"status": "unavailable", "reason": "migrations not at head"}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    return app
