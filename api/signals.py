"""One record per HTTP request: its id, what it ran, for whom, how it ended, how long it took
and how many SQL statements it sent; written as one log line (`patientpool.requests`) and
counted for /metrics (api.metrics).

The record lives in a context variable that `RequestSignals`, the outermost middleware, sets
for the request. Everything the request runs shares it: the resolvers, DataLoader batches
(tasks copy the context) and SQLAlchemy's sync events (its greenlets run in the caller's
context), so the engine's statement event counts into the right request.

Only ids and codes go in: the operation's name, never its variables; the principal's id,
never an e-mail (DESIGN.md invariant 6).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from api import metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("patientpool.requests")
REQUEST_ID_HEADER = b"x-request-id"
# A request id a client or proxy sent is kept when it looks like one (no spaces, no quotes:
# it is written into log lines and the access log).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Probes and scrapes run every few seconds: neither logged nor counted.
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class RequestRecord:
    request_id: str
    path: str
    operation: str | None = None
    tenant_id: uuid.UUID | None = None
    principal_id: uuid.UUID | None = None
    code: str | None = None
    sql_statements: int = 0


_current: ContextVar[RequestRecord | None] = ContextVar("patientpool_request", default=None)


def current() -> RequestRecord | None:
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_from(given: str) -> str:
    return given if _REQUEST_ID.match(given) else new_request_id()


def note_code(code: str) -> None:
    """How the request ended, for a caller outside GraphQL execution (the HTTP edge)."""
    record = _current.get()
    if record is not None and record.code is None:
        record.code = code


def count_statements(engine: AsyncEngine) -> None:
    """Count each SQL statement the engine sends into the request it runs for (idempotent)."""
    sync = engine.sync_engine
    if not event.contains(sync, "before_cursor_execute", _count):
        event.listen(sync, "before_cursor_execute", _count)


def _count(*_args: object) -> None:
    record = _current.get()
    if record is not None:
        record.sql_statements += 1


class RequestSignals:
    """The outermost ASGI middleware: gives each request its id (answered as `x-request-id`),
    then logs and counts it once it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for key, value in scope.get("headers", ()):
            if key.lower() == REQUEST_ID_HEADER:
                given = value.decode("latin-1")
                break
        record = RequestRecord(request_id_from(given), scope.get("path", ""))
        token = _current.set(record)
        status = 500
        started = time.perf_counter()

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, record.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            _current.reset(token)
            if record.path not in _QUIET:
                _finish(record, status, time.perf_counter() - started)


def _finish(record: RequestRecord, status: int, seconds: float) -> None:
    code = record.code or ("OK" if status < 400 else f"HTTP_{status}")
    label = metrics.operation_label(record.operation)
    named = label != "-"
    if not named and record.path != "/graphql":
        label = "http:" + "/".join(record.path.split("/")[:2])
    metrics.REQUESTS.labels(label, code).inc()
    metrics.LATENCY.labels(label).observe(seconds)
    fields: dict[str, Any] = {
        "request_id": record.request_id,
        "path": record.path[:200],
        "operation": record.operation if named else None,
        "tenant_id": str(record.tenant_id) if record.tenant_id else None,
        "principal_id": str(record.principal_id) if record.principal_id else None,
        "status": status,
        "code": code,
        "duration_ms": round(seconds * 1000, 2),
        "sql_statements": record.sql_statements,
    }
    text = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
    log.info("request %s", text, extra={"fields": fields})
