"""`uv run python -m bench import [--rows N] [--database-url URL]`

A generated spreadsheet of N patients (default 100,000, about one row in 25 rejected for each
reason in turn) imported through the import service and its job runner, as the app's login
role (RLS on) on PostgreSQL: the whole file as one job, in batches (`--batch`, default the
import's own). Prints the
seconds to start the job (read, check and seal the upload), to run it, and rows per second.
The database must be empty (its owner's URL); default: `pp_bench_import` on the local server,
made anew.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from auth.provisioning import create_tenant
from bench.import_rows import generate
from bench.scale import _app_url
from domain.imports.service import BATCH_ROWS, ImportOptions, ImportService
from domain.pool.models import Tag, TagGroup
from domain.tenants.models import Branch
from process.import_job import run_import_job
from tenancy.keyring import LocalKeyProvider, generate_master_key_text
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant, make_engine, session_factory

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/pp_bench_import"


async def _fresh_database(url: str) -> None:
    name = make_url(url).database
    admin = create_async_engine(
        make_url(url).set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    await admin.dispose()


async def run(rows: int, owner_url: str, fresh: bool, batch: int = BATCH_ROWS) -> str:
    if fresh:
        await _fresh_database(owner_url)
    app_url = await _app_url(owner_url)
    keys = LocalKeyProvider.from_text(generate_master_key_text())
    owner = make_engine(owner_url)
    async with session_factory(owner)() as session, session.begin():
        created = await create_tenant(
            session,
            keys,
            slug="bench-import",
            name="Bench",
            admin_email="hq@bench.test",
            admin_password="a long bench password",
        )
        tenant_id = created.tenant.id
        session.add_all([Branch(code="main", name="总店"), Branch(code="hz1", name="杭州店")])
        group = TagGroup(name="等级")
        session.add(group)
        await session.flush()
        session.add(Tag(group_id=group.id, name="VIP"))
    await owner.dispose()
    gen = generate(rows, "bench", branches=("main", "hz1"), tags=("VIP",))
    engine = make_engine(app_url)
    async with session_factory(engine)() as session:
        await bind_tenant(session, tenant_id)
        began = time.perf_counter()
        async with session.begin():
            cipher = await load_cipher(session, keys)
            job = await ImportService(session, cipher).start(gen.data, ImportOptions(), "bench")
        started = time.perf_counter()
        cpu = time.process_time()
        done = await run_import_job(session, job.id, "bench", cipher=cipher, batch=batch)
        ended = time.perf_counter()
        cpu = time.process_time() - cpu
    await engine.dispose()
    assert done is not None and done.status == "done" and done.done == rows
    total = ended - began
    return "\n".join(
        [
            f"rows: {rows} ({len(gen.data) / 1e6:.1f} MB; {gen.created} created, "
            f"{gen.rejected} rejected)",
            f"start (read, check, seal the upload): {started - began:.1f} s",
            f"job (batches of {batch}): {ended - started:.1f} s, of which {cpu:.1f} s CPU in this "
            "process (the rest: PostgreSQL)",
            f"total: {total:.1f} s, {rows / total:,.0f} rows/s",
        ]
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench import", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="an empty database (owner URL)")
    parser.add_argument("--batch", type=int, default=BATCH_ROWS, help="rows per transaction")
    args = parser.parse_args(argv)
    url = args.database_url or DEFAULT_URL
    print(asyncio.run(run(args.rows, url, args.database_url is None, args.batch)))
