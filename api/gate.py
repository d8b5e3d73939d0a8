"""What is settled about an operation before any of its arguments is looked at.

- **One operation, named.** A document with several operations runs only the one the request
  names (`operationName`); without a name it is refused, as the GraphQL spec asks (Strawberry
  would run the first).
- **The caller first.** Every root field but the public ones (`PUBLIC_ROOT_FIELDS`: signing in)
  needs a caller, and a request without a valid token (none, malformed, forged or expired)
  answers UNAUTHENTICATED before validation, cost or variables are looked at: whatever else is
  wrong with the request, an anonymous caller learns only that it must sign in, and nothing of
  the schema. This check reads no database; a token whose user or session was revoked since is
  refused when the first resolver loads the principal, before it reads an argument.
- **Patients at their own door.** A patient token (signInPatient) reaches the patient root
  fields and the public ones, nothing else; a staff or service token reaches no patient root
  field. Either way the answer is FORBIDDEN before anything runs, the same for every field.
- **Enrolment first.** A token that may only set up a second factor (a member of a role the
  chain requires one of, who has none yet) reaches the enrolment fields and `me`, nothing
  else: FORBIDDEN with reason TOTP_ENROLMENT_REQUIRED.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension

from auth.sessions import AuthError

# Introspection's own root fields: answered (or refused in production) by graphql itself.
META_FIELDS = frozenset({"__typename", "__schema", "__type"})


def operations(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]


def selected_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    found = operations(document)
    if name is None:
        return found[0] if len(found) == 1 else None
    return next((op for op in found if op.name is not None and op.name.value == name), None)


def root_field_names(document: DocumentNode, operation: OperationDefinitionNode) -> set[str]:
    """The root fields an operation selects, through fragments (a fragment can hold a root
    field as well as a selection can)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    names: set[str] = set()
    seen: set[str] = set()

    def walk(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                names.add(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                walk(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in seen:
                    seen.add(name)
                    walk(fragments[name].selection_set)

    walk(operation.selection_set)
    return names


def bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def enrol_first() -> GraphQLError:
    return GraphQLError(
        "set up your second factor first (startTotpEnrolment, then confirmTotp), "
        "then sign in again",
        extensions={"code": "FORBIDDEN", "reason": "TOTP_ENROLMENT_REQUIRED"},
    )


def patients_only() -> GraphQLError:
    return GraphQLError(
        "a patient token reaches only the patient fields (myRecord, myVisits, …)",
        extensions={"code": "FORBIDDEN"},
    )


def staff_only() -> GraphQLError:
    return GraphQLError(
        "the patient fields take a patient token (signInPatient)",
        extensions={"code": "FORBIDDEN"},
    )


def caller_first(
    public_root_fields: frozenset[str],
    enrolment_root_fields: frozenset[str] = frozenset(),
    patient_root_fields: frozenset[str] = frozenset(),
) -> type[SchemaExtension]:
    public = public_root_fields | META_FIELDS
    enrolment = enrolment_root_fields | META_FIELDS
    patient = patient_root_fields | public

    class CallerFirst(SchemaExtension):
        def on_parse(self) -> Iterator[None]:
            yield
            ec = self.execution_context
            document, ctx = ec.graphql_document, ec.context
            if document is None or ctx is None or ec.pre_execution_errors is not None:
                return
            if ctx.requested_operation_name is None and len(operations(document)) > 1:
                ec.pre_execution_errors = [
                    bad_input(
                        "the document holds several operations: name the one to run in "
                        "`operationName`"
                    )
                ]

        def on_validate(self) -> Iterator[None]:
            ec = self.execution_context
            document, ctx = ec.graphql_document, ec.context
            if document is not None and ctx is not None and ec.pre_execution_errors is None:
                operation = selected_operation(document, ctx.requested_operation_name)
                names = None if operation is None else root_field_names(document, operation)
                if names is None or not names <= public:
                    try:
                        # No SQL here: a hostile document is still refused by the limits
                        # before anything reaches the database.
                        claims = ctx.claims()
                    except AuthError as exc:
                        ec.pre_execution_errors = [
                            GraphQLError(str(exc), extensions={"code": exc.code})
                        ]
                    else:
                        limited = claims is not None and claims.enrolment_only
                        is_patient = claims is not None and claims.kind == "patient"
                        if limited and (names is None or not names <= enrolment):
                            ec.pre_execution_errors = [enrol_first()]
                        elif is_patient and (names is None or not names <= patient):
                            ec.pre_execution_errors = [patients_only()]
                        elif not is_patient and names and names & patient_root_fields:
                            ec.pre_execution_errors = [staff_only()]
            yield

    return CallerFirst
