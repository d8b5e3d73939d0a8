"""Defences against expensive or hostile documents, checked while validating (before any
resolver or SQL runs), through Strawberry's public extension points only: its token limiter
(while parsing), its depth and alias limiters, `AddValidationRules` for the root-field limit,
the cost limit and the variables' check (graphql-core `ValidationRule`s), and
`DisableIntrospection` in production unless introspection is enabled. Strawberry's own
validation then runs graphql's specified rules and every added rule (with its own
`MaybeNull` and `OneOf` rules) in one pass over the document: so there is no "cheapest
first". Every rule sees the whole document and every error found is reported (a document too
deep and also wrong on every level answers QUERY_TOO_COMPLEX and the BAD_USER_INPUTs);
the token limit (2,000) and the byte limits bound what one pass costs. Nothing runs a
resolver or SQL before all pass. What does not depend on the request's variables is
remembered per document text (`ValidationMemo`); the cost and the variables' check
(`RequestLimits`) run for every request. (Byte limits and "trusted documents
only" are the HTTP edge's, before parsing: api/http_edge.py. The caller's token is checked
before validation: api/gate.py.)

Cost: each field costs 1; a field's selection costs as many times as the list it returns may
hold: `first` for connections (default 20), `maxNodes` for the node lists of a referral tree
(default 1000), 20 for other lists. Nested lists multiply. A page of 100 patients with tags
costs about 100 × 20; a tree of 10,000 nodes with six figures each about 70,000.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
    print_ast,
)
from graphql.validation import ASTValidationRule, ValidationContext
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from api.gate import selected_operation
from api.variables import variable_errors

# Bytes, checked at the HTTP edge before anything is parsed: a body holds a document and its
# variables (10,000 patient ids for tagPatients are about 620 KB); the largest trusted
# operation is under 1 KB, and 2,000 tokens of GraphQL fit in well under 32 KiB.
MAX_BODY_BYTES = 1024 * 1024
MAX_DOCUMENT_BYTES = 32 * 1024
MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2000
MAX_COST = 100_000
MAX_ROOT_FIELDS = 15
LIST_GUESS = 20
# Arguments that size a list, with the size assumed when they are left out.
SIZE_ARGUMENTS = {"first": 20, "maxNodes": 1000}
# A size argument on a field that is not itself a list sizes one list inside it.
SIZED_CHILD = {"maxNodes": "nodes"}
TOO_COMPLEX = {"code": "QUERY_TOO_COMPLEX"}
VALIDATION_CACHE = 1024


def _size(node: FieldNode, variables: dict[str, Any]) -> tuple[int, str] | None:
    """The list size an argument asks for, with the argument's name."""
    for arg in node.arguments or ():
        name = arg.name.value
        default = SIZE_ARGUMENTS.get(name)
        if default is None:
            continue
        value = arg.value
        if isinstance(value, IntValueNode):
            return int(value.value), name
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            return (given if isinstance(given, int) else default), name
        return default, name
    return None


def estimate_cost(schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]) -> int:
    """The cost of the costliest operation in the document."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }

    def cost(
        selection: SelectionSetNode | None,
        parent: Any,
        depth: int,
        inherited: tuple[int, str] | None = None,
    ) -> int:
        """`inherited`: a size argument of the parent field and the child list it sizes
        (`referralTree(maxNodes:)` sizes `nodes`, not the one tree)."""
        if selection is None or parent is None or depth > 30:
            return 0
        total = 0
        for sel in selection.selections:
            if isinstance(sel, FieldNode):
                field = getattr(parent, "fields", {}).get(sel.name.value)
                if field is None:
                    continue
                listed = is_list_type(get_nullable_type(field.type))
                named = get_named_type(field.type)
                asked, passed, size = _size(sel, variables), None, None
                if asked is not None:
                    size = asked[0]
                    if not listed and not named.name.endswith("Connection"):
                        size, passed = 1, (asked[0], SIZED_CHILD.get(asked[1], ""))
                if size is None:
                    # A connection's size is its `first`; its `edges` list adds nothing more.
                    in_connection = parent.name.endswith("Connection")
                    sized_here = inherited is not None and inherited[1] == sel.name.value
                    guess = inherited[0] if inherited and sized_here else LIST_GUESS
                    size = guess if listed and not in_connection else 1
                child = cost(sel.selection_set, named, depth + 1, passed)
                total += 1 + max(size, 0) * child
            elif isinstance(sel, InlineFragmentNode):
                target = parent
                if sel.type_condition is not None:
                    target = schema.get_type(sel.type_condition.name.value)
                total += cost(sel.selection_set, target, depth + 1, inherited)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
                frag = fragments[sel.name.value]
                target = schema.get_type(frag.type_condition.name.value)
                total += cost(frag.selection_set, target, depth + 1, inherited)
        return total

    return max(
        (
            cost(op.selection_set, schema.get_root_type(op.operation), 0)
            for op in document.definitions
            if isinstance(op, OperationDefinitionNode)
        ),
        default=0,
    )


@dataclass
class _Request:
    """What the rules that depend on the request read, and what they leave for the memo."""

    variables: dict[str, Any]
    operation_name: str | None
    schema: GraphQLSchema | None = None  # as graphql-core's ValidationContext hands it over
    own: list[GraphQLError] = field(default_factory=list)  # the errors those rules reported


REQUEST: ContextVar[_Request | None] = ContextVar("patientpool_request", default=None)


def _request() -> _Request:
    return REQUEST.get() or _Request({}, None)


class RequestValues(SchemaExtension):
    """Publishes the request's variables and operation name for the rules that need them
    (graphql-core hands a validation rule the schema and the document, not the variables),
    for the length of the operation."""

    def on_operation(self) -> Iterator[None]:
        ec = self.execution_context
        token = REQUEST.set(_Request(ec.variables or {}, ec.operation_name))
        try:
            yield
        finally:
            REQUEST.reset(token)


def request_errors(schema: GraphQLSchema, document: DocumentNode, request: _Request) -> list:
    """The errors that depend on the request's variables: the cost, then the variables."""
    cost = estimate_cost(schema, document, request.variables)
    if cost > MAX_COST:
        return [
            GraphQLError(
                f"query cost {cost} exceeds the limit of {MAX_COST}: ask for "
                "smaller pages or fewer nested lists",
                extensions=TOO_COMPLEX,
            )
        ]
    operation = selected_operation(document, request.operation_name)
    if operation is None:
        return []
    return variable_errors(schema, operation, request.variables)


class RequestLimits(ValidationRule):
    """The cost limit (see the module docstring: `first: $n` is costed at the value of `$n`)
    and the selected operation's variables against their declared types (api.variables:
    BAD_USER_INPUT naming the place, never the value, before graphql-core coerces them, whose
    own messages would quote what was sent)."""

    def enter_document(self, node: DocumentNode, *_args: Any) -> None:
        request = _request()
        request.schema = self.context.schema
        for error in request_errors(self.context.schema, node, request):
            request.own.append(error)
            self.report_error(error)


class _Memo:
    """Bounded LRU of (document text, rules) → (the errors of the rules that do not depend on
    the request, the schema they validated against)."""

    def __init__(self, size: int) -> None:
        self.size, self.entries = size, OrderedDict[Any, Any]()

    def get(self, key: Any) -> Any:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: Any, value: Any) -> None:
        self.entries[key] = value
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)


MEMO = _Memo(VALIDATION_CACHE)


class ValidationMemo(SchemaExtension):
    """Frontends send the same few documents again and again: what every rule but
    `RequestLimits` found is remembered per document text and rule set (bounded, so unique
    hostile documents cannot grow it), and on a repeat only `RequestLimits` runs, with the
    schema graphql-core handed to it the first time. It runs after the caller's check
    (api.gate), which a remembered answer must not pre-empt."""

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        document, request, key = ec.graphql_document, _request(), None
        if document is not None and ec.pre_execution_errors is None:
            key = (ec.query or print_ast(document), ec.validation_rules)
            found = MEMO.get(key)
            if found is not None:
                remembered, schema = found
                ec.pre_execution_errors = [*remembered, *request_errors(schema, document, request)]
                key = None
        yield
        errors = ec.pre_execution_errors
        if key is not None and errors is not None and request.schema is not None:
            own = {id(e) for e in request.own}
            MEMO.put(key, (tuple(e for e in errors if id(e) not in own), request.schema))


def _spread_tolerant(rule: type[ASTValidationRule]) -> type[ValidationRule]:
    """Strawberry's depth limiter measures the document when its rule is made and raises
    KeyError on a spread of a fragment the document lacks; graphql's KnownFragmentNames rule
    reports that spread (BAD_USER_INPUT), so the depth is not measured then."""

    class DepthLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            with suppress(KeyError):
                rule(context)

    return DepthLimit


# Strawberry's limiters' own rules, made once: a rule class made per request would make every
# request's rule set new to the memo.
DEPTH_LIMIT = _spread_tolerant(QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules[0])
ALIAS_LIMIT = MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules[0]


def validation_extensions(introspection: bool) -> list[Callable[[], SchemaExtension]]:
    """The schema extensions that declare every validation rule, in the order their rules
    join the operation's validation (Strawberry then runs them, after graphql's specified
    rules, in one pass), and the memo, last."""
    extensions: list[Callable[[], SchemaExtension]] = [
        RequestValues,
        lambda: AddValidationRules([DEPTH_LIMIT, ALIAS_LIMIT, RootFieldLimit, RequestLimits]),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    extensions.append(ValidationMemo)
    return extensions


class RootFieldLimit(ValidationRule):
    """Refuses an operation that asks for more than MAX_ROOT_FIELDS root fields at once."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
        count = sum(1 for s in node.selection_set.selections if isinstance(s, FieldNode))
        if count > MAX_ROOT_FIELDS:
            self.context.report_error(
                GraphQLError(
                    f"{count} root fields in one operation; at most {MAX_ROOT_FIELDS}",
                    node,
                    extensions=TOO_COMPLEX,
                )
            )
