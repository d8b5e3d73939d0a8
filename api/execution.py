"""How the schema executes: graphql-core's execution context with two shortcuts for long
lists.

graphql-core completes every entry of a list as a value of its own (a path, an awaitable check,
a serialisation call each): about 7 µs an entry, so a referral chart of 10,000 nodes in six
columns spends 0.4 s there, and the same nodes as 60,000 object fields over 0.3 s. Here, in one
loop each:
- a list of plain scalars is serialised;
- a list of objects whose selected fields are all plain attributes (Strawberry's "basic"
  fields: no resolver, no arguments, no extensions) of scalar type becomes its dicts.
Anything else (nulls where the type forbids them, values of other types, a value the scalar
refuses, resolvers, @defer, @stream, middleware) goes graphql-core's way, which reports errors
at the entry's path. A plain attribute read has no side effects, so handing a list back to
graphql-core halfway is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
    Undefined,
    is_leaf_type,
    is_non_null_type,
    is_object_type,
)
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

PLAIN = frozenset({int, str, bool, float, Decimal})
# Built-in scalars that serialise a value of exactly this Python type as the value itself
# (Int also checks the 32-bit range, below): such a list needs no call per entry.
AS_IS = {GraphQLInt: int, GraphQLString: str, GraphQLID: str, GraphQLBoolean: bool}
INT_RANGE = (-(2**31), 2**31 - 1)
# Below this the loop saves too little to matter; small lists keep graphql-core's path.
MIN_ENTRIES = 64


def _as_is(leaf: GraphQLLeafType, items: list[Any], nullable: bool) -> bool:
    """True when every entry already is its serialised form (type checks run in C)."""
    kind = AS_IS.get(leaf)  # type: ignore[call-overload]
    types = set(map(type, items))
    if kind is None or not types <= ({kind, type(None)} if nullable else {kind}):
        return False
    if kind is int:
        values = [v for v in items if v is not None] if type(None) in types else items
        return not values or (INT_RANGE[0] <= min(values) and max(values) <= INT_RANGE[1])
    return True


def _serialised(leaf: GraphQLLeafType, items: list[Any], nullable: bool) -> list[Any] | None:
    """The entries serialised, or None to let graphql-core handle the list."""
    if _as_is(leaf, items, nullable):
        return list(items)
    if not all(type(v) in PLAIN or (v is None and nullable) for v in items):
        return None
    coerce = leaf.coerce_output_value
    try:
        out = [None if v is None else coerce(v) for v in items]
    except Exception:  # noqa: BLE001  (graphql-core raises it again, at the entry's path)
        return None
    if any(o is None or o is Undefined for o, v in zip(out, items, strict=True) if v is not None):
        return None
    return out


# One selected field of a plain object: response key, attribute, serialiser, null allowed, and
# the Python type whose values are already serialised (see AS_IS; None for other scalars).
Column = tuple[str, str, Callable[[Any], Any], bool, type | None]


class Execution(StrawberryGraphQLCoreExecutionContext):
    def _plain_columns(
        self, object_type: GraphQLObjectType, field_details_list: Any
    ) -> list[Column] | None:
        """What to read from each object, when every selected field is a plain attribute."""
        middleware = self.middleware_manager.middlewares if self.middleware_manager else ()
        if object_type.is_type_of is not None or middleware:
            return None
        grouped, defer_usages, _ = self.collect_subfields(object_type, field_details_list)
        if defer_usages:
            return None
        columns: list[Column] = []
        for key, details in grouped.items():
            node = details[0].node
            field = object_type.fields.get(node.name.value)
            definition = field.extensions.get("strawberry-definition") if field else None
            if (
                field is None
                or definition is None
                or not definition.is_basic_field
                or definition.default_resolver is not getattr
                or field.args
                or any(d.node.arguments for d in details)
            ):
                return None
            nullable = not is_non_null_type(field.type)
            leaf = field.type if nullable else field.type.of_type  # type: ignore[attr-defined]
            if not is_leaf_type(leaf):
                return None
            exact = AS_IS.get(leaf)  # type: ignore[call-overload]
            columns.append((key, definition.python_name, leaf.coerce_output_value, nullable, exact))
        return columns

    def _plain_objects(
        self, columns: list[Column], items: list[Any], nullable: bool
    ) -> list[Any] | None:
        """The objects as dicts, or None to let graphql-core handle the list."""
        out: list[Any] = []
        try:
            for item in items:
                if item is None:
                    if not nullable:
                        return None
                    out.append(None)
                    continue
                row = {}
                for key, attribute, coerce, null_ok, exact in columns:
                    value = getattr(item, attribute)
                    if type(value) is exact and (
                        exact is not int or INT_RANGE[0] <= value <= INT_RANGE[1]
                    ):
                        row[key] = value
                        continue
                    if value is None:
                        if not null_ok:
                            return None
                        row[key] = None
                        continue
                    value = coerce(value)
                    if value is None or value is Undefined:
                        return None
                    row[key] = value
                out.append(row)
        except Exception:  # noqa: BLE001  (graphql-core raises it again, at the field's path)
            return None
        return out

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: Any,
        info: GraphQLResolveInfo,
        path: Path,
        items: Iterable[Any],
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        if isinstance(items, list) and len(items) >= MIN_ENTRIES:
            nullable = not is_non_null_type(item_type)
            leaf = item_type if nullable else item_type.of_type  # type: ignore[attr-defined]
            streamed = self.get_stream_usage(field_details_list, path) is not None
            if is_leaf_type(leaf) and not streamed:
                done = _serialised(leaf, items, nullable)
                if done is not None:
                    return done
            elif is_object_type(leaf) and not streamed:
                columns = self._plain_columns(leaf, field_details_list)  # type: ignore[arg-type]
                if columns is not None:
                    objects = self._plain_objects(columns, items, nullable)
                    if objects is not None:
                        return objects
        return super().complete_iterable_value(
            item_type, field_details_list, info, path, items, position_context
        )
