"""Every error leaves with `extensions.code` from CONTRACT.md; anything unexpected is masked
as INTERNAL with the request id, and its stack goes to the server log (never to the client)."""

from __future__ import annotations

import logging
import re

from graphql import GraphQLError
from sqlalchemy.orm.exc import StaleDataError

CODES = frozenset(
    {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "BAD_USER_INPUT",
        "CONFLICT",
        "RATE_LIMITED",
        "QUERY_TOO_COMPLEX",
        "INTERNAL",
    }
)
# Codes of lower layers that map onto the contract's set.
_ALIASES = {"DECRYPTION_FAILED": "INTERNAL", "KEY_SHREDDED": "NOT_FOUND"}

log = logging.getLogger("patientpool.errors")

# What Strawberry's depth, alias and token limiters say (they set no code of their own).
_TOO_COMPLEX = re.compile(
    r"exceeds maximum operation depth|aliases found\. Allowed|contains more than \d+ tokens"
)


class ApiError(Exception):
    def __init__(self, message: str, code: str, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra


def code_of(error: GraphQLError) -> str | None:
    """The contract code an error carries, or None when it must be masked."""
    original = error.original_error
    if original is None:
        # graphql-core's own errors: syntax, validation, variable coercion; our limiters set
        # their code in extensions.
        if _TOO_COMPLEX.search(error.message):
            return "QUERY_TOO_COMPLEX"
        given = (error.extensions or {}).get("code")
        return given if given in CODES else "BAD_USER_INPUT"
    if isinstance(original, StaleDataError):
        return "CONFLICT"  # an optimistic-lock miss: someone else changed the row first
    code = getattr(original, "code", None)
    if isinstance(code, str):
        code = _ALIASES.get(code, code)
        if code in CODES and code != "INTERNAL":
            return code
    return None


_SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")


def format_error(
    error: GraphQLError, request_id: str, hide_suggestions: bool = False
) -> GraphQLError:
    """The error as the client sees it. In production, graphql-core's "Did you mean …?" hints
    are cut: they would map the schema for a caller who has no introspection."""
    code = code_of(error)
    if code is None:
        log.error(
            "internal error request_id=%s path=%s",
            request_id,
            error.path,
            exc_info=error.original_error,
        )
        return GraphQLError(
            f"Internal error (request id {request_id})",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": "INTERNAL", "requestId": request_id},
        )
    extensions: dict[str, object] = {"code": code}
    original = error.original_error
    if original is not None:
        message = str(getattr(original, "message", None) or original)
        if isinstance(original, StaleDataError):
            message = "changed by someone else meanwhile; reload and try again"
        field = getattr(original, "field", None)
        if field:
            extensions["field"] = field
        extensions.update(getattr(original, "extra", {}) or {})
        if getattr(original, "code", "") == "KEY_SHREDDED":
            extensions["reason"] = "DATA_SHREDDED"
            message = "this data was crypto-shredded and can no longer be read"
    else:
        message = error.message
        if hide_suggestions:
            message = _SUGGESTION.sub("", message)
    return GraphQLError(message, nodes=error.nodes, path=error.path, extensions=extensions)
