"""Engines and tenant-bound sessions: the ORM half of tenant isolation.

A `TenantSession` carries one tenant in `session.info`. Every ORM select, update and delete of a
`TenantScoped` model, and the select inside an INSERT … SELECT, gets `tenant_id = :tenant` added
(relationship and eager loads included, through `with_loader_criteria`), inserts are stamped,
and a statement on tenant-owned rows without a tenant raises instead of returning everything. On
PostgreSQL each transaction also sets `app.tenant_id` with `set_config(..., true)` (transaction-
local), which the RLS policies read: a pooled connection never carries a tenant into the next
transaction. The statement timeout, when the session factory was given one, is set in that same
statement, just as transaction-local (`SET LOCAL` semantics), so it too holds under a
transaction-mode pooler.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, with_loader_criteria
from sqlalchemy.sql.util import find_tables

from tenancy.orm import TenantScoped, is_tenant_scoped, tenant_tables

TENANT_KEY = "tenant_id"
TIMEOUT_KEY = "statement_timeout_ms"
RLS_SETTING = "app.tenant_id"


_Row = TypeVar("_Row", bound=TenantScoped)


class TenantContextError(RuntimeError):
    """Tenant-owned rows were touched without a tenant, or with another tenant's id."""


class TenantSession(Session):
    """The only session class the application uses; the events below are bound to it."""


def make_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    pooler: str | None = None,
    pool_timeout: float = 30.0,
) -> AsyncEngine:
    """`pooler="pgbouncer"`: a transaction-mode pooler sits in front, so consecutive
    transactions of one client connection may run on different server connections. asyncpg
    then keeps no statement cache (a cached prepared statement would be looked for on a server
    that never saw it) and names each statement uniquely (two clients' statements may meet on
    one server); the tenant is set per transaction anyway (`set_config(..., true)`)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    if pooler == "pgbouncer":
        return create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=pool_timeout,
            connect_args={
                "statement_cache_size": 0,
                "prepared_statement_cache_size": 0,
                "prepared_statement_name_func": _unique_statement_name,
            },
        )
    # pre-ping: a connection the server dropped (a restart, pg_terminate_backend) is replaced
    # on checkout instead of failing the next request.
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
    )


def _unique_statement_name() -> str:
    return f"__pp_{uuid.uuid4().hex}__"


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is lazy and deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: every operation may append to the access
        # log, and a deferred transaction that upgrades later fails with SQLITE_BUSY at once.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class SerialAsyncSession(AsyncSession):
    """An AsyncSession that its request's resolvers may share.

    GraphQL resolves sibling fields concurrently, and one AsyncSession must never run two
    statements at once; each database call here waits for the previous one. DataLoaders
    still batch, because they gather their keys before their one query.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Lock()

    async def execute(self, *args: Any, **kwargs: Any) -> Any:  # scalars() goes through here
        async with self._gate:
            return await super().execute(*args, **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        async with self._gate:
            return await super().scalar(*args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        async with self._gate:
            return await super().get(*args, **kwargs)

    async def flush(self, *args: Any, **kwargs: Any) -> None:
        async with self._gate:
            await super().flush(*args, **kwargs)

    async def commit(self) -> None:
        async with self._gate:
            await super().commit()

    async def rollback(self) -> None:
        async with self._gate:
            await super().rollback()

    async def refresh(self, *args: Any, **kwargs: Any) -> None:
        async with self._gate:
            await super().refresh(*args, **kwargs)


def session_factory(
    engine: AsyncEngine, *, statement_timeout_ms: int | None = None
) -> async_sessionmaker[AsyncSession]:
    """`statement_timeout_ms`: on PostgreSQL every transaction of these sessions sets it."""
    return async_sessionmaker(
        engine,
        class_=SerialAsyncSession,
        sync_session_class=TenantSession,
        expire_on_commit=False,
        info={TIMEOUT_KEY: statement_timeout_ms} if statement_timeout_ms else {},
    )


def current_tenant(session: AsyncSession | Session) -> uuid.UUID | None:
    return session.info.get(TENANT_KEY)


async def bind_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Bind a session to one tenant for the rest of its life; rebinding elsewhere is refused."""
    bound = session.info.get(TENANT_KEY)
    if bound is not None and bound != tenant_id:
        raise TenantContextError("session is already bound to another tenant")
    session.info[TENANT_KEY] = tenant_id
    # A transaction that began before the binding missed `after_begin`: set it now.
    if session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        await session.execute(_SET_TENANT, {"t": str(tenant_id)})


@asynccontextmanager
async def tenant_session(
    sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID
) -> AsyncIterator[AsyncSession]:
    """A new session bound to one tenant for its whole life, closed when the block ends: how
    workers, background jobs and commands reach a tenant's rows (the request boundary binds the
    request's own session once the token is verified, in auth.sessions). Transactions are the
    caller's (`session.begin()`), as with any session."""
    async with sessions() as session:
        await bind_tenant(session, tenant_id)
        yield session


_SET_TENANT = text(f"SELECT set_config('{RLS_SETTING}', :t, true)")
_SET_TIMEOUT = text("SELECT set_config('statement_timeout', :ms, true)")
_SET_BOTH = text(
    f"SELECT set_config('{RLS_SETTING}', :t, true), set_config('statement_timeout', :ms, true)"
)


@event.listens_for(TenantSession, "after_begin")
def _set_transaction_settings(
    session: Session, _tx: SessionTransaction, connection: Connection
) -> None:
    if connection.dialect.name != "postgresql":
        return
    tenant_id = session.info.get(TENANT_KEY)
    timeout = session.info.get(TIMEOUT_KEY)
    if tenant_id is not None and timeout:
        connection.execute(_SET_BOTH, {"t": str(tenant_id), "ms": str(timeout)})
    elif tenant_id is not None:
        connection.execute(_SET_TENANT, {"t": str(tenant_id)})
    elif timeout:
        connection.execute(_SET_TIMEOUT, {"ms": str(timeout)})


def _touches_tenant_rows(state: ORMExecuteState) -> bool:
    # `all_mappers` misses entities named only in select_from() (e.g. a count), so the
    # statement's tables are checked as well.
    if any(is_tenant_scoped(m.class_) for m in state.all_mappers):
        return True
    owned = _tenant_table_names()
    tables = find_tables(state.statement, check_columns=True, include_joins=True)
    return any(getattr(t, "name", None) in owned for t in tables)


@lru_cache(maxsize=1)
def _tenant_table_names() -> frozenset[str]:
    return frozenset(tenant_tables())


@event.listens_for(TenantSession, "do_orm_execute")
def _add_tenant_filter(state: ORMExecuteState) -> None:
    # INSERT … SELECT (`from_select`) reads rows as a select does: the criteria below reach
    # the select inside it (its CTEs and subqueries too), so it copies the bound tenant's rows
    # only. A plain INSERT … VALUES reads nothing (flush and `stamp_rows` stamp the tenant).
    from_select = state.is_insert and getattr(state.statement, "select", None) is not None
    if not (state.is_select or state.is_update or state.is_delete or from_select):
        return
    if state.is_column_load:
        return
    tenant_id = state.session.info.get(TENANT_KEY)
    if tenant_id is None:
        if _touches_tenant_rows(state):
            raise TenantContextError("tenant-owned rows queried without a tenant")
        return
    # A bound session's every statement gets the criteria, without first working out whether
    # it touches tenant-owned rows (that walk of the statement cost more than the criteria):
    # the criteria apply to the TenantScoped models it names and to nothing else.
    state.statement = state.statement.options(_tenant_criteria(tenant_id))


@lru_cache(maxsize=1024)
def _tenant_criteria(tenant_id: uuid.UUID) -> Any:
    """`tenant_id = :tenant` on every TenantScoped entity of a statement (relationship and
    eager loads included), made once per tenant: the option is the same for every statement
    of the tenant, and making it (the lambda's analysis) cost more than adding it."""
    return with_loader_criteria(
        TenantScoped, lambda cls: cls.tenant_id == tenant_id, include_aliases=True
    )


@event.listens_for(TenantSession, "before_flush")
def _stamp_tenant(session: Session, _ctx: Any, _instances: Any) -> None:
    tenant_id = session.info.get(TENANT_KEY)
    for obj in session.new:
        if not is_tenant_scoped(type(obj)):
            continue
        if tenant_id is None:
            raise TenantContextError("tenant-owned row inserted without a tenant")
        if obj.tenant_id is None:
            obj.tenant_id = tenant_id
        elif obj.tenant_id != tenant_id:
            raise TenantContextError("row stamped with another tenant")
    for obj in session.dirty:
        if is_tenant_scoped(type(obj)) and obj.tenant_id != tenant_id:
            raise TenantContextError("row of another tenant changed")


def stamp(session: AsyncSession, obj: _Row) -> _Row:
    """Stamp the current tenant on a new row now rather than at flush, for rows whose id must
    be known first (a ciphertext bound to a row keyed by its tenant)."""
    tenant_id = current_tenant(session)
    if tenant_id is None:
        raise TenantContextError("tenant-owned row made without a tenant")
    if obj.tenant_id is None:
        obj.tenant_id = tenant_id
    elif obj.tenant_id != tenant_id:
        raise TenantContextError("row stamped with another tenant")
    return obj


def stamp_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stamp the current tenant on rows for a bulk (executemany) insert."""
    tenant_id = current_tenant(session)
    if tenant_id is None:
        raise TenantContextError("bulk insert without a tenant")
    for row in rows:
        if row.setdefault(TENANT_KEY, tenant_id) != tenant_id:
            raise TenantContextError("row stamped with another tenant")
    return rows


async def lock_tenant(session: AsyncSession, purpose: str, *, shared: bool = False) -> None:
    """Serialise one kind of write per tenant until the transaction ends (checks that read
    before they write, such as referral cycle checks); `shared` holders run together and only
    exclude the exclusive ones. PostgreSQL takes a transaction-level advisory lock; SQLite needs
    none, its BEGIN IMMEDIATE already serialises writers."""
    tenant_id = current_tenant(session)
    if tenant_id is None:
        raise TenantContextError("lock_tenant needs a bound tenant")
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text(
                "SELECT pg_advisory_xact_lock_shared(hashtext(:key))"
                if shared
                else "SELECT pg_advisory_xact_lock(hashtext(:key))"
            ),
            {"key": f"{purpose}:{tenant_id}"},
        )


# SQLite's busy handler retries a locked database at most every 100 ms, while a loop of write
# transactions takes the lock again microseconds after each commit: without a pause longer
# than that retry, such a loop starves every other writer (the API, a second import process)
# until it ends. Seen: a second process started beside an import never got its first
# transaction in before the 1,200-row job was done.
SQLITE_WRITER_TURN = 0.12


async def let_other_writers_in(session: AsyncSession) -> None:
    """Call between the write transactions of a long loop. On SQLite: a pause long enough for
    a waiting writer's next retry to find the lock free. PostgreSQL needs none (row locks)."""
    if session.get_bind().dialect.name == "sqlite":
        await asyncio.sleep(SQLITE_WRITER_TURN)
