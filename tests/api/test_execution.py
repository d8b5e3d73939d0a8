"""A compiled plan (api.plans) answers exactly what graphql-core answers, errors included:
each case runs on a schema whose executor plans every query and on the stock one, and the two
responses must be equal. The served oracle, over every trusted document and role, is
tests/chain/test_plans.py."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
import strawberry

from api.execution import Execution
from api.plans import compiler as plans
from api.plans.compiler import Plan, compile_plan
from api.schema import build_schema

N = 200


class Planned(Execution):
    """Plans every query it runs, trusted or not (the served app plans trusted ones only)."""

    runs = 0

    def plan(self) -> Plan | None:
        found = compile_plan(self.schema, self.operation, self.fragment_definitions)
        Planned.runs += found is not None
        return found


@strawberry.enum
class Colour(Enum):
    RED = "red"


@strawberry.type
class Node:
    n: int
    name: str
    amount: Decimal
    flag: bool
    maybe: int | None
    colour: Colour


@strawberry.type
class Computed:
    n: int

    @strawberry.field
    def twice(self) -> int:
        return self.n * 2

    @strawberry.field
    def boom(self) -> int | None:
        raise ValueError(f"boom {self.n}")

    @strawberry.field
    def colour(self) -> Colour:
        return Colour.RED


class Deny(strawberry.BasePermission):
    message = "not for you"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Guarded:
    n: int
    secret: int | None = strawberry.field(default=0, permission_classes=[Deny])


def _node(i: int) -> Node:
    return Node(
        n=i,
        name=f"患者{i}",
        amount=Decimal(i) / 100,
        flag=i % 2 == 0,
        maybe=None if i % 3 else i,
        colour=Colour.RED,
    )


@strawberry.type
class Query:
    @strawberry.field
    def nodes(self) -> list[Node]:
        return [_node(i) for i in range(N)]

    @strawberry.field
    def maybe_nodes(self) -> list[Node | None] | None:
        return [None if i % 4 == 0 else _node(i) for i in range(N)]

    @strawberry.field
    def null_field(self) -> list[Node]:
        nodes = [_node(i) for i in range(N)]
        nodes[7].name = None  # type: ignore[assignment]
        return nodes

    @strawberry.field
    def wrong_type(self) -> list[Node]:
        nodes = [_node(i) for i in range(N)]
        nodes[11].n = "eleven"  # type: ignore[assignment]
        return nodes

    @strawberry.field
    def big_number(self) -> list[Node | None]:
        nodes = [_node(i) for i in range(N)]
        nodes[3].n = 2**40
        return nodes

    @strawberry.field
    def missing_attribute(self) -> list[Node]:
        return [_node(i) if i != 5 else object() for i in range(N)]  # type: ignore[misc]

    @strawberry.field
    def guarded(self) -> list[Guarded]:
        return [Guarded(n=i, secret=i) for i in range(N)]

    @strawberry.field
    def computed(self) -> list[Computed]:
        return [Computed(n=i) for i in range(N)]

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

    @strawberry.field
    def bools(self) -> list[bool | None]:
        return [None if i % 5 == 0 else i % 2 == 0 for i in range(N)]

    @strawberry.field
    def ints_as_bools(self) -> list[bool]:
        return [i % 2 for i in range(N)]  # type: ignore[misc]

    @strawberry.field
    def bools_as_ints(self) -> list[int]:
        return [i % 2 == 0 for i in range(N)]

    @strawberry.field
    def too_small(self) -> list[int | None]:
        return [-(2**31) - 1 if i == 9 else None if i == 4 else -i for i in range(N)]

    @strawberry.field
    def int_edges(self) -> list[int | None]:
        return [None, -(2**31), 2**31 - 1] * (N // 3)

    @strawberry.field
    def strings(self) -> list[str]:
        return [f"患者{i}" for i in range(N)]

    @strawberry.field
    def floats_as_strings(self) -> list[str]:
        return [i / 2 for i in range(N)]  # type: ignore[misc]


class Touchy:
    """An object whose `n` raises something other than AttributeError when read."""

    @property
    def n(self) -> int:
        raise RuntimeError("n is not to be read")


@strawberry.type
class Nested:
    n: int
    inner: Computed | None
    items: list[Computed]


@strawberry.type
class Later:
    n: int

    @strawberry.field
    def twice(self) -> int:
        return self.n * 2

    @strawberry.field
    async def later(self) -> int:
        await asyncio.sleep(0)
        return self.n + 1


@strawberry.type
class Failing:
    @strawberry.field
    async def n(self) -> int:
        raise ValueError("no n here")


@strawberry.type
class Circle:
    r: int


@strawberry.type
class Square:
    side: int


@strawberry.type
class More:
    @strawberry.field
    def nested(self) -> list[Nested]:
        return [Nested(n=i, inner=Computed(n=i) if i % 2 else None, items=[]) for i in range(9)]

    @strawberry.field
    def broken_inner(self) -> list[Nested] | None:
        rows = [Nested(n=i, inner=Computed(n=i), items=[]) for i in range(5)]
        rows[2].inner = "not an object"  # type: ignore[assignment]
        return rows

    @strawberry.field
    def touchy(self) -> list[Computed | None]:
        return [Computed(n=1), Touchy(), Computed(n=3)]  # type: ignore[list-item]

    @strawberry.field
    def raises(self) -> int | None:
        raise ValueError("the resolver failed")

    @strawberry.field
    def raises_in_list(self) -> list[Failing | None]:
        return [Failing(), Failing()]

    @strawberry.field
    async def async_nodes(self) -> list[Later]:
        return [Later(n=i) for i in range(30)]

    @strawberry.field
    async def async_fails(self) -> list[Failing]:
        return [Failing()]

    @strawberry.field
    def shape(self) -> list[Circle | Square]:
        return [Circle(r=1), Square(side=2), Circle(r=3)]

    @strawberry.field
    def maybe_nested(self, n: int) -> Nested | None:
        if n < 0:
            raise ValueError("negative")
        return Nested(n=n, inner=None, items=[Computed(n=n)])


@strawberry.type
class Root(Query, More):
    pass


FAST = strawberry.Schema(Root, execution_context_class=Planned)
PLAIN = strawberry.Schema(Root)


def _answer(schema: strawberry.Schema, field: str) -> dict[str, Any]:
    result = asyncio.run(schema.execute(f"{{ {field} }}"))
    errors = [(e.message, e.path, e.locations) for e in result.errors or []]
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
        "bools",
        "intsAsBools",
        "boolsAsInts",
        "tooSmall",
        "intEdges",
        "strings",
        "floatsAsStrings",
        "nodes { n name amount flag maybe colour }",
        "nodes { a: n b: n ... on Node { name } flag @include(if: false) }",
        "nodes { n __typename }",
        "maybeNodes { n maybe }",
        "nullField { n name }",
        "wrongType { n }",
        "bigNumber { n name }",
        "missingAttribute { n }",
        "computed { n twice }",
        "computed { n boom colour }",
        "guarded { n secret }",
        "nested { n inner { n twice } items { n } }",
        "nested { ...F } } fragment F on Nested { n inner { ... on Computed { n } } ",
        "nested { n @skip(if: true) inner @include(if: true) { n } }",
        "brokenInner { n inner { n } }",
        "raises",
        "maybeNested(n: 1) { ...I ...I } } fragment I on Nested { items { n } ",
        "maybeNested(n: 1) { items { ...C } items { ...C } } } fragment C on Computed { n boom ",
        "touchy { n }",
        "raisesInList { n }",
        "asyncNodes { n twice later }",
        "asyncFails { n }",
        "shape { __typename ... on Circle { r } ... on Square { side } }",
        "maybeNested(n: 3) { n }",
        "maybeNested(n: -1) { n }",
    ],
)
def test_same_answer_as_graphql_core(field: str) -> None:
    stock = _answer(PLAIN, field)
    # The case executes: every error comes from execution (a path), none from parsing or
    # validation, which would answer alike on both schemas and prove nothing.
    assert all(path is not None for _, path, _ in stock["errors"]), stock
    assert _answer(FAST, field) == stock


def test_errors_name_the_entry() -> None:
    """A null where the list forbids one is reported at its index, as graphql-core does."""
    answer = _answer(FAST, "nullInNonNull")
    assert answer["data"] == {"nullInNonNull": None}
    assert answer["errors"][0][1] == ["nullInNonNull", N - 5]
    assert _answer(FAST, "tooBig")["errors"][0][1] == ["tooBig", 3]
    assert _answer(FAST, "tooSmall")["errors"][0][1] == ["tooSmall", 9]


def test_plain_lists_come_back_as_they_are() -> None:
    """Ints in range, strings, ids and booleans of exactly their type need no conversion."""
    data = FAST.execute_sync("{ intEdges strings bools boolsAsInts }").data or {}
    assert data["intEdges"][:3] == [None, -(2**31), 2**31 - 1]
    assert data["strings"][1] == "患者1" and data["bools"][:3] == [None, False, True]
    assert data["boolsAsInts"][:2] == [1, 0] and type(data["boolsAsInts"][0]) is int


def test_the_project_schema_has_no_exception_handlers() -> None:
    """A plan calls a resolver that takes the object alone as it is (api.plans.compiler), which
    would skip Strawberry's exception handlers if the schema had any."""
    assert build_schema().exception_handlers == ()


def test_the_plan_is_taken() -> None:
    before = Planned.runs
    assert _answer(FAST, "nodes { n }")["data"]["nodes"][2] == {"n": 2}
    assert Planned.runs == before + 1


def test_the_oracle_sees_a_plan_that_skips_a_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan reading an attribute where the field has a resolver (a permission check, say)
    answers differently, and the comparison above fails."""
    honest = plans.Compiler._field

    def careless(self: plans.Compiler, parent: Any, key: str, nodes: Any) -> plans.FieldPlan:
        planned = honest(self, parent, key, nodes)
        if planned.name == "secret":
            planned.attribute = "secret"
        return planned

    monkeypatch.setattr(plans.Compiler, "_field", careless)
    assert _answer(FAST, "guarded { n secret }") != _answer(PLAIN, "guarded { n secret }")


def test_a_document_text_is_parsed_once_and_a_bad_one_is_left_to_strawberry() -> None:
    from types import SimpleNamespace

    from api.parse_cache import ParseOnce

    def parsed(text: str) -> object:
        hook = ParseOnce()
        hook.execution_context = SimpleNamespace(  # type: ignore[assignment]
            query=text, parse_options={"max_tokens": 50}, graphql_document=None
        )
        for _ in hook.on_parse():
            pass
        return hook.execution_context.graphql_document

    first = parsed("query A { me { id } }")
    assert first is not None and parsed("query A { me { id } }") is first
    # not parsed here: Strawberry's own parse step reports these with their code
    assert parsed("query A { me { id ") is None
    assert parsed("query A { " + "a " * 60 + "}") is None
