"""Defences against expensive or hostile documents, checked while validating (before any
resolver or SQL runs), cheapest first (`checks_first`): Strawberry's depth and alias limiters
and a limit on root fields, then a cost limit, then every other rule the operation declares,
then the variables. (Byte limits and "trusted documents only" are the HTTP edge's, before
parsing: api/http_edge.py.)

Cost: each field costs 1; a field's selection costs as many times as the list it returns may
hold: `first` for connections (default 20), `maxNodes` for the node lists of a referral tree
(default 1000), 20 for other lists. Nested lists multiply. A page of 100 patients with tags
costs about 100 × 20; a tree of 10,000 nodes with six figures each about 70,000.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
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
from graphql.validation import ASTValidationRule, KnownFragmentNamesRule, validate
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

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


VALIDATION_CACHE = 1024


class _Document:
    """A parsed document keyed by its text alone, for the validation caches."""

    __slots__ = ("node", "schema", "text")

    def __init__(self, text: str, node: DocumentNode, schema: GraphQLSchema) -> None:
        self.text, self.node, self.schema = text, node, schema

    def __hash__(self) -> int:
        return hash(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Document) and other.text == self.text


def checks_first(
    limits: Iterable[type[ValidationRule]], hide_suggestions: bool
) -> type[SchemaExtension]:
    """Validation in order of cost, so a hostile document is refused cheaply: fragment names,
    then the shape limits alone (depth, aliases, root fields), then the cost
    estimate (variables are known here: `first: $n` is costed at the value sent), then every
    rule the operation's validation declares (graphql's specified rules and each one an
    extension added, such as DisableIntrospection's), which in production skips computing the
    "did you mean" suggestions that would be hidden anyway, and last the variables' values
    (api.variables). Nothing runs a resolver or SQL before all pass."""
    # Fragment names first and alone: the depth limiter follows spreads and cannot meet a
    # fragment that is not there.
    named, shape = (KnownFragmentNamesRule,), tuple(limits)
    # Strawberry's own validation adds these two to the declared rules; so does this one.
    strawberry_rules = (MaybeNullValidationRule, OneOfInputValidationRule)

    # What does not depend on variables is remembered per document text (frontends send the
    # same few documents again and again); bounded, so unique hostile documents cannot grow it.
    @lru_cache(maxsize=VALIDATION_CACHE)
    def shape_errors(doc: _Document) -> tuple[GraphQLError, ...]:
        return tuple(validate(doc.schema, doc.node, named) or validate(doc.schema, doc.node, shape))

    @lru_cache(maxsize=VALIDATION_CACHE)
    def rule_errors(
        doc: _Document, declared: tuple[type[ASTValidationRule], ...]
    ) -> tuple[GraphQLError, ...]:
        rules = (*declared, *strawberry_rules)
        return tuple(validate(doc.schema, doc.node, rules, hide_suggestions=hide_suggestions))

    class ChecksFirst(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            ec = self.execution_context
            document = ec.graphql_document
            if document is not None and ec.pre_execution_errors is None:
                schema = ec.schema._schema
                doc = _Document(ec.query or print_ast(document), document, schema)
                errors = list(shape_errors(doc))
                if not errors:
                    cost = estimate_cost(schema, document, ec.variables or {})
                    if cost > MAX_COST:
                        errors = [
                            GraphQLError(
                                f"query cost {cost} exceeds the limit of {MAX_COST}: ask for "
                                "smaller pages or fewer nested lists",
                                extensions=TOO_COMPLEX,
                            )
                        ]
                if not errors:
                    errors = list(rule_errors(doc, tuple(ec.validation_rules)))
                if not errors:
                    operation = selected_operation(document, ec.operation_name)
                    if operation is not None:
                        errors = variable_errors(schema, operation, ec.variables or {})
                # An empty list tells Strawberry validation has run (and passed).
                ec.pre_execution_errors = errors
            yield

    return ChecksFirst


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
