"""What a compiled plan is, and how a trusted query becomes one (api.plans)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLBoolean,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.utilities import type_from_ast

# Built-in scalars that serialise a value of exactly this Python type as the value itself (Int
# also checks the 32-bit range): such a value needs no call.
AS_IS = {GraphQLInt: int, GraphQLString: str, GraphQLID: str, GraphQLBoolean: bool}
INT_RANGE = (-(2**31), 2**31 - 1)
# The directives a plan evaluates itself, and only with literal arguments.
CONDITIONS = {"skip": True, "include": False}


class NotCompiled(Exception):
    """The document holds something a plan does not do: it runs on the stock path."""


@dataclass(slots=True)
class Leaf:
    type: GraphQLLeafType
    exact: type | None  # values of exactly this type are their own serialised form


@dataclass(slots=True)
class NonNull:
    inner: Shape


@dataclass(slots=True)
class ListOf:
    item: Shape


@dataclass(slots=True)
class Selection:
    type: GraphQLObjectType
    fields: list[FieldPlan]


@dataclass(slots=True)
class Abstract:
    type: GraphQLAbstractType
    nodes: list[FieldNode]
    compiler: Compiler
    # Compiled for each runtime type the first time a value of it is met.
    by_type: dict[str, Selection] = field(default_factory=dict)

    def selection(self, object_type: GraphQLObjectType) -> Selection:
        found = self.by_type.get(object_type.name)
        if found is None:
            found = self.by_type[object_type.name] = self.compiler.selection(
                object_type, (node.selection_set for node in self.nodes)
            )
        return found


Shape = Leaf | NonNull | ListOf | Selection | Abstract


@dataclass(slots=True)
class FieldPlan:
    key: str
    parent: GraphQLObjectType
    definition: GraphQLField
    nodes: list[FieldNode]
    # The attribute read for a plain Strawberry field (no resolver, arguments or extensions);
    # None: the field's resolver is called.
    attribute: str | None
    # A resolver that takes the object alone (`def lead_score(self)`), with no arguments,
    # permission classes or field extensions: called as it is, since Strawberry's wrapper
    # would only build an `Info` it does not ask for. None: the field's resolver is called.
    call: Callable[[Any], Any] | None
    takes_arguments: bool
    shape: Shape
    # For a plain attribute of a built-in scalar (see AS_IS): the Python type whose values
    # are their own serialised form, and whether null is allowed; read in place by the run.
    exact: type | None = None
    nullable: bool = True
    # A scalar or enum (nullable or not): completing it needs no path, only an error does.
    leaf: bool = False

    def __post_init__(self) -> None:
        self.nullable = not isinstance(self.shape, NonNull)
        leaf = self.shape.inner if isinstance(self.shape, NonNull) else self.shape
        self.leaf = isinstance(leaf, Leaf)
        if self.attribute is not None and self.leaf:
            self.exact = leaf.exact  # type: ignore[union-attr]

    @property
    def name(self) -> str:
        return self.nodes[0].name.value


@dataclass(slots=True)
class Plan:
    root: Selection


class Compiler:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode]):
        self.schema = schema
        self.fragments = fragments
        for fragment in fragments.values():
            if fragment.variable_definitions:
                raise NotCompiled("fragment variables")

    def selection(
        self, object_type: GraphQLObjectType, selection_sets: Iterable[SelectionSetNode | None]
    ) -> Selection:
        """The fields of one runtime type over the merged nodes' selection sets."""
        grouped: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()  # one for all the merged nodes, as graphql-core has it
        for selection_set in selection_sets:
            if selection_set is not None:
                self._collect(object_type, selection_set, grouped, visited)
        return Selection(object_type, [self._field(object_type, k, v) for k, v in grouped.items()])

    def _collect(
        self,
        object_type: GraphQLObjectType,
        selection_set: SelectionSetNode,
        grouped: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        """graphql-core's field collection, in the same order, for one runtime type."""
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self._applies(selection.type_condition, object_type):
                    self._collect(object_type, selection.selection_set, grouped, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if name in visited or fragment is None:
                    continue
                visited.add(name)
                if self._applies(fragment.type_condition, object_type):
                    self._collect(object_type, fragment.selection_set, grouped, visited)

    def _included(self, selection: Any) -> bool:
        for directive in selection.directives or ():
            skip_when = CONDITIONS.get(directive.name.value)
            if skip_when is None:
                raise NotCompiled(f"@{directive.name.value}")
            (argument,) = directive.arguments
            if not isinstance(argument.value, BooleanValueNode):
                raise NotCompiled(f"@{directive.name.value} with a variable")
            if argument.value.value is skip_when:
                return False
        return True

    def _applies(self, condition: Any, object_type: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        wanted = type_from_ast(self.schema, condition)
        if wanted is object_type:
            return True
        return is_abstract_type(wanted) and self.schema.is_sub_type(wanted, object_type)  # type: ignore[arg-type]

    def _field(self, parent: GraphQLObjectType, key: str, nodes: list[FieldNode]) -> FieldPlan:
        name = nodes[0].name.value
        definition = self.schema.get_field(parent, name)
        if definition is None:
            raise NotCompiled(f"{parent.name}.{name}")  # not in the schema (validation refuses it)
        strawberry_field = definition.extensions.get("strawberry-definition")
        takes_arguments = bool(definition.args or nodes[0].arguments)
        plain = (
            not takes_arguments
            and strawberry_field is not None
            and strawberry_field.is_basic_field
            and strawberry_field.default_resolver is getattr
        )
        return FieldPlan(
            key=key,
            parent=parent,
            definition=definition,
            nodes=nodes,
            attribute=strawberry_field.python_name if plain else None,
            call=None if plain or takes_arguments else _plain_method(strawberry_field),
            takes_arguments=takes_arguments,
            shape=self._shape(definition.type, nodes),
        )

    def _shape(self, output: GraphQLOutputType, nodes: list[FieldNode]) -> Shape:
        if is_non_null_type(output):
            return NonNull(self._shape(output.of_type, nodes))  # type: ignore[union-attr]
        if is_list_type(output):
            return ListOf(self._shape(output.of_type, nodes))  # type: ignore[union-attr]
        if is_leaf_type(output):
            return Leaf(output, AS_IS.get(output))  # type: ignore[arg-type, call-overload]
        if is_abstract_type(output):
            return Abstract(output, nodes, self)  # type: ignore[arg-type]
        if is_object_type(output):
            return self.selection(output, (n.selection_set for n in nodes))  # type: ignore[arg-type]
        raise NotCompiled(f"output type {get_named_type(output)}")


def _plain_method(strawberry_field: Any) -> Any:
    """For a field without arguments: the resolver's own function when Strawberry's wrapper
    would call it with the object alone and nothing around it (no extension or permission
    class, no `info`, `root` or `parent` to hand over); else None. The project's schema
    installs no exception handlers (tests/api/test_execution.py checks), which the wrapper
    would run."""
    resolver = getattr(strawberry_field, "base_resolver", None)
    if (
        resolver is None
        or strawberry_field.extensions
        or resolver.self_parameter is None
        or resolver.info_parameter is not None
        or resolver.root_parameter is not None
        or resolver.parent_parameter is not None
        or len(inspect.signature(resolver.wrapped_func).parameters) != 1
    ):
        return None
    return resolver.wrapped_func


def compile_plan(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
) -> Plan | None:
    """The plan of a query, or None when it runs on the stock path (see the module's doc)."""
    if operation.operation is not OperationType.QUERY or operation.directives:
        return None
    root_type = schema.query_type
    if root_type is None:
        return None
    try:
        return Plan(Compiler(schema, fragments).selection(root_type, [operation.selection_set]))
    except NotCompiled:
        return None


class PlanCache:
    """Plans by trusted document and operation, compiled on first use in this process."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._plans: dict[tuple[str, str], Plan | None] = {}

    def get(
        self,
        digest: str,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDefinitionNode],
    ) -> Plan | None:
        if not self.enabled:
            return None
        key = (digest, operation.name.value if operation.name else "")
        if key not in self._plans:
            self._plans[key] = compile_plan(schema, operation, fragments)
        return self._plans[key]

    def compiled(self) -> dict[str, bool]:
        """Operation name → whether it runs by a plan, for what this process has met."""
        return {name: plan is not None for (_, name), plan in self._plans.items()}
