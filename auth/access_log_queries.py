"""Reading the access log: filters pushed into SQL, newest first by sequence.

A patient filter reads the index of touched patients (`access_log_patients`, primary key
tenant, patient, seq): the newest entries about one patient are one backward range scan
joined to the entries, whatever the log's size."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.access_log import AccessLogEntry, AccessLogPatient, AccessLogSegment


@dataclass(frozen=True)
class LogFilter:
    patient_id: uuid.UUID | None = None
    actor_id: str | None = None
    actions: frozenset[str] = frozenset()
    outcomes: frozenset[str] = frozenset()
    field_group: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.actor_id is not None:
            out.append(AccessLogEntry.actor_id == self.actor_id)
        if self.actions:
            out.append(AccessLogEntry.action.in_(sorted(self.actions)))
        if self.outcomes:
            out.append(AccessLogEntry.outcome.in_(sorted(self.outcomes)))
        if self.field_group is not None:
            out.append(AccessLogEntry.field_groups.like(f"%{self.field_group}%"))
        if self.since is not None:
            out.append(AccessLogEntry.occurred_at >= self.since)
        if self.until is not None:
            out.append(AccessLogEntry.occurred_at < self.until)
        return out


def _entries(flt: LogFilter, *columns: Any) -> Select[Any]:
    """Entries matching the filter; about one patient, through the index of touched patients
    (ordered and bounded on the index's seq, so the range scan stops at the page's end)."""
    if flt.patient_id is None:
        return select(*columns).select_from(AccessLogEntry).where(*flt.clauses())
    return (
        select(*columns)
        .select_from(AccessLogPatient)
        .join(
            AccessLogEntry,
            (AccessLogEntry.tenant_id == AccessLogPatient.tenant_id)
            & (AccessLogEntry.seq == AccessLogPatient.seq),
        )
        .where(AccessLogPatient.patient_id == flt.patient_id, *flt.clauses())
    )


def _seq(flt: LogFilter) -> Any:
    return AccessLogEntry.seq if flt.patient_id is None else AccessLogPatient.seq


async def page(
    session: AsyncSession, flt: LogFilter, limit: int, before_seq: int | None
) -> Sequence[AccessLogEntry]:
    stmt = _entries(flt, AccessLogEntry)
    if before_seq is not None:
        stmt = stmt.where(_seq(flt) < before_seq)
    stmt = stmt.order_by(_seq(flt).desc()).limit(limit)
    return (await session.scalars(stmt)).all()


async def count(session: AsyncSession, flt: LogFilter) -> int:
    if flt.patient_id is not None and not flt.clauses():
        # All of one patient's entries: the index rows alone (an index-only range scan),
        # never a visit to each entry. Index rows outlive archived entries (both tables are
        # append-only), and archiving takes the log's oldest entries, so the live ones are
        # those after the last archived segment.
        archived = select(func.coalesce(func.max(AccessLogSegment.last_seq), 0))
        stmt = select(func.count()).where(
            AccessLogPatient.patient_id == flt.patient_id,
            AccessLogPatient.seq > archived.scalar_subquery(),
        )
    else:
        stmt = _entries(flt, func.count())
    return int(await session.scalar(stmt) or 0)
