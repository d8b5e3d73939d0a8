"""How the schema executes: a trusted query by its compiled plan (api.plans), every other
document on graphql-core's stock path.

The hook is graphql-core's documented one: an `executor_class` (Strawberry's
`execution_context_class`) whose public `execute_operation` is overridden. Strawberry's own
executor stays the base, so the stock path gives resolvers what Strawberry gives them.
"""

from __future__ import annotations

from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from api.plans.compiler import Plan
from api.plans.run import PlanRun


class Execution(StrawberryGraphQLCoreExecutionContext):
    def execute_operation(self, serially: bool | None = None) -> Any:
        # Middleware (Strawberry's `resolve` hooks) wraps every resolver: the stock path runs it.
        middleware = self.middleware_manager.middlewares if self.middleware_manager else ()
        plan = self.plan() if serially is None and not middleware else None
        if plan is None:
            return super().execute_operation(serially)
        return PlanRun(self, plan).result()

    def plan(self) -> Plan | None:
        """The plan of a trusted document (the HTTP edge found it in the registry), if any."""
        context = self.context_value
        digest = getattr(context, "trusted_document", None)
        if digest is None:
            return None
        return context.app.plans.get(digest, self.schema, self.operation, self.fragment_definitions)
