"""Relay connections: `edges { cursor node }`, `pageInfo`, `totalCount`, opaque cursors, and a
cap on `first` that answers BAD_USER_INPUT past it."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from bisect import bisect_right
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Generic, TypeVar

import strawberry

from domain.errors import BadInput
from domain.paging import Keyset, KeysetPage

T = TypeVar("T")
R = TypeVar("R")
MAX_FIRST = 100
DEFAULT_FIRST = 20


def check_first(first: int | None) -> int:
    if first is None:
        return DEFAULT_FIRST
    if first < 0 or first > MAX_FIRST:
        raise BadInput(f"first must be between 0 and {MAX_FIRST}", field="first")
    return first


def encode_cursor(values: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, width: int) -> list[str] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadInput("after is not a valid cursor", field="after") from None
    if not (isinstance(values, list) and len(values) == width):
        raise BadInput("after is not a valid cursor", field="after")
    if not all(isinstance(v, str) for v in values):
        raise BadInput("after is not a valid cursor", field="after")
    return values


@strawberry.type(description="Where a page stands in its list (Relay).")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow this page.")
    has_previous_page: bool = strawberry.field(
        description="Always false: lists are paged forward with `after`."
    )
    start_cursor: str | None = strawberry.field(description="Cursor of the first edge.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")


@strawberry.type(description="One item of a list and its cursor.")
class Edge(Generic[T]):
    # The item's sort key: encoded only when `cursor` is asked for (a list page usually asks
    # only for `pageInfo.endCursor`).
    _key: strawberry.Private[list[str]]

    @strawberry.field(description="Opaque position of this item.")
    def cursor(self) -> str:
        return encode_cursor(self._key)

    node: T = strawberry.field(description="The item.")


@strawberry.type(description="A page of a list (Relay connection).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The items of this page.")
    page_info: PageInfo = strawberry.field(description="Paging state.")
    _count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many items the whole list holds (within your scope).")
    async def total_count(self) -> int:
        return await self._count()


def make_connection(
    items: list[T],
    keys: list[list[str]],
    has_next: bool,
    count: Callable[[], Awaitable[int]],
) -> Connection[T]:
    """A page of `items` with their sort keys (each item's cursor is its key, encoded)."""
    edges = [Edge(node=n, _key=k) for k, n in zip(keys, items, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=False,
            start_cursor=encode_cursor(keys[0]) if keys else None,
            end_cursor=encode_cursor(keys[-1]) if keys else None,
        ),
        _count=count,
    )


def keyset_position(first: int | None, after: str | None) -> tuple[int, Keyset | None]:
    """The page size and the position a (time, id) keyset list resumes from, as the
    repositories' page methods take them (`domain.paging`)."""
    limit = check_first(first)
    key = decode_cursor(after, 2)
    if key is None:
        return limit, None
    try:
        return limit, Keyset(datetime.fromisoformat(key[0]), uuid.UUID(key[1]))
    except ValueError:
        raise BadInput("after is not a valid cursor", field="after") from None


def _keys(page: KeysetPage[R]) -> list[list[str]]:
    return [[k.at.isoformat(), str(k.id)] for k in page.keys]


def keyset_connection(page: KeysetPage[R], items: list[T]) -> Connection[T]:
    """The connection of a keyset page: `items` are the API's objects for `page.rows`."""
    return make_connection(items, _keys(page), page.has_next, page.count)


def held_connection(
    items: list[tuple[tuple[str, ...], T]], width: int, first: int | None, after: str | None
) -> Connection[T]:
    """A connection over a small, bounded set read in full (tags, branches, roles…): items
    come with a unique sort key of `width` strings, which is also their cursor, so a page
    stays right when items are added or removed elsewhere in the list."""
    limit = check_first(first)
    ordered = sorted(items, key=lambda kv: kv[0])
    key = decode_cursor(after, width)
    start = 0 if key is None else bisect_right([k for k, _ in ordered], tuple(key))
    page = ordered[start : start + limit]
    total = len(ordered)

    async def count() -> int:
        return total

    return make_connection(
        [node for _, node in page],
        [list(k) for k, _ in page],
        start + limit < total,
        count,
    )


async def ranked_connection(
    fetch: Callable[[int], Awaitable[list[R]]],
    present: Callable[[list[R]], Awaitable[list[T]]],
    count: Callable[[], Awaitable[int]],
    first: int | None,
    after: str | None,
) -> Connection[T]:
    """A connection over a ranking computed per request (top referrers, duplicate groups):
    the cursor is the rank, `fetch(n)` returns the top n, `present` turns the page's items
    into the API's (one batch for the page)."""
    limit = check_first(first)
    key = decode_cursor(after, 1)
    try:
        start = 0 if key is None else int(key[0])
    except ValueError:
        raise BadInput("after is not a valid cursor", field="after") from None
    if start < 0:
        raise BadInput("after is not a valid cursor", field="after")
    ranked = await fetch(start + limit + 1)
    page = ranked[start : start + limit]
    keys = [[str(start + i + 1)] for i in range(len(page))]
    return make_connection(await present(page), keys, len(ranked) > start + limit, count)
