"""Every error leaves with `extensions.code` from CONTRACT.md; anything unexpected is masked
as INTERNAL with the request id, and its stack goes to the server log (never to the client).

No message of an exception reaches the log or, unless it is one of ours, the client: messages
of graphql-core and of database drivers quote the values they were given (variables, SQL
parameters), and those are patients' names, phones and health text (DESIGN.md invariant 6).
The log gets the request id, the operation, the path, the exception classes and the frames."""

from __future__ import annotations

import logging
import re
import traceback

from graphql import GraphQLError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
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
        "DATA_INTEGRITY",
        "PERSISTED_QUERY_NOT_FOUND",
        "TIMEOUT",
        "UNAVAILABLE",
        "INTERNAL",
    }
)
# Codes of lower layers that map onto the contract's set.
_ALIASES = {"DECRYPTION_FAILED": "DATA_INTEGRITY", "KEY_SHREDDED": "NOT_FOUND"}
# What graphql-core says of a variable it could not coerce, up to where it starts quoting it.
_VARIABLE = re.compile(r"^Variable '\$(\w+)' has invalid (?:default )?value(?: at ([.\w\[\]]+))?")

log = logging.getLogger("patientpool.errors")

# What Strawberry's depth, alias and token limiters say (they set no code of their own).
_TOO_COMPLEX = re.compile(
    r"exceeds maximum operation depth|aliases found\. Allowed|contains more than \d+ tokens"
)


# PostgreSQL's SQLSTATEs for a statement cut off by statement_timeout (or a cancel), and for a
# server that closed the connection (shutdown, pg_terminate_backend, a crash).
_CANCELLED = "57014"
_GONE = ("08", "57P01", "57P02", "57P03")


def database_code(exc: BaseException | None) -> str | None:
    """TIMEOUT or UNAVAILABLE when the database, not the request, made the operation fail:
    the statement timeout fired, no pooled connection came free in time, or the connection
    was lost. None for anything else (a programming error stays INTERNAL)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, PoolTimeout):
            return "UNAVAILABLE"
        if isinstance(exc, DBAPIError):
            state = str(getattr(exc.orig, "sqlstate", None) or "")
            if state == _CANCELLED:
                return "TIMEOUT"
            if exc.connection_invalidated or state.startswith(_GONE):
                return "UNAVAILABLE"
        if isinstance(exc, ConnectionError):  # refused or reset while connecting
            return "UNAVAILABLE"
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


_MESSAGES = {
    "TIMEOUT": "the database took too long to answer; nothing was saved, try again",
    "UNAVAILABLE": "the database is not available right now; nothing was saved, try again",
}


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
    if isinstance(original, GraphQLError):
        given = (original.extensions or {}).get("code")
        if given in CODES and given != "INTERNAL":
            return given
        # Before execution (no path) it is a variable graphql-core refused: the client's
        # mistake; so is an argument it refuses during execution (a null sent for an argument
        # with a default, say). Any other during execution is a value of ours a type refused:
        # the server's.
        refused = error.path is None or _ARGUMENT_REFUSED.match(original.message)
        return "BAD_USER_INPUT" if refused else None
    if isinstance(original, StaleDataError):
        return "CONFLICT"  # an optimistic-lock miss: someone else changed the row first
    from_database = database_code(original)
    if from_database is not None:
        return from_database
    code = getattr(original, "code", None)
    if isinstance(code, str):
        code = _ALIASES.get(code, code)
        if code in CODES and code != "INTERNAL":
            return code
    return None


# graphql-core's words when an argument's value is refused at execution (values.py).
_ARGUMENT_REFUSED = re.compile(r"Argument '\w+' has invalid value")
_SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")


def describe_failure(exc: BaseException | None) -> str:
    """An exception for the log: its class and those of its causes, and the frames, without
    any exception's message."""
    if exc is None:
        return "no exception"
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 5:
        chain.append(current)
        current = current.__cause__ or current.__context__
    classes = " <- ".join(f"{type(e).__module__}.{type(e).__qualname__}" for e in chain)
    frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)[-12:]))
    return f"{classes}\n{frames}".rstrip()


def variable_message(message: str) -> tuple[str, str | None]:
    """graphql-core's words for a refused variable cut before the value they quote, and the
    variable's path."""
    found = _VARIABLE.match(message)
    if found is None:
        return "a variable has an invalid value", None
    where = f"${found.group(1)}{found.group(2) or ''}"
    return f"Variable {where} has an invalid value", where


def format_error(
    error: GraphQLError, request_id: str, hide_suggestions: bool = False, operation: str = ""
) -> GraphQLError:
    """The error as the client sees it. In production, graphql-core's "Did you mean …?" hints
    are cut: they would map the schema for a caller who has no introspection."""
    code = code_of(error)
    if code is None:
        log.error(
            "internal error request_id=%s operation=%s path=%s error=%s",
            request_id,
            operation[:100] or "-",
            error.path,
            describe_failure(error.original_error),
        )
        return GraphQLError(
            f"Internal error (request id {request_id})",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": "INTERNAL", "requestId": request_id},
        )
    extensions: dict[str, object] = {"code": code}
    original = error.original_error
    if isinstance(original, GraphQLError):
        if (original.extensions or {}).get("code") is None:
            # graphql-core's own (a refused variable): its message quotes the value
            message, where = variable_message(error.message)
            if where:
                extensions["field"] = where
        else:
            message = original.message
            extensions.update(original.extensions or {})
    elif code in _MESSAGES:
        # The driver's message quotes the statement and its parameters.
        message = _MESSAGES[code]
        extensions["requestId"] = request_id
    elif original is not None:
        message = str(getattr(original, "message", None) or original)
        if isinstance(original, StaleDataError):
            message = "changed by someone else meanwhile; reload and try again"
        field = getattr(original, "field", None)
        if field:
            extensions["field"] = field
        extensions.update(getattr(original, "extra", {}) or {})
        if getattr(original, "code", "") == "DECRYPTION_FAILED":
            message = "this stored value failed its integrity check and cannot be shown"
        if getattr(original, "code", "") == "KEY_SHREDDED":
            extensions["reason"] = "DATA_SHREDDED"
            message = "this data was crypto-shredded and can no longer be read"
    else:
        message = error.message
        for key in ("field", "reason"):
            value = (error.extensions or {}).get(key)
            if value:
                extensions[key] = value
        if hide_suggestions:
            message = _SUGGESTION.sub("", message)
    return GraphQLError(message, nodes=error.nodes, path=error.path, extensions=extensions)
