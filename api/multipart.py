"""The GraphQL multipart request spec (github.com/jaydenseric/graphql-multipart-request-spec),
read at the HTTP edge for the one operation that takes a file, `importPatients`.

The body is streamed through python-multipart's parser: the `operations` and `map` fields
first (each at most the edge's body limit), then the file parts (together at most
PATIENTPOOL_MAX_UPLOAD_BYTES). A file's bytes stay in memory, never in a temporary file: an
upload is a spreadsheet of patients in the clear. Each file's place in the variables gets a
token (`upload:<map key>`) that the resolver trades for the bytes (Context.upload).

Cross-site requests: a form post is a "simple" request that browsers send without asking, so
Strawberry insists on a non-simple header for multipart. Here the operation answers only a
caller with `Authorization: Bearer …`, a header no page can add to another origin's request
without a CORS preflight, which this API does not grant.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from graphql import FieldNode, OperationDefinitionNode, parse
from graphql.error import GraphQLSyntaxError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
UPLOAD_FIELDS = frozenset({"importPatients"})
TOKEN = "upload:"


class MultipartRefusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad(message: str, status: int = 400) -> MultipartRefusal:
    return MultipartRefusal(status, "BAD_USER_INPUT", message)


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    size: int = 0
    chunks: list[bytes] = field(default_factory=list)


def boundary_of(content_type: str) -> bytes:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 70:
        raise bad("a multipart body needs a boundary (content-type: multipart/form-data; …)")
    return boundary


async def read_multipart(
    receive: Receive, boundary: bytes, max_field_bytes: int, max_upload_bytes: int
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The `operations` object, with a token in the place of each file, and the files by
    token."""
    parts: list[_Part] = []
    header_name = b""
    headers: dict[bytes, bytes] = {}
    file_bytes = 0
    ended = False

    def on_part_begin() -> None:
        headers.clear()
        parts.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        nonlocal header_name
        header_name += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        key = header_name.lower()
        headers[key] = headers.get(key, b"") + data[start:end]

    def on_header_end() -> None:
        nonlocal header_name
        header_name = b""

    def on_headers_finished() -> None:
        kind, params = parse_options_header(headers.get(b"content-disposition", b""))
        if kind != b"form-data" or b"name" not in params:
            raise bad("every multipart part needs content-disposition: form-data; name=…")
        part = parts[-1]
        part.name = params[b"name"].decode("utf-8", "replace")
        filename = params.get(b"filename")
        part.filename = None if filename is None else filename.decode("utf-8", "replace")
        if len(parts) <= 2 and part.name != ("operations", "map")[len(parts) - 1]:
            raise bad("a multipart request starts with the `operations` part, then `map`")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal file_bytes
        part = parts[-1]
        part.size += end - start
        if len(parts) <= 2:
            if part.size > max_field_bytes:
                message = f"`{part.name}` is larger than {max_field_bytes} bytes"
                raise MultipartRefusal(413, "QUERY_TOO_COMPLEX", message)
        else:
            file_bytes += end - start
            if file_bytes > max_upload_bytes:
                raise bad(f"the upload is larger than {max_upload_bytes} bytes", 413)
        part.chunks.append(bytes(data[start:end]))

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_end": on_end,
        },
    )
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise bad("the client went away")
            parser.write(message.get("body", b""))
            if not message.get("more_body", False):
                break
        parser.finalize()
    except MultipartParseError:
        raise bad("the multipart body is malformed") from None
    if not ended or len(parts) < 2:
        raise bad("the multipart body ends early: it needs `operations`, `map` and the files")
    operations = _json(parts[0], "operations")
    mapping = _json(parts[1], "map")
    files = {p.name: b"".join(p.chunks) for p in parts[2:]}
    if len(files) != len(parts) - 2:
        raise bad("two file parts have the same name")
    if not isinstance(operations, dict):
        raise bad("`operations` must be one JSON object (batches are not accepted)")
    return operations, _place(operations, mapping, files)


def _json(part: _Part, name: str) -> Any:
    try:
        return json.loads(b"".join(part.chunks))
    except (ValueError, UnicodeDecodeError):
        raise bad(f"`{name}` is not valid JSON") from None


def _place(operations: dict[str, Any], mapping: Any, files: dict[str, bytes]) -> dict[str, bytes]:
    """Put a token at every path the map names; the files by token."""
    if not isinstance(mapping, dict) or not all(
        isinstance(v, list) and v and all(isinstance(p, str) for p in v) for v in mapping.values()
    ):
        raise bad("`map` must be an object of file keys to lists of paths")
    if set(mapping) != set(files):
        raise bad("`map` and the file parts must name the same files")
    uploads: dict[str, bytes] = {}
    for key, paths in mapping.items():
        token = TOKEN + key
        uploads[token] = files[key]
        for path in paths:
            steps = path.split(".")
            if steps[0] != "variables" or len(steps) < 2:
                raise bad("a `map` path starts with `variables.`")
            holder: Any = operations
            for step in steps[:-1]:
                holder = _step(holder, step)
            _set(holder, steps[-1], token)
    return uploads


def _step(holder: Any, step: str) -> Any:
    if isinstance(holder, dict) and isinstance(holder.get(step), dict | list):
        return holder[step]
    if isinstance(holder, list) and step.isdigit() and int(step) < len(holder):
        return holder[int(step)]
    raise bad("a `map` path does not lead into the operation's variables")


def _set(holder: Any, step: str, token: str) -> None:
    if isinstance(holder, dict) and step in holder and holder[step] is None:
        holder[step] = token
    elif isinstance(holder, list) and step.isdigit() and int(step) < len(holder):
        holder[int(step)] = token
    else:
        raise bad("a `map` path must end at a null variable")


def check_upload_operation(document: str, operation_name: str | None) -> None:
    """Multipart is for `importPatients` alone: one mutation whose root fields are all it."""
    try:
        parsed = parse(document)
    except GraphQLSyntaxError:
        return  # graphql answers it, with its code
    operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return  # no such operation, or several without a name: graphql answers it
    operation = operations[0]
    selections = operation.selection_set.selections
    if (
        operation.operation.value != "mutation"
        or not selections
        or not all(isinstance(s, FieldNode) and s.name.value in UPLOAD_FIELDS for s in selections)
    ):
        raise bad("multipart requests are accepted for importPatients only")
