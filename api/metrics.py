"""What the served process counts for Prometheus, and `/metrics` for the addresses allowed.

With several workers (`serve --workers N`) every process writes its values to files under
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode; `serve` sets and empties the
directory before the workers start), and `/metrics` of any worker reports them all together.
One process keeps them in memory. The variable must be set before prometheus_client is
imported, which is why `serve` sets it before it starts the workers.

Labels hold operation names and codes only, never a value of a request.
"""

from __future__ import annotations

import os
import re
from ipaddress import ip_address
from weakref import WeakSet

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from api.edge_settings import EdgeSettings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "patientpool_requests",
    "Requests answered, by GraphQL operation (or HTTP route) and code.",
    ["operation", "code"],
)
LATENCY = Histogram(
    "patientpool_request_duration_seconds",
    "Time from the request's arrival to the end of its answer.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POOL = Gauge(
    "patientpool_db_pool_connections",
    "Database connections of the pool: in use, and its size (it may open as many again "
    "as overflow under load).",
    ["state"],
    multiprocess_mode="livesum",
)
ACCESS_LOG_APPEND = Histogram(
    "patientpool_access_log_append_seconds",
    "Time to append one request's entries to the access log's hash chain.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)

# Operation names come from clients: past this many distinct ones a process reports the rest
# as "other", so a client cannot grow the series without bound.
MAX_OPERATIONS = 200
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,99}$")
_seen: set[str] = set()


def operation_label(name: str | None) -> str:
    """A bounded label for a GraphQL operation name ("-" for none)."""
    if not name or not _NAME.match(name):
        return "-"
    if name in _seen:
        return name
    if len(_seen) >= MAX_OPERATIONS:
        return "other"
    _seen.add(name)
    return name


def watch_pool(engine: AsyncEngine) -> None:
    """Keep the pool gauges current on every checkout and checkin (once per pool)."""
    pool = engine.sync_engine.pool
    checkedout = getattr(pool, "checkedout", None)
    if checkedout is None or pool in _watched:
        return  # SQLite's pool keeps no counts
    _watched.add(pool)

    def count(*_args: object) -> None:
        POOL.labels("in_use").set(checkedout())

    event.listen(pool, "checkout", count)
    event.listen(pool, "checkin", count)
    POOL.labels("size").set(pool.size())  # type: ignore[attr-defined]
    POOL.labels("in_use").set(checkedout())


_watched: WeakSet[object] = WeakSet()


def allowed(settings: EdgeSettings, host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in settings.metrics_networks)


def metrics_router(settings: EdgeSettings) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not allowed(settings, request.client.host if request.client else None):
            # The same answer as a path that does not exist: nothing to learn from it.
            return Response('{"detail":"Not Found"}', 404, media_type="application/json")
        return Response(_exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


def _exposition() -> bytes:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def process_stopped() -> None:
    """A worker going away drops its live gauges from the others' answers."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())
