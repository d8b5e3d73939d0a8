"""Each document text parsed once: frontends send the same few documents again and again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress

from graphql import GraphQLError
from strawberry.extensions import ParserCache

# Bounded, so unique hostile texts only push older ones out.
PARSED_TEXTS = 256


class ParseOnce(ParserCache):
    """Strawberry's ParserCache, except for a text that does not parse (a syntax error, over
    the token limit): that one is left to Strawberry's own parse step, which reports it as the
    request's error (ParserCache's hook raises it outside that step, and the client would get
    an error without a code). An exception is never cached, so such a text is parsed again."""

    def __init__(self) -> None:
        super().__init__(maxsize=PARSED_TEXTS)

    def on_parse(self) -> Iterator[None]:
        ec = self.execution_context
        with suppress(GraphQLError):
            ec.graphql_document = self.cached_parse_document(ec.query, **ec.parse_options)
        yield
