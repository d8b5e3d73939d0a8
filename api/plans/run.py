"""One request's walk of a compiled plan: the resolvers graphql-core would call, in its order,
with its errors (api.plans)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLResolveInfo,
    Undefined,
    get_argument_values,
    is_object_type,
    located_error,
)
from graphql.pyutils import Path, gather_with_cancel, inspect, is_iterable

from api.plans.compiler import (
    INT_RANGE,
    Abstract,
    FieldPlan,
    Leaf,
    ListOf,
    NonNull,
    Plan,
    Selection,
    Shape,
)

_ABSENT = object()


def _in_range(value: Any) -> bool:
    """An int that Int serialises as itself (32 bits); every other exact value is as it is."""
    return type(value) is not int or INT_RANGE[0] <= value <= INT_RANGE[1]


def _as_is(shape: Shape, items: Any) -> list[Any] | None:
    """A list of built-in scalars already in their serialised form, copied in one pass (the
    type checks run in C); None to complete it entry by entry."""
    nullable = not isinstance(shape, NonNull)
    leaf = shape.inner if isinstance(shape, NonNull) else shape
    if not isinstance(leaf, Leaf) or leaf.exact is None or type(items) is not list:
        return None
    kinds = set(map(type, items))
    allowed = {leaf.exact, type(None)} if nullable else {leaf.exact}
    if not kinds <= allowed:
        return None
    if leaf.exact is int:
        numbers = [v for v in items if v is not None] if type(None) in kinds else items
        if numbers and not (INT_RANGE[0] <= min(numbers) and max(numbers) <= INT_RANGE[1]):
            return None
    return list(items)


async def _gathered(entries: Any, pending: list[Any]) -> Any:
    """The object's fields or the list's entries, their awaitables (at `pending`) awaited
    together and replaced by what they gave."""
    if len(pending) == 1:
        entries[pending[0]] = await entries[pending[0]]
    else:
        done = await gather_with_cancel(*(entries[at] for at in pending))
        for at, value in zip(pending, done, strict=True):
            entries[at] = value
    return entries


def _not_of_type(selection: Selection, info: GraphQLResolveInfo, value: Any) -> GraphQLError:
    return GraphQLError(
        f"Expected value of type '{selection.type.name}' but got: {inspect(value)}.",
        info.field_nodes,
    )


class PlanRun:
    """One request's run of a plan, with the executor's facts (all public attributes)."""

    def __init__(self, executor: Any, plan: Plan) -> None:
        self.plan = plan
        self.executor = executor
        self.is_awaitable = executor.is_awaitable
        # For the arguments; resolvers get its plain coerced dict (`_info`), as Strawberry's
        # executor gives them.
        self.variables = executor.variable_values
        self.errors: list[GraphQLError] = []
        self.nulled: set[Path | None] = set()
        self.arguments: dict[int, dict[str, Any]] = {}
        self.background: list[asyncio.Future[Any]] = []

    def result(self) -> ExecutionResult | Awaitable[ExecutionResult]:
        """The response, or an awaitable of it when a resolver awaits (as graphql-core does)."""
        try:
            data = self._object(self.plan.root, self.executor.root_value, None)
        except GraphQLError as error:
            self._add(error, None)
            return ExecutionResult(None, self.errors)
        if self.is_awaitable(data):
            return self._awaited(data)
        return ExecutionResult(data, self.errors or None)

    async def _awaited(self, pending: Awaitable[dict[str, Any]]) -> ExecutionResult:
        try:
            data: dict[str, Any] | None = await pending
        except GraphQLError as error:
            self._add(error, None)
            data = None
        return ExecutionResult(data, self.errors or None)

    # --- errors ---------------------------------------------------------------------------

    def _add(self, error: GraphQLError, path: Path | None) -> None:
        """graphql-core's rule: nothing is reported below a position already nulled."""
        at = path
        while at is not None:
            if at in self.nulled:
                return
            at = at.prev
        if None in self.nulled:
            return
        self.nulled.add(path)
        self.errors.append(error)

    def _field_error(
        self, raw: Exception, shape: Shape, nodes: list[FieldNode], path: Path
    ) -> None:
        error = located_error(raw, nodes, path.as_list())
        if isinstance(shape, NonNull):
            raise error
        self._add(error, path)

    def _settle(self, awaitables: list[Any]) -> None:
        """Awaitables a failing level leaves behind run to their end, their errors observed."""
        if awaitables:
            self.background.append(
                asyncio.ensure_future(asyncio.gather(*awaitables, return_exceptions=True))
            )

    # --- execution ------------------------------------------------------------------------

    def _info(self, plan: FieldPlan, path: Path) -> GraphQLResolveInfo:
        executor = self.executor
        return GraphQLResolveInfo(
            plan.name,
            plan.nodes,
            plan.definition.type,
            plan.parent,
            path,
            executor.schema,
            executor.fragment_definitions,
            executor.root_value,
            executor.operation,
            self.variables.coerced,
            executor.context_value,
            executor.is_awaitable,
            executor.abort_signal,
            executor.async_helpers,
        )

    def _object(self, selection: Selection, source: Any, path: Path | None) -> Any:
        results: dict[str, Any] = {}
        pending: list[str] = []
        is_awaitable = self.is_awaitable
        try:
            for plan in selection.fields:
                exact = plan.exact
                if exact is not None:
                    # A plain attribute already in its serialised form: no path, no call. Any
                    # other value takes the general way below, which reads it again (a plain
                    # attribute read has no side effects) and reports errors at its path.
                    try:
                        value = getattr(source, plan.attribute)  # type: ignore[arg-type]
                    except Exception:  # noqa: BLE001  (the general way reports it, at its path)
                        value = _ABSENT
                    if (type(value) is exact and _in_range(value)) or (
                        value is None and plan.nullable
                    ):
                        results[plan.key] = value
                        continue
                value = self._field(plan, source, path, selection.type.name)
                results[plan.key] = value
                if is_awaitable(value):
                    pending.append(plan.key)
        except Exception:
            self._settle([results[key] for key in pending])
            raise
        return _gathered(results, pending) if pending else results

    def _field(self, plan: FieldPlan, source: Any, parent: Path | None, typename: str) -> Any:
        """The field's completed value, or an awaitable of it. Its path is made only where it
        is used (an `Info`, an awaited value, what is below the field, an error), which a
        scalar read without a resolver never needs."""
        shape, info, path = plan.shape, None, None
        try:
            if plan.attribute is not None:
                result = getattr(source, plan.attribute)
            elif plan.call is not None:
                result = plan.call(source)
            else:
                path = Path(parent, plan.key, typename)
                info = self._info(plan, path)
                arguments = self._arguments(plan) if plan.takes_arguments else {}
                resolve = plan.definition.resolve or self.executor.field_resolver
                result = resolve(source, info, **arguments)
            if self.is_awaitable(result):
                path = path or Path(parent, plan.key, typename)
                return self._resolved(shape, plan, info, path, result)
            if plan.leaf:
                return self._complete(shape, plan, info, path, result)  # type: ignore[arg-type]
            path = path or Path(parent, plan.key, typename)
            completed = self._complete(shape, plan, info, path, result)
            if self.is_awaitable(completed):
                return self._completed(shape, plan, path, completed)
            return completed
        except Exception as raw:  # noqa: BLE001  (reported at the field's path)
            self._field_error(raw, shape, plan.nodes, path or Path(parent, plan.key, typename))
            return None

    def _arguments(self, plan: FieldPlan) -> dict[str, Any]:
        """A field node's arguments are the same for every entry: coerced once a request."""
        found = self.arguments.get(id(plan))
        if found is None:
            found = self.arguments[id(plan)] = get_argument_values(
                plan.definition, plan.nodes[0], self.variables
            )
        return found

    async def _resolved(
        self,
        shape: Shape,
        plan: FieldPlan,
        info: GraphQLResolveInfo | None,
        path: Path,
        pending: Awaitable[Any],
    ) -> Any:
        """A field's or a list entry's value once it is there, completed as `shape`."""
        try:
            completed = self._complete(shape, plan, info, path, await pending)
            if self.is_awaitable(completed):
                completed = await completed
        except Exception as raw:  # noqa: BLE001
            self._field_error(raw, shape, plan.nodes, path)
            return None
        return completed

    async def _completed(
        self, shape: Shape, plan: FieldPlan, path: Path, completing: Awaitable[Any]
    ) -> Any:
        """A completion that awaits (an object with awaiting fields), its error at `path`."""
        try:
            return await completing
        except Exception as raw:  # noqa: BLE001
            self._field_error(raw, shape, plan.nodes, path)
            return None

    def _complete(
        self, shape: Shape, plan: FieldPlan, info: GraphQLResolveInfo | None, path: Path, value: Any
    ) -> Any:
        if isinstance(value, Exception):
            raise value
        if type(shape) is NonNull:
            # Unwrapped here rather than by a call: only a null value completes to null (a
            # leaf that serialises to null, an object or a list raise instead).
            if value is None or value is Undefined:
                raise TypeError(
                    f"Cannot return null for non-nullable field {plan.parent}.{plan.name}."
                )
            shape = shape.inner
        elif value is None or value is Undefined:
            return None
        if type(shape) is Leaf:
            exact = shape.exact
            if type(value) is exact and _in_range(value):
                return value
            coerced = shape.type.coerce_output_value(value)
            if coerced is Undefined or coerced is None:
                raise TypeError(
                    f"Expected `{inspect(shape.type)}.coerce_output_value("
                    f"{inspect(value)})` to return non-nullable value, returned:"
                    f" {inspect(coerced)}"
                )
            return coerced
        if isinstance(shape, ListOf):
            return self._list(shape, plan, info, path, value)
        if isinstance(shape, Selection) and shape.type.is_type_of is None:
            return self._object(shape, value, path)
        if info is None:
            info = self._info(plan, path)
        if isinstance(shape, Abstract):
            return self._abstract(shape, plan, info, path, value)
        return self._typed_object(shape, info, path, value)

    def _typed_object(
        self, selection: Selection, info: GraphQLResolveInfo, path: Path, value: Any
    ) -> Any:
        is_type_of = selection.type.is_type_of
        if is_type_of is not None:
            if self.is_awaitable(matched := is_type_of(value, info)):
                return self._object_after_check(selection, matched, info, path, value)
            if not matched:
                raise _not_of_type(selection, info, value)
        return self._object(selection, value, path)

    async def _object_after_check(
        self, selection: Selection, matched: Any, info: GraphQLResolveInfo, path: Path, value: Any
    ) -> Any:
        if not await matched:
            raise _not_of_type(selection, info, value)
        done = self._object(selection, value, path)
        return await done if self.is_awaitable(done) else done

    def _abstract(
        self, shape: Abstract, plan: FieldPlan, info: GraphQLResolveInfo, path: Path, value: Any
    ) -> Any:
        resolve_type = shape.type.resolve_type
        if resolve_type is None:
            raise GraphQLError(  # every abstract type of this schema resolves its own
                f"Abstract type '{shape.type}' has no type resolver.", plan.nodes
            )
        name = resolve_type(value, info, shape.type)
        if self.is_awaitable(name):
            return self._abstract_after(shape, plan, info, path, value, name)
        return self._typed_object(self._runtime(shape, plan, name, value), info, path, value)

    async def _abstract_after(
        self,
        shape: Abstract,
        plan: FieldPlan,
        info: GraphQLResolveInfo,
        path: Path,
        value: Any,
        name: Awaitable[Any],
    ) -> Any:
        runtime = self._runtime(shape, plan, await name, value)
        done = self._typed_object(runtime, info, path, value)
        return await done if self.is_awaitable(done) else done

    def _runtime(self, shape: Abstract, plan: FieldPlan, name: Any, value: Any) -> Selection:
        """graphql-core's checks of a resolved type, with its messages."""
        where = f"field '{plan.parent}.{plan.name}'"
        if name is None:
            raise GraphQLError(
                f"Abstract type '{shape.type}' must resolve to an Object type at runtime for"
                f" {where}. Either the '{shape.type}' type should provide a 'resolve_type'"
                " function or each possible type should provide an 'is_type_of' function.",
                plan.nodes,
            )
        if not isinstance(name, str):
            raise GraphQLError(
                f"Abstract type '{shape.type}' must resolve to an Object type at runtime for"
                f" {where} with value {inspect(value)}, received '{inspect(name)}',"
                " which is not a valid Object type name.",
                plan.nodes,
            )
        runtime = self.executor.schema.get_type(name)
        if runtime is None:
            raise GraphQLError(
                f"Abstract type '{shape.type}' was resolved to a type '{name}' that does not"
                " exist inside the schema.",
                plan.nodes,
            )
        if not is_object_type(runtime):
            raise GraphQLError(
                f"Abstract type '{shape.type}' was resolved to a non-object type '{name}'.",
                plan.nodes,
            )
        if not self.executor.schema.is_sub_type(shape.type, runtime):
            raise GraphQLError(
                f"Runtime Object type '{runtime}' is not a possible type for '{shape.type}'.",
                plan.nodes,
            )
        return shape.selection(runtime)

    def _list(
        self,
        shape: ListOf,
        plan: FieldPlan,
        info: GraphQLResolveInfo | None,
        path: Path,
        value: Any,
    ) -> Any:
        if not is_iterable(value):
            raise GraphQLError(
                f"Expected Iterable, but did not find one for field '{plan.parent}.{plan.name}'."
            )
        item_shape = shape.item
        as_is = _as_is(item_shape, value)
        if as_is is not None:
            return as_is
        is_awaitable = self.is_awaitable
        completed: list[Any] = []
        pending: list[int] = []
        try:
            for index, item in enumerate(value):
                item_path = path.add_key(index, None)
                if is_awaitable(item):
                    completed.append(self._resolved(item_shape, plan, info, item_path, item))
                    pending.append(index)
                    continue
                try:
                    done = self._complete(item_shape, plan, info, item_path, item)
                except Exception as raw:  # noqa: BLE001
                    self._field_error(raw, item_shape, plan.nodes, item_path)
                    done = None
                else:
                    if is_awaitable(done):
                        done = self._completed(item_shape, plan, item_path, done)
                        pending.append(index)
                completed.append(done)
        except Exception:
            self._settle([completed[index] for index in pending])
            raise
        return _gathered(completed, pending) if pending else completed
