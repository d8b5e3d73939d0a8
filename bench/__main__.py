"""`uv run python -m bench fields [--patients N] [--runs R] [--database-url URL]`
(`uv run python -m bench scale --help` for the scale benchmark, bench/scale.py)

Field encryption and access-log costs, through the whole request path in process (ASGI, token
check, Casbin, tenant filter, decryption, access log):
- one field sealed / opened, in microseconds;
- listing 100 patients with no sealed field, with 2 contact fields, with 4 health fields, and
  the cost per decrypted field derived from them;
- SQL statements per request;
- what the access-log append adds to a list request.
A temporary SQLite database by default; `--database-url postgresql+asyncpg://…` (an owner URL
of an empty database) for PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from api.app import create_app
from api.context import AppState
from auth import access_log
from auth.access_log import AccessEvent, Action, Actor, RequestInfo
from auth.signing_keys import SigningKeys
from bench.harness import HEADER, Figures, StatementCounter, measure
from migrations.runner import upgrade
from process.serve import app_state
from process.settings import Settings
from tenancy.keyring import FieldCipher, LocalKeyProvider, generate_master_key_text, new_data_key
from tenancy.session import bind_tenant, make_engine, session_factory

NOTE = "既往史：高血压 5 年，服用氨氯地平；2 型糖尿病，二甲双胍控制。" * 3


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def field_costs(n: int = 20_000) -> list[str]:
    cipher = FieldCipher(uuid.uuid4(), {1: new_data_key()}, 1, new_data_key())
    row = uuid.uuid4()
    start = time.perf_counter()
    blobs = [cipher.encrypt(NOTE, table="patients", column="notes", row_id=row) for _ in range(n)]
    sealed = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for blob in blobs:
        cipher.decrypt(blob, table="patients", column="notes", row_id=row)
    opened = (time.perf_counter() - start) / n * 1e6
    return [
        f"seal one field ({len(NOTE)} chars): {sealed:.1f} µs",
        f"open one field ({len(NOTE)} chars): {opened:.1f} µs",
    ]


async def _world(owner: AppState, patients: int) -> tuple[str, str]:
    from auth.provisioning import create_tenant
    from domain.patients.service import PatientService
    from domain.tenants.models import Branch
    from tenancy.keystore import load_cipher

    slug = f"bench-{uuid.uuid4().hex[:8]}"
    async with owner.sessions() as session, session.begin():
        await create_tenant(
            session,
            owner.key_provider,
            slug=slug,
            name="Bench",
            admin_email=f"admin@{slug}.test",
            admin_password="bench password",
        )
        branch = Branch(code="b1", name="Bench branch")
        session.add(branch)
        await session.flush()
        service = PatientService(session, await load_cipher(session, owner.key_provider))
        for i in range(patients):
            await service.create(
                {
                    "name": f"患者{i}",
                    "phone": f"+86139{i:08d}",
                    "home_branch_id": branch.id,
                    "medical_history": NOTE,
                    "allergies": "青霉素过敏",
                    "diagnoses": "慢性牙周炎",
                    "notes": NOTE,
                }
            )
            if (i + 1) % 250 == 0:
                _say(f"loading: {i + 1}/{patients} patients")
    return slug, f"admin@{slug}.test"


async def run(patients: int, runs: int, url: str | None) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="pp-bench-"))
    url = url or f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    counter = StatementCounter().attach(engine)
    keys = LocalKeyProvider.from_text(generate_master_key_text())
    state = app_state(
        Settings(data_dir=tmp),
        session_factory(engine),
        keys,
        SigningKeys.from_jwks_json(SigningKeys.generate_jwks_json()),
    )
    slug, email = await _world(state, patients)
    lines = [f"database: {engine.dialect.name}; {patients} patients; {runs} runs each", ""]
    lines += field_costs()
    transport = httpx.ASGITransport(app=create_app(state.settings, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        signed = await client.post(
            "/graphql",
            json={
                "query": (
                    f'mutation {{ signIn(tenant: "{slug}", email: "{email}", '
                    'password: "bench password") { accessToken } }'
                )
            },
        )
        token = signed.json()["data"]["signIn"]["accessToken"]
        headers = {"Authorization": f"Bearer {token}"}

        def query(fields: str) -> Callable[[], Awaitable[None]]:
            body = {"query": f"{{ patients(first: 100) {{ edges {{ node {{ id {fields} }} }} }} }}"}

            async def call() -> None:
                r = await client.post("/graphql", json=body, headers=headers)
                assert "errors" not in r.json(), r.text

            return call

        cases = [
            ("list 100, no sealed field", ""),
            ("list 100, 2 contact fields", "name phone"),
            ("list 100, 4 health fields", "medicalHistory allergies diagnoses notes"),
        ]
        figures: list[Figures] = []
        for name, fields in cases:
            figures.append(await measure(name, query(fields), runs, counter, progress=_say))
    p50 = [statistics.median(f.samples_ms) for f in figures]
    per_field = (p50[2] - p50[0]) / (100 * 4) * 1000
    figures[2].extra["per decrypted field"] = f"{per_field:.1f} µs"
    figures[1].extra["per decrypted field"] = f"{(p50[1] - p50[0]) / 200 * 1000:.1f} µs"

    async def append_only() -> None:
        async with state.sessions() as session, session.begin():
            await bind_tenant(session, state_tenant)
            await access_log.append(
                session,
                Actor("user", "bench"),
                RequestInfo("r"),
                [AccessEvent(Action.LIST, [uuid.uuid4() for _ in range(100)], ["health"])],
            )

    from sqlalchemy import select

    from domain.tenants.models import Tenant

    async with state.sessions() as session:
        state_tenant = await session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    log = await measure("access-log append, 100 ids (own tx)", append_only, runs, counter)
    added = statistics.median(log.samples_ms)
    log.extra["share"] = f"≤ {added / p50[0] * 100:.0f}% of the id-only list's p50"
    await engine.dispose()
    return "\n".join([*lines, "", HEADER, *(f.row() for f in [*figures, log])])


def main() -> None:
    commands = ("fields", "scale", "import", "history", "profile", "instructions")
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(
            "usage: python -m bench {fields,scale,import,history,profile,instructions} [options]"
            "  (--help after any)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if sys.argv[1] == "scale":
        from bench.scale import main as scale

        scale(sys.argv[2:])
        return
    if sys.argv[1] == "profile":
        from bench.profile import main as profile

        profile(sys.argv[2:])
        return
    if sys.argv[1] == "instructions":
        from bench.instructions import main as instructions

        instructions(sys.argv[2:])
        return
    if sys.argv[1] == "import":
        from bench.imports import main as import_bench

        import_bench(sys.argv[2:])
        return
    if sys.argv[1] == "history":
        from bench.history import main as history

        history(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        prog="python -m bench fields", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(sys.argv[2:])
    if args.patients < 100 or args.runs < 5:
        parser.error("--patients must be at least 100 and --runs at least 5")
    print(asyncio.run(run(args.patients, args.runs, args.database_url)))


if __name__ == "__main__":
    main()
