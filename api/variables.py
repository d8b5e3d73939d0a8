"""Variables checked against their declared types, with answers that name the place, never the
value.

graphql-core refuses bad variables itself, but its messages quote what was sent (`found:
{'name': '王小明', 'phone': '13800138000', …}`), and variables are where a frontend puts
patients' names, phones and health text. So the operation's variables are checked here first,
walking the same rules graphql-core applies (required fields, unknown fields, enum values,
lists, the scalars' own parsing), and each problem is reported by its path (`$i.homeBranchId`)
and what was expected. Only when this finds nothing does graphql-core coerce the values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    Undefined,
    type_from_ast,
)

# Deeper than any input of the schema; past it a value is refused without walking further.
MAX_DEPTH = 32
MAX_PROBLEMS = 10


NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")


def _problems(
    value: Any, type_: GraphQLInputType, path: str, depth: int
) -> Iterator[tuple[str, str]]:
    """(path, what is wrong) for each problem in `value`, in the order found."""
    if depth > MAX_DEPTH:
        yield path, "nested too deeply"
        return
    if isinstance(type_, GraphQLNonNull):
        if value is None:
            yield path, f"must not be null (expected {type_})"
            return
        type_ = type_.of_type
    if value is None:
        return
    if isinstance(type_, GraphQLList):
        # A single value stands for a list of one (input coercion in the GraphQL spec).
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            yield from _problems(item, type_.of_type, f"{path}[{index}]", depth + 1)
        return
    if isinstance(type_, GraphQLInputObjectType):
        if not isinstance(value, dict):
            yield path, f"expected an object of type {type_.name}"
            return
        for name in value:
            if name not in type_.fields:
                # A key is the client's text too: named only when it looks like a field name.
                shown = f"{path}.{name}" if NAME.match(name) else path
                yield shown, f"not a field of {type_.name}"
        for name, field in type_.fields.items():
            if name in value:
                yield from _problems(value[name], field.type, f"{path}.{name}", depth + 1)
            elif isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined:
                yield f"{path}.{name}", f"required field of type {field.type} is missing"
        if type_.is_one_of and len([v for v in value.values() if v is not None]) != 1:
            yield path, f"exactly one field of {type_.name} must be given"
        return
    if isinstance(type_, GraphQLEnumType):
        if not isinstance(value, str) or value not in type_.values:
            yield path, f"not a value of enum {type_.name}"
        return
    if isinstance(type_, GraphQLScalarType):
        try:
            parsed = type_.parse_value(value)
        except Exception:  # noqa: BLE001  (the scalar's own message may quote the value)
            parsed = Undefined
        if parsed is Undefined:
            yield path, f"not a valid {type_.name}"


def variable_errors(
    schema: GraphQLSchema, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> list[GraphQLError]:
    """BAD_USER_INPUT errors for the operation's variables, empty when they are all valid.
    Unknown variable types are left to validation (it reports them without values)."""
    found: list[GraphQLError] = []
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        type_ = type_from_ast(schema, definition.type)
        if type_ is None:
            continue
        if name not in variables:
            if isinstance(type_, GraphQLNonNull) and definition.default_value is None:
                found.append(_error(f"${name}", f"required variable of type {type_} not given"))
            continue
        for where, what in _problems(variables[name], type_, f"${name}", 0):  # type: ignore[arg-type]
            found.append(_error(where, what))
            if len(found) >= MAX_PROBLEMS:
                return found
    return found


def _error(where: str, what: str) -> GraphQLError:
    return GraphQLError(
        f"Variable {where}: {what}",
        extensions={"code": "BAD_USER_INPUT", "field": where},
    )
