"""Reading the access log for auditors: filters pushed into SQL, newest first by sequence."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.access_log import AccessLogEntry


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
        if self.patient_id is not None:
            # patient_ids is a JSON list of quoted uuid strings: a LIKE on the quoted id is
            # exact (uuids have fixed length) and works the same on SQLite and PostgreSQL.
            out.append(AccessLogEntry.patient_ids.like(f'%"{self.patient_id}"%'))
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


async def page(
    session: AsyncSession, flt: LogFilter, limit: int, before_seq: int | None
) -> Sequence[AccessLogEntry]:
    stmt = select(AccessLogEntry).where(*flt.clauses())
    if before_seq is not None:
        stmt = stmt.where(AccessLogEntry.seq < before_seq)
    stmt = stmt.order_by(AccessLogEntry.seq.desc()).limit(limit)
    return (await session.scalars(stmt)).all()


async def count(session: AsyncSession, flt: LogFilter) -> int:
    stmt = select(func.count()).select_from(AccessLogEntry).where(*flt.clauses())
    return int(await session.scalar(stmt) or 0)
