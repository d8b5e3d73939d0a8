"""The operation boundary: one GraphQL operation = one transaction, decided by the result.

Strawberry reports resolver exceptions as `errors` in a normal response, so "commit unless an
exception escaped" would save half-done mutations. Here the commit happens only when the
result has no errors; otherwise everything rolls back. Errors are then given their contract
code, or masked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from api import signals
from api.errors import code_of, describe_failure, format_error

log = logging.getLogger("patientpool.operation")


class OperationBoundary(SchemaExtension):
    async def on_operation(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        if ctx is not None and ctx.request_info.operation_name == "":
            ctx.request_info = ctx.request_info.__class__(
                request_id=ctx.request_info.request_id,
                operation_name=self.execution_context.operation_name or "",
                client_addr=ctx.request_info.client_addr,
                user_agent=ctx.request_info.user_agent,
            )
        try:
            yield
        except BaseException:
            # Cancelled (the client went away, the server is stopping) or broken out of
            # Strawberry: nothing is committed, and the connection goes back to the pool now,
            # not when the collector finds the session (behind PgBouncer a leaked transaction
            # holds one of its few server connections).
            if ctx is not None:
                await asyncio.shield(ctx.abandon())
            raise
        result = self.execution_context.result
        errors = list(
            (result.errors if result is not None else None)
            or self.execution_context.pre_execution_errors
            or []
        )
        request_id = getattr(ctx, "request_id", "-")
        if ctx is not None:
            try:
                await ctx.finish(ok=not errors)
            except Exception as exc:  # noqa: BLE001  (the commit failed: nothing was saved)
                log.error("commit failed request_id=%s error=%s", request_id, describe_failure(exc))
                if result is not None:
                    result.data = None
                errors = [GraphQLError("commit failed", original_error=exc)]
            finally:
                try:
                    await asyncio.shield(ctx.close())
                except Exception as exc:  # noqa: BLE001  (logged; the answer still leaves coded)
                    log.error(
                        "close failed request_id=%s error=%s", request_id, describe_failure(exc)
                    )
        operation = self.execution_context.operation_name or ""
        if result is not None and errors:
            hide = ctx is not None and ctx.app.settings.is_production
            result.errors = [format_error(e, request_id, hide, operation) for e in errors]
        record = signals.current()
        if record is not None:
            record.operation = operation or None
            shown = result.errors if result is not None and result.errors else errors
            first = shown[0] if shown else None
            record.code = (
                "OK"
                if first is None
                else (first.extensions or {}).get("code") or code_of(first) or "INTERNAL"
            )
