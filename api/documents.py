"""Trusted documents: what a client publishes, how it is checked, and how a request finds it.

A frontend team generates its operations' persisted-documents manifest (graphql-codegen's
client preset: `{"<sha256>": "<document>"}`; or Apollo's persisted query list) and pushes it
with `patientpool documents push --client NAME MANIFEST.json`. Every document is checked
against the schema and the limits a request would meet (bytes, tokens, depth, aliases, root
fields, cost) and its hash against its exact text; one bad document refuses the whole
manifest. The hash a client sends is then looked up as given: the server never re-prints a
document to hash it, so whatever printer the client used, its hashes hold.

Each operation is recorded with its type and whether it may come by GET: queries only, and
none whose variables carry personal data (names, phones, health text, ids), because URLs end
up in proxy and access logs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLSchema,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    parse,
    type_from_ast,
)
from graphql.validation import specified_rules, validate
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from api.gate import operations
from api.limits import (
    MAX_ALIASES,
    MAX_COST,
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_TOKENS,
    RootFieldLimit,
    estimate_cost,
)
from domain.documents.models import TrustedDocument
from domain.documents.repository import DocumentRepository

# Arguments and input fields whose values are personal data: never in a URL.
PERSONAL = frozenset(
    {
        "name",
        "phone",
        "email",
        "password",
        "wechatId",
        "wecomExternalId",
        "nationalId",
        "medicalHistory",
        "allergies",
        "diagnoses",
        "notes",
    }
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ManifestError(ValueError):
    """A manifest refused as a whole; `problems` says why, one line per document."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def read_manifest(text: str) -> dict[str, str]:
    """{hash: document} from graphql-codegen's persisted-documents JSON or Apollo's persisted
    query list."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ManifestError(["the manifest is not JSON"]) from None
    if isinstance(data, dict) and data.get("format") == "apollo-persisted-query-manifest":
        listed = data.get("operations")
        if not isinstance(listed, list):
            raise ManifestError(["an Apollo manifest needs an `operations` list"])
        found = {}
        for n, op in enumerate(listed):
            if not (
                isinstance(op, dict) and all(isinstance(op.get(k), str) for k in ("id", "body"))
            ):
                raise ManifestError([f"operation {n}: needs `id` and `body`"])
            found[op["id"]] = op["body"]
        return found
    if isinstance(data, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        # graphql-codegen's client preset writes its keys as "sha256:<hex>"
        return {k.removeprefix("sha256:"): v for k, v in data.items()}
    raise ManifestError(
        ["not a persisted-documents manifest ({hash: document}) or an Apollo persisted query list"]
    )


def _personal_variables(operation: OperationDefinitionNode, schema: GraphQLSchema) -> bool:
    """True when a variable of the operation may carry personal data: it is used as a
    personal argument or input field, or its type holds such a field."""

    def holds_personal(type_: Any, seen: set[str]) -> bool:
        named = get_named_type(type_)
        if not isinstance(named, GraphQLInputObjectType) or named.name in seen:
            return False
        seen.add(named.name)
        return any(
            name in PERSONAL or holds_personal(field.type, seen)
            for name, field in named.fields.items()
        )

    for definition in operation.variable_definitions or ():
        type_ = type_from_ast(schema, definition.type)
        if type_ is not None and holds_personal(type_, set()):
            return True

    def in_value(name: str, value: Any) -> bool:
        if isinstance(value, VariableNode):
            return name in PERSONAL
        if isinstance(value, ObjectValueNode):
            return any(in_value(f.name.value, f.value) for f in value.fields)
        return False

    def in_selection(selection_set: SelectionSetNode | None) -> bool:
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                arguments: Iterable[ArgumentNode] = selection.arguments or ()
                if any(in_value(a.name.value, a.value) for a in arguments):
                    return True
            if in_selection(getattr(selection, "selection_set", None)):
                return True
        return False

    return in_selection(operation.selection_set)


def check_document(schema: GraphQLSchema, digest: str, text: str) -> dict[str, dict[str, Any]]:
    """The document's operations ({name: {"type", "get"}}), or ValueError with the reason."""
    if digest != sha256(text):
        raise ValueError("the hash is not the SHA-256 of the document's text")
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document: DocumentNode = parse(text, max_tokens=MAX_TOKENS)
    except GraphQLError as exc:
        raise ValueError(f"does not parse: {exc.message}") from None
    rules = (
        *specified_rules,
        MaybeNullValidationRule,
        OneOfInputValidationRule,
        *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
        *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
        RootFieldLimit,
    )
    errors = validate(schema, document, rules)
    if errors:
        raise ValueError(errors[0].message)
    if estimate_cost(schema, document, {}) > MAX_COST:
        raise ValueError(f"costs more than {MAX_COST}")
    found: dict[str, dict[str, Any]] = {}
    for op in operations(document):
        kind = op.operation.value
        if kind == "subscription":
            raise ValueError("subscriptions are not served")
        found[op.name.value if op.name else ""] = {
            "type": kind,
            "get": kind == "query" and not _personal_variables(op, schema),
        }
    return found


def checked(schema: GraphQLSchema, manifest: dict[str, str]) -> list[TrustedDocument]:
    """Every document of the manifest checked; ManifestError listing each that fails."""
    problems, documents = [], []
    for digest, text in manifest.items():
        try:
            operations = check_document(schema, digest, text)
        except ValueError as exc:
            problems.append(f"{digest[:16]}: {exc}")
            continue
        documents.append(
            TrustedDocument(hash=digest, document=text, operations=json.dumps(operations))
        )
    if problems:
        raise ManifestError(problems)
    if not documents:
        raise ManifestError(["the manifest holds no document"])
    return documents


def folder_manifest(folder: Path) -> dict[str, str]:
    """The project's own operations (frontend-schema/operations), one document a file."""
    texts = (p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.graphql")))
    return {sha256(t): t for t in texts}


async def push(
    session: AsyncSession,
    schema: GraphQLSchema,
    client: str,
    version: str,
    manifest: dict[str, str],
) -> int:
    """Checks and stores a client's manifest (owner session); returns how many documents
    came into force."""
    return await DocumentRepository(session).put(client, version, checked(schema, manifest))


@dataclass(frozen=True)
class Trusted:
    text: str
    operations: dict[str, dict[str, Any]]

    def operation(self, name: str | None) -> dict[str, Any] | None:
        """The operation a request runs: the named one, or the only one."""
        if name is not None:
            return self.operations.get(name)
        return next(iter(self.operations.values())) if len(self.operations) == 1 else None


class TrustedDocuments:
    """The registry as the served process reads it: by hash, remembered for a while (a
    revocation holds in every process within CACHE_SECONDS), and automatic persisted queries
    (documents a client sent once with their hash, in `allow` mode) remembered per process."""

    CACHE_SECONDS = 30.0
    CACHE_SIZE = 4096

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._cache: OrderedDict[str, tuple[float, Trusted | None]] = OrderedDict()
        self._automatic: OrderedDict[str, str] = OrderedDict()

    async def find(self, digest: str) -> Trusted | None:
        now = time.monotonic()
        held = self._cache.get(digest)
        if held is not None and now - held[0] < self.CACHE_SECONDS:
            return held[1]
        async with self.sessions() as session:
            row = await DocumentRepository(session).find(digest)
        found = None if row is None else Trusted(row.document, json.loads(row.operations))
        self._remember(self._cache, digest, (now, found))
        return found

    def automatic(self, digest: str) -> str | None:
        return self._automatic.get(digest)

    def remember_automatic(self, digest: str, text: str) -> None:
        self._remember(self._automatic, digest, text)

    def _remember(self, cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.CACHE_SIZE:
            cache.popitem(last=False)
