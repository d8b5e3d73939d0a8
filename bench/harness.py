"""Timing and counting helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class StatementCounter:
    """Counts SQL statements sent through an engine (for 'queries per request')."""

    count: int = 0
    _engine: AsyncEngine | None = field(default=None, repr=False)

    def attach(self, engine: AsyncEngine) -> StatementCounter:
        self._engine = engine
        event.listen(engine.sync_engine, "before_cursor_execute", self._hit)
        return self

    def _hit(self, *_args: Any) -> None:
        self.count += 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Figures:
    name: str
    samples_ms: list[float]
    statements_per_call: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        s = self.samples_ms
        cells = [
            self.name,
            f"{statistics.median(s):.2f}",
            f"{percentile(s, 95):.2f}",
            f"{percentile(s, 99):.2f}",
            f"{self.statements_per_call:.1f}",
            *(f"{k}={v}" for k, v in self.extra.items()),
        ]
        return "| " + " | ".join(cells) + " |"


HEADER = "| measure | p50 ms | p95 ms | p99 ms | SQL/call | notes |\n|---|---|---|---|---|---|"


async def measure(
    name: str,
    call: Callable[[], Awaitable[Any]],
    runs: int,
    counter: StatementCounter | None = None,
    warmup: int = 3,
    progress: Callable[[str], None] | None = None,
) -> Figures:
    for _ in range(warmup):
        await call()
    before = counter.count if counter else 0
    samples: list[float] = []
    for i in range(runs):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
        if progress and (i + 1) % max(1, runs // 5) == 0:
            progress(f"{name}: {i + 1}/{runs}")
    per_call = ((counter.count - before) / runs) if counter else 0.0
    return Figures(name, samples, per_call)
