"""The app as production configures it, for the edge tests: PATIENTPOOL_ENV=production (no
GraphiQL, no introspection, no suggestions), with any document allowed or registered ones only;
and a log capture that scans every line for seeded personal values."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx

from api.app import create_app
from api.context import AppState
from process.settings import Environment


@asynccontextmanager
async def production_client(
    state: AppState, persisted_queries: str = "allow"
) -> AsyncIterator[httpx.AsyncClient]:
    settings = state.settings.model_copy(
        update={"env": Environment.PRODUCTION, "persisted_queries": persisted_queries}
    )
    app = create_app(settings, dataclasses.replace(state, settings=settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://prod"
    ) as client:
        yield client


class LogLines(logging.Handler):
    """Every record of every logger at INFO and above (production's level), formatted as a
    plain formatter would write it: message, and any traceback with its exception messages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def holding(self, values: list[str]) -> list[str]:
        return [line for line in self.lines if any(v in line for v in values)]


@contextmanager
def captured_logs() -> Iterator[LogLines]:
    handler = LogLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
