"""Keyset paging on (time, id), the one way repositories page a list statement forward: the
row comparison after the last row seen, the order, one row more than the page (to know if
another page follows) and the count of the whole list, read only when asked for.

The API decodes its cursors into a `Keyset` and encodes the page's `keys` back; no statement
crosses to it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


@dataclass(frozen=True)
class Keyset:
    """A position in a list: the (time, id) of the last row already seen."""

    at: datetime
    id: uuid.UUID


@dataclass(frozen=True)
class KeysetPage(Generic[T]):
    rows: list[T]
    keys: list[Keyset]  # one per row, for the next page's position
    has_next: bool
    count: Callable[[], Awaitable[int]]  # the whole list's size: one statement, when awaited


async def keyset_rows(
    session: AsyncSession,
    stmt: Select[Any],
    model: Any,
    time_column: Any,
    limit: int,
    after: Keyset | None,
) -> KeysetPage[Any]:
    """At most `limit` rows of `stmt` (already scoped to the caller) in (time, id) order,
    after `after`."""
    count_stmt = select(func.count()).select_from(stmt.subquery())
    if after is not None:
        # a row comparison: one index range, however deep the page (see PatientRepository)
        stmt = stmt.where(tuple_(time_column, model.id) > tuple_(after.at, after.id))
    rows = list(await session.scalars(stmt.order_by(time_column, model.id).limit(limit + 1)))
    has_next = len(rows) > limit
    rows = rows[:limit]
    keys = [Keyset(getattr(r, time_column.key), r.id) for r in rows]

    async def count() -> int:
        return int(await session.scalar(count_stmt) or 0)

    return KeysetPage(rows, keys, has_next, count)
