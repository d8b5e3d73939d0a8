"""The execution shortcut for long scalar lists (api.execution) answers exactly what
graphql-core answers, errors included: each case runs on a schema with the shortcut and one
without, and the two responses must be equal."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
import strawberry

from api.execution import MIN_ENTRIES, Execution

N = MIN_ENTRIES * 3


@strawberry.enum
class Colour(Enum):
    RED = "red"


@strawberry.type
class Query:
    @strawberry.field
    def ints(self) -> list[int]:
        return list(range(N))

    @strawberry.field
    def maybe_ints(self) -> list[int | None]:
        return [None if i % 7 == 0 else i for i in range(N)]

    @strawberry.field
    def null_in_non_null(self) -> list[int] | None:
        return [None if i == N - 5 else i for i in range(N)]

    @strawberry.field
    def too_big(self) -> list[int]:
        return [2**40 if i == 3 else i for i in range(N)]

    @strawberry.field
    def strings_as_ints(self) -> list[int]:
        return [str(i) for i in range(N)]  # type: ignore[misc]

    @strawberry.field
    def decimals(self) -> list[Decimal]:
        return [Decimal(i) / 100 for i in range(N)]

    @strawberry.field
    def ids(self) -> list[strawberry.ID | None]:
        return [strawberry.ID(f"P{i}") if i % 2 else None for i in range(N)]

    @strawberry.field
    def colours(self) -> list[Colour]:
        return [Colour.RED] * N

    @strawberry.field
    def short(self) -> list[bool]:
        return [True, False]


FAST = strawberry.Schema(Query, execution_context_class=Execution)
PLAIN = strawberry.Schema(Query)


def _answer(schema: strawberry.Schema, field: str) -> dict[str, Any]:
    result = schema.execute_sync(f"{{ {field} }}")
    errors = [(e.message, e.path) for e in result.errors or []]
    return {"data": result.data, "errors": errors}


@pytest.mark.parametrize(
    "field",
    [
        "ints",
        "maybeInts",
        "nullInNonNull",
        "tooBig",
        "stringsAsInts",
        "decimals",
        "ids",
        "colours",
        "short",
    ],
)
def test_same_answer_as_graphql_core(field: str) -> None:
    assert _answer(FAST, field) == _answer(PLAIN, field)


def test_errors_name_the_entry() -> None:
    """A null where the list forbids one is reported at its index, as graphql-core does."""
    answer = _answer(FAST, "nullInNonNull")
    assert answer["data"] == {"nullInNonNull": None}
    assert answer["errors"][0][1] == ["nullInNonNull", N - 5]
    assert _answer(FAST, "tooBig")["errors"][0][1] == ["tooBig", 3]


def test_the_shortcut_is_taken() -> None:
    """Long lists of plain values skip graphql-core's per-entry completion."""
    calls = 0
    original = Execution.complete_list_item_value

    def counting(self: Execution, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(self, *args)

    Execution.complete_list_item_value = counting  # type: ignore[method-assign]
    try:
        FAST.execute_sync("{ ints decimals }")
        assert calls == 0
        FAST.execute_sync("{ colours }")  # enum members take graphql-core's path
        assert calls == N
    finally:
        Execution.complete_list_item_value = original  # type: ignore[method-assign]
