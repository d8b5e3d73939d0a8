"""Compiled plans for trusted documents (docs/decisions/0006-compiled-plans.md).

A trusted query is compiled once per process into a tree that mirrors its selection set: per
field the response key, the graphql-core field (its Strawberry resolver, or the attribute it
reads when it has none), how its value completes (non-null, list, leaf, object, abstract), and
the child fields. Running a plan calls the same resolvers graphql-core would call, in the same
order, with the same `GraphQLResolveInfo` and arguments, and awaits each level's awaitables
together (so a DataLoader batches a level in one round), without graphql-core's per-field
dispatch: the type of every value is known from the plan, and a plain attribute is read and
serialised in place. Errors follow the spec as graphql-core reports them (message, path,
nulls propagating to the nearest nullable parent); `tests/chain/test_plans.py` is the oracle.

Only public names of graphql-core are used: the documented `Executor.execute_operation` hook
(api/execution.py), `GraphQLResolveInfo`, `get_argument_values`, `located_error`, the type
predicates and `graphql.pyutils`. Whatever a plan cannot state from them (directives with
variables, @defer/@stream, fragment variables, middleware, a field the schema does not have)
leaves the whole document to the stock path; permission checks live in the resolvers and
services, which a plan calls like graphql-core does, so it holds no list of checks to get wrong.

The package: `compiler` (what a plan holds, how a query becomes one, the per-process cache)
and `run` (one request's walk of a plan).
"""
