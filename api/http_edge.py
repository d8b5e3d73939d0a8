"""The HTTP edge of /graphql: every protocol mistake answered as a GraphQL response, and the
document of every request settled before Strawberry sees it.

Strawberry's router answers a malformed body, a batch or a GET with a bare `text/plain` 400,
which no GraphQL client can read. This ASGI middleware stands in front of it and checks, before
anything is parsed as GraphQL or a database session is opened:
- the method and content type, the body's size (read in chunks, so a huge body is refused
  without being held) and the document's size;
- the body's shape: one JSON object (no batches) whose `query`, `variables`, `operationName`
  and `extensions` have the types the GraphQL-over-HTTP spec gives them;
- the document: sent as text, or by the SHA-256 of its text (`extensions.persistedQuery` as
  Apollo and urql send it, or `documentId`), looked up in the trusted documents registry as
  given (api.documents). With PATIENTPOOL_PERSISTED_QUERIES=only a request runs trusted
  documents alone; with `allow` any text runs, and a text sent with its hash is remembered
  (automatic persisted queries). An unknown hash answers `PERSISTED_QUERY_NOT_FOUND` with the
  message Apollo's and urql's links read to retry with the document.
- GET: a trusted query by hash, with its variables in the URL, unless the operation takes
  personal data; never a document text and never a mutation.
What passes goes on to Strawberry as one POST with a JSON body holding the document's text; the
parsed request is left in the ASGI scope's state (`GRAPHQL_REQUEST`) so the context knows the
operation name the client actually sent. Any plain-text error Strawberry still answers is
rewritten into the same JSON shape.

Answers follow the GraphQL-over-HTTP spec: `application/graphql-response+json` when the client
accepts it, `application/json` otherwise; a request that is not well-formed gets a 4xx status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from api.documents import Trusted, TrustedDocuments, sha256
from api.errors import database_code
from api.multipart import MultipartRefusal, boundary_of, check_upload_operation, read_multipart
from api.signals import note_code

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GRAPHQL_REQUEST = "graphql_request"
GRAPHQL_UPLOADS = "graphql_uploads"
# The SHA-256 of a document found in the trusted registry (api.plans runs it by its plan).
GRAPHQL_TRUSTED = "graphql_trusted"
MULTIPART = "multipart/form-data"
RESPONSE_TYPE = "application/graphql-response+json"
# Spec field → the JSON types it may have (null is always allowed).
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "query": str,
    "variables": dict,
    "operationName": str,
    "extensions": dict,
    "documentId": str,
}
# Headers of the original request that the forwarded POST states anew.
_REPLACED = frozenset({b"content-type", b"content-length", b"transfer-encoding"})
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class EdgeRefusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_body(code: str, message: str) -> bytes:
    return json.dumps(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _media_type(scope: Scope) -> str:
    """The response's media type: graphql-response+json only for clients that ask for it."""
    accept = _header(scope, b"accept")
    return RESPONSE_TYPE if RESPONSE_TYPE in accept else "application/json"


class GraphQLEdge:
    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        max_body_bytes: int,
        max_document_bytes: int,
        documents: TrustedDocuments,
        trusted_only: bool,
        graphiql: bool,
        max_upload_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.max_document_bytes = max_document_bytes
        self.documents = documents
        self.trusted_only = trusted_only
        self.graphiql = graphiql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        uploads: dict[str, bytes] | None = None
        try:
            if scope["method"] == "GET" and self._is_graphiql(scope):
                await self.app(scope, receive, send)
                return
            if scope["method"] == "GET":
                payload = self._check_payload(_query_params(scope))
            elif self._is_multipart(scope):
                payload, uploads = await self._read_multipart(scope, receive)
                payload = self._check_payload(payload)
            else:
                self._check_method(scope)
                payload = self._check_payload(await self._read_body(scope, receive))
            query = await self._document(scope, payload)
            if uploads is not None:
                check_upload_operation(query, payload.get("operationName"))
        except MultipartRefusal as refusal:
            await self._refuse(scope, send, EdgeRefusal(refusal.status, refusal.code, str(refusal)))
            return
        except EdgeRefusal as refusal:
            await self._refuse(scope, send, refusal)
            return
        scope.setdefault("state", {})[GRAPHQL_REQUEST] = payload
        if uploads is not None:
            scope["state"][GRAPHQL_UPLOADS] = uploads
        body = json.dumps(
            {
                "query": query,
                "variables": payload.get("variables"),
                "operationName": payload.get("operationName"),
            },
            ensure_ascii=False,
        ).encode()
        forwarded = {
            **scope,
            "method": "POST",
            "query_string": b"",
            "headers": [
                *(h for h in scope.get("headers", ()) if h[0].lower() not in _REPLACED),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        await self.app(forwarded, _replay(body, receive), _json_errors(scope, send))

    def _is_graphiql(self, scope: Scope) -> bool:
        accept = _header(scope, b"accept")
        return self.graphiql and not scope.get("query_string") and "text/html" in accept

    async def _document(self, scope: Scope, payload: dict[str, Any]) -> str:
        """The text the request runs, after the registry has had its say."""
        query, digest = payload.get("query"), _persisted_hash(payload)
        is_get = scope["method"] == "GET"
        if is_get and (query is not None or digest is None):
            raise EdgeRefusal(
                405,
                "BAD_USER_INPUT",
                "GET runs trusted documents by hash only; send document texts with POST",
            )
        if query is None and digest is None:
            raise EdgeRefusal(400, "BAD_USER_INPUT", "no `query` in the request")
        if digest is not None and query is not None and sha256(query) != digest:
            raise EdgeRefusal(
                400, "BAD_USER_INPUT", "the hash is not the SHA-256 of the document sent"
            )
        if query is not None and not self.trusted_only:
            # `allow`: any text runs; one sent with its hash may later come by hash alone.
            if digest is not None:
                self.documents.remember_automatic(digest, query)
            return query
        try:
            trusted = await self.documents.find(digest or sha256(query or ""))
        except Exception as exc:
            code = database_code(exc)  # the registry's database is down or the pool is full
            if code is None:
                raise
            raise EdgeRefusal(
                503, code, "the database is not available right now; try again"
            ) from None
        if trusted is not None:
            if is_get:
                self._check_get(trusted, payload.get("operationName"))
            scope.setdefault("state", {})[GRAPHQL_TRUSTED] = digest or sha256(query or "")
            return trusted.text
        if query is not None:  # `only`, and not a trusted text
            raise EdgeRefusal(200, "FORBIDDEN", "only trusted documents are accepted here")
        remembered = None if self.trusted_only or is_get else self.documents.automatic(digest or "")
        if remembered is None:
            raise _not_found()
        return remembered

    def _check_get(self, trusted: Trusted, name: str | None) -> None:
        operation = trusted.operation(name)
        if operation is None:
            return  # no such operation: graphql answers it, with its code
        if operation["type"] != "query":
            raise EdgeRefusal(405, "BAD_USER_INPUT", "mutations are sent with POST")
        if not operation["get"]:
            raise EdgeRefusal(
                405,
                "BAD_USER_INPUT",
                "this operation takes personal data, which must not go in a URL: send it with POST",
            )

    def _is_multipart(self, scope: Scope) -> bool:
        content_type = _header(scope, b"content-type").split(";")[0].strip().lower()
        return scope["method"] == "POST" and content_type == MULTIPART

    async def _read_multipart(
        self, scope: Scope, receive: Receive
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.max_upload_bytes + self.max_body_bytes:
            raise EdgeRefusal(
                413, "BAD_USER_INPUT", f"the upload is larger than {self.max_upload_bytes} bytes"
            )
        boundary = boundary_of(_header(scope, b"content-type"))
        return await read_multipart(receive, boundary, self.max_body_bytes, self.max_upload_bytes)

    def _check_method(self, scope: Scope) -> None:
        if scope["method"] != "POST":
            raise EdgeRefusal(
                405, "BAD_USER_INPUT", "send GraphQL operations with POST and a JSON body"
            )
        content_type = _header(scope, b"content-type").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise EdgeRefusal(
                415, "BAD_USER_INPUT", "the body must be JSON (content-type: application/json)"
            )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        too_large = EdgeRefusal(
            413,
            "QUERY_TOO_COMPLEX",
            f"the request body is larger than {self.max_body_bytes} bytes",
        )
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise EdgeRefusal(400, "BAD_USER_INPUT", "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _check_payload(self, body: bytes | dict[str, Any]) -> dict[str, Any]:
        try:
            payload = json.loads(body) if isinstance(body, bytes) else body
        except (ValueError, UnicodeDecodeError):
            raise EdgeRefusal(400, "BAD_USER_INPUT", "the body is not valid JSON") from None
        if isinstance(payload, list):
            raise EdgeRefusal(
                400, "BAD_USER_INPUT", "batched operations are not accepted: send one per request"
            )
        if not isinstance(payload, dict):
            raise EdgeRefusal(400, "BAD_USER_INPUT", "the body must be a JSON object")
        for name, kind in FIELD_TYPES.items():
            value = payload.get(name)
            if value is not None and not isinstance(value, kind):
                article = "an object" if kind is dict else "a string"
                raise EdgeRefusal(400, "BAD_USER_INPUT", f"`{name}` must be {article} or null")
        query = payload.get("query")
        if query is not None and len(query.encode()) > self.max_document_bytes:
            raise EdgeRefusal(
                413,
                "QUERY_TOO_COMPLEX",
                f"the document is larger than {self.max_document_bytes} bytes",
            )
        return payload

    async def _refuse(self, scope: Scope, send: Send, refusal: EdgeRefusal) -> None:
        note_code(refusal.code)  # for the request's log line and metrics
        headers = [(b"content-type", _media_type(scope).encode())]
        if refusal.status == 405:
            headers.append((b"allow", b"POST"))
        body = error_body(refusal.code, refusal.message)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _not_found() -> EdgeRefusal:
    # Apollo's and urql's links read this message and code, then send the document.
    return EdgeRefusal(200, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")


def _persisted_hash(payload: dict[str, Any]) -> str | None:
    """The SHA-256 a client names its document by: Apollo's `persistedQuery` extension, or
    the GraphQL-over-HTTP `documentId` (`sha256:<hex>` or the bare hex)."""
    given = (payload.get("extensions") or {}).get("persistedQuery")
    wanted = given.get("sha256Hash") if isinstance(given, dict) else None
    document_id = payload.get("documentId")
    if wanted is None and isinstance(document_id, str):
        wanted = document_id.removeprefix("sha256:")
    if wanted is None:
        return None
    if not isinstance(wanted, str) or not _HEX64.match(wanted):
        raise EdgeRefusal(400, "BAD_USER_INPUT", "a document hash is 64 hexadecimal digits")
    return wanted.lower()


def _query_params(scope: Scope) -> dict[str, Any]:
    """A GET's parameters as a request body: `variables` and `extensions` are JSON texts."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        params[key] = value
    for key in ("variables", "extensions"):
        if isinstance(params.get(key), str):
            try:
                params[key] = json.loads(params[key])
            except ValueError:
                raise EdgeRefusal(400, "BAD_USER_INPUT", f"`{key}` is not valid JSON") from None
    return params


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body, already read, handed on as one message; then whatever the client sends next
    (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _json_errors(scope: Scope, send: Send) -> Send:
    """Rewrites a plain-text error from the router (a case the edge did not foresee) into the
    GraphQL error shape, keeping its status."""
    held: Message | None = None

    async def wrapped(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start":
            types = [v for k, v in message.get("headers", ()) if k.lower() == b"content-type"]
            if message["status"] >= 400 and types and types[0].startswith(b"text/plain"):
                held = message
                return
        elif held is not None and message["type"] == "http.response.body":
            text = message.get("body", b"").decode("utf-8", "replace")[:200]
            body = error_body("BAD_USER_INPUT", text or "bad request")
            headers = [
                (b"content-type", _media_type(scope).encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            await send(
                {"type": "http.response.start", "status": held["status"], "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            held = None
            return
        await send(message)

    return wrapped
