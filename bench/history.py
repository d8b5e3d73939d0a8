"""`uv run python -m bench history [--entries N] [--patients P] [--runs R] [--database-url URL]`

"Who read this patient's record" with a large access log: the first page (20 entries, newest
first) and the count of one patient's entries, as `patientAccessHistory` (auditors) and
`myAccessHistory` (the patient) read them, through the index of touched patients
(`access_log_patients`), against the JSON-text scan they used before (`LIKE '%"<uuid>"%'`).

One tenant gets N entries (85% about one patient, 15% a list read of 20 patients, over P
patients) and their index rows, written in bulk (the hashes are placeholders: the chain is not
what is measured). Each figure is R patients picked at random, each read in its own
tenant-bound transaction as the app reads it (ORM tenant filter; RLS on PostgreSQL when the
URL is the app's role). A temporary SQLite file by default; `--database-url
postgresql+asyncpg://…` (the owner of an empty database) for PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Uuid, bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from auth import access_history
from auth import access_log_queries as queries
from auth.access_log import AccessLogEntry, AccessLogPatient
from auth.provisioning import create_tenant
from bench.harness import percentile
from migrations.runner import upgrade
from tenancy.keyring import LocalKeyProvider, generate_master_key_text
from tenancy.session import bind_tenant, make_engine, session_factory

BATCH = 20_000
LIST_SHARE, LIST_SIZE = 0.15, 20


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


COLUMNS = (
    "tenant_id", "seq", "id", "occurred_at", "actor_type", "actor_id", "actor_roles", "action",
    "patient_ids", "field_groups", "operation_name", "request_id", "client_addr", "user_agent",
    "outcome", "reason", "prev_hash", "entry_hash",
)  # fmt: skip
INSERT_ENTRY = text(
    f"INSERT INTO access_log ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)})"
)
INSERT_TOUCHED = text(
    "INSERT INTO access_log_patients (tenant_id, patient_id, seq) VALUES (:tenant_id, :pid, :seq)"
)


async def _fill(
    engine: AsyncEngine,
    tenant_id: uuid.UUID,
    patients: list[uuid.UUID],
    entries: int,
) -> None:
    """Bulk rows in the driver's own forms (no per-row type processing: this is a loader)."""
    pg = engine.dialect.name == "postgresql"

    def as_uuid(value: uuid.UUID) -> object:
        return value if pg else value.hex

    def as_time(value: datetime) -> object:
        return value if pg else value.replace(tzinfo=None).isoformat(sep=" ")

    rng = random.Random(7)
    actor, tid = str(uuid.uuid4()), as_uuid(tenant_id)
    start = datetime.now(UTC) - timedelta(seconds=entries)
    began, seq = time.perf_counter(), 0
    while seq < entries:
        rows, touched = [], []
        for _ in range(min(BATCH, entries - seq)):
            seq += 1
            many = rng.random() < LIST_SHARE
            about = rng.sample(patients, LIST_SIZE) if many else [rng.choice(patients)]
            rows.append(
                {
                    "tenant_id": tid, "seq": seq, "id": as_uuid(uuid.uuid4()),
                    "occurred_at": as_time(start + timedelta(seconds=seq)), "actor_type": "user",
                    "actor_id": actor, "actor_roles": "doctor",
                    "action": "list" if many else "read",
                    "patient_ids": json.dumps(sorted(str(p) for p in about)),
                    "field_groups": "contact", "operation_name": "Bench", "request_id": "",
                    "client_addr": "", "user_agent": "", "outcome": "allowed", "reason": "",
                    "prev_hash": b"\0" * 32, "entry_hash": b"\0" * 32,
                }
            )  # fmt: skip
            touched += [{"tenant_id": tid, "pid": as_uuid(p), "seq": seq} for p in about]
        async with engine.begin() as conn:
            if pg:
                await conn.execute(
                    text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant_id)}
                )
            await conn.execute(INSERT_ENTRY, rows)
            await conn.execute(INSERT_TOUCHED, touched)
        rate = seq / (time.perf_counter() - began)
        _say(f"  {seq:,} / {entries:,} entries ({rate:,.0f}/s)")
    async with engine.begin() as conn:
        if pg:
            await conn.execute(
                text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant_id)}
            )
        await conn.execute(
            text("UPDATE access_log_heads SET seq = :n WHERE tenant_id = :t"),
            {"n": entries, "t": tid},
        )


# PostgreSQL writes the rows itself (generate_series): the same shape, made server-side. Patient
# k is the uuid 00000000-0000-4000-8000-<k in hex>; entry g is about patient g·7919 mod P, and
# every seventh entry is a list read of 20 patients.
PG_PATIENT = (
    "('00000000-0000-4000-8000-' || "
    "lpad(to_hex((g::bigint * 7919 + j * 13) % CAST(:p AS bigint)), 12, '0'))"
)
PG_ABOUT = "generate_series(0, CASE WHEN g % 7 = 0 THEN 19 ELSE 0 END) AS j"
PG_ENTRIES = f"""
INSERT INTO access_log ({", ".join(COLUMNS)})
SELECT :t, g, md5(g::text || :salt)::uuid,
  now() - make_interval(secs => CAST(:n AS integer) - g), 'user', :actor, 'doctor',
  CASE WHEN g % 7 = 0 THEN 'list' ELSE 'read' END,
  (SELECT json_agg(pid ORDER BY pid)::text FROM (SELECT {PG_PATIENT} AS pid FROM {PG_ABOUT}) s),
  'contact', 'Bench', '', '', '', 'allowed', '', '\\x00'::bytea, '\\x00'::bytea
FROM generate_series(CAST(:a AS integer), CAST(:b AS integer)) AS g
"""
PG_TOUCHED = f"""
INSERT INTO access_log_patients (tenant_id, patient_id, seq)
SELECT DISTINCT :t, {PG_PATIENT}::uuid, g
FROM generate_series(CAST(:a AS integer), CAST(:b AS integer)) AS g, {PG_ABOUT}
"""
PG_BATCH = 500_000


def pg_patients(n: int) -> list[uuid.UUID]:
    return [uuid.UUID(f"00000000-0000-4000-8000-{k:012x}") for k in range(n)]


async def _fill_pg(engine: AsyncEngine, tenant_id: uuid.UUID, n_patients: int, entries: int):
    began = time.perf_counter()
    salt, actor = uuid.uuid4().hex, str(uuid.uuid4())
    for a in range(1, entries + 1, PG_BATCH):
        b = min(entries, a + PG_BATCH - 1)
        values = {"t": tenant_id, "a": a, "b": b, "p": n_patients, "n": entries}
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant_id)}
            )
            await conn.execute(
                text(PG_ENTRIES).bindparams(bindparam("t", type_=Uuid())),
                {**values, "salt": salt, "actor": actor},
            )
            await conn.execute(text(PG_TOUCHED).bindparams(bindparam("t", type_=Uuid())), values)
        _say(f"  {b:,} / {entries:,} entries ({b / (time.perf_counter() - began):,.0f}/s)")
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant_id)}
        )
        await conn.execute(
            text("UPDATE access_log_heads SET seq = :n WHERE tenant_id = :t").bindparams(
                bindparam("t", type_=Uuid())
            ),
            {"n": entries, "t": tenant_id},
        )


async def _time(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: uuid.UUID,
    picks: list[uuid.UUID],
    read: Callable[[AsyncSession, uuid.UUID], Awaitable[object]],
) -> list[float]:
    samples = []
    for pid in picks:
        async with sessions() as session, session.begin():
            await bind_tenant(session, tenant_id)
            began = time.perf_counter()
            await read(session, pid)
            samples.append((time.perf_counter() - began) * 1000)
    return samples


async def _page(session: AsyncSession, pid: uuid.UUID) -> object:
    return await queries.page(session, queries.LogFilter(patient_id=pid), 21, None)


async def _mine(session: AsyncSession, pid: uuid.UUID) -> object:
    rows = await access_history.entries(session, pid, 21, None)
    return await access_history.staff_facts(session, rows)


async def _count(session: AsyncSession, pid: uuid.UUID) -> object:
    return await access_history.count(session, pid)


async def _scan(session: AsyncSession, pid: uuid.UUID) -> object:
    """The query patientAccessHistory ran before the index (migration 0021)."""
    stmt = (
        select(AccessLogEntry)
        .where(AccessLogEntry.patient_ids.like(f'%"{pid}"%'))
        .order_by(AccessLogEntry.seq.desc())
        .limit(21)
    )
    return (await session.scalars(stmt)).all()


async def run(entries: int, n_patients: int, runs: int, url: str | None) -> str:
    tmp = None
    if url is None:
        tmp = tempfile.mkdtemp(prefix="pp-bench-history-")
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
    _say(f"migrating {url.split('@')[-1]}")
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url, pool_size=2)
    sessions = session_factory(engine)
    provider = LocalKeyProvider.from_text(generate_master_key_text())
    async with sessions() as session, session.begin():
        made = await create_tenant(
            session, provider, slug=f"bench-{uuid.uuid4().hex[:8]}", name="Bench",
            admin_email="admin@bench.test",
        )  # fmt: skip
        tenant_id = made.tenant.id
    _say(f"writing {entries:,} access-log entries about {n_patients:,} patients")
    if engine.dialect.name == "postgresql":
        patients = pg_patients(n_patients)
        await _fill_pg(engine, tenant_id, n_patients, entries)
    else:
        patients = [uuid.uuid4() for _ in range(n_patients)]
        await _fill(engine, tenant_id, patients, entries)
    if engine.dialect.name == "postgresql":
        # What autovacuum does to append-only tables (insert-triggered since PostgreSQL 13):
        # statistics, and the visibility map that lets a count read the index alone.
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.exec_driver_sql("VACUUM (ANALYZE) access_log")
            await auto.exec_driver_sql("VACUUM (ANALYZE) access_log_patients")
    else:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
    async with sessions() as session, session.begin():
        await bind_tenant(session, tenant_id)
        indexed = await session.scalar(select(func.count()).select_from(AccessLogPatient))
    rng = random.Random(11)
    picks = [rng.choice(patients) for _ in range(runs)]
    lines = [
        f"{engine.dialect.name}; {entries:,} access-log entries, {indexed:,} index rows, "
        f"{n_patients:,} patients; {runs} patients read per figure",
        "",
        "| read | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    cases = [
        ("patientAccessHistory first page (index)", _page, picks),
        ("myAccessHistory first page + staff facts (index)", _mine, picks),
        ("history totalCount (index)", _count, picks),
        ("first page by LIKE scan (before 0021)", _scan, picks[: max(5, runs // 20)]),
    ]
    for name, read, which in cases:
        _say(f"timing {name}")
        samples = await _time(sessions, tenant_id, which, read)
        figures = [percentile(samples, q) for q in (50, 95, 99)] + [max(samples)]
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in figures) + " |")
    await engine.dispose()
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench history", description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    if args.entries < 1000 or args.patients < 100 or args.runs < 5:
        parser.error("--entries ≥ 1000, --patients ≥ 100, --runs ≥ 5")
    print(asyncio.run(run(args.entries, args.patients, args.runs, args.database_url)))
