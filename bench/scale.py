"""`uv run python -m bench scale [--scale S] [--database-url OWNER_URL] [--requests N]`

Loads the synthetic chains (resumable, with rows/s), serves the app over real HTTP (uvicorn on
loopback, one worker, production settings: token check, Casbin, RLS on PostgreSQL, decryption,
access log all on), drives the operations signed in as real roles at concurrency 1 and 8, and
runs the floor for the same work (hand-written SQL, same driver, same decryption, in process).
Prints a Markdown table and writes JSON next to it (bench/results/).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from api.app import create_app
from api.context import AppState
from api.documents import sha256
from api.ids import to_global_id
from api.pagination import encode_cursor
from auth.access_log import AccessLogEntry
from auth.signing_keys import SigningKeys
from bench.dataset import PASSWORD, load, patient_id, plan
from bench.harness import StatementCounter, percentile
from domain.patients.models import Patient
from domain.patients.service import TABLE
from domain.tenants.models import Tenant
from migrations.runner import upgrade
from process.document_commands import push_texts
from process.serve import app_state
from process.settings import Settings
from tenancy.keyring import LocalKeyProvider, generate_master_key_text
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant, make_engine, session_factory

RESULTS = Path(__file__).parent / "results"
SIGN_IN = (
    "mutation($t: String!, $e: String!, $p: String!) { "
    "signIn(tenant: $t, email: $e, password: $p) { accessToken } }"
)
SEALED = {"name", "phone", "wechatId", "medicalHistory", "allergies", "diagnoses", "notes"}

OPERATIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    # name: (role, query, variables)
    "patient list: first 50 with tags, score, 3 contact fields": (
        "hq_admin",
        "query PatientList { patients(first: 50) { edges { node { id name phone wechatId "
        "leadScore lifecycleStage tags { label: name } } } } }",
        {},
    ),
    # The same page with the cursor in the middle of the pool: a row comparison on
    # (created_at, id) reads one index range, so it should cost what the first page costs.
    "patient list, deep page: 50 after the middle of the pool": (
        "hq_admin",
        "query PatientListDeep($a: String) { patients(first: 50, after: $a) { edges { node { "
        "id name phone wechatId leadScore lifecycleStage tags { label: name } } } } }",
        {"a": "<middle of the pool>"},
    ),
    "segment count": (
        "hq_admin",
        "query SegmentCount($f: SegmentFilterInput!) { previewSegment(filter: $f) { count } }",
        {"f": {"scoreMin": 60, "channels": ["xiaohongshu", "douyin"]}},
    ),
    "segment first page of 50": (
        "hq_admin",
        "query SegmentPage($f: SegmentFilterInput!) { previewSegment(filter: $f) { "
        "members(first: 50) { edges { node { id name leadScore } } } } }",
        {"f": {"scoreMin": 60, "channels": ["xiaohongshu", "douyin"]}},
    ),
    "chain dashboard (pool metrics, a year)": (
        "hq_admin",
        "query Dashboard { poolMetrics { total byTier { key count } byStage { key count } "
        "byBranch { key count } newByChannel { key period count } "
        "scoreDistribution { key count } } }",
        {},
    ),
    "referral subtree of the big tree, figures per node": (
        "hq_admin",
        "query ReferralTree($p: ID!) { referralTree(patientId: $p, depth: 50, maxNodes: 10000) "
        "{ truncated nodes { index parentIndex depth subtreeSize convertedCount convertedValue "
        "} } }",
        {"p": "<tree root>"},
    ),
    "referral subtree of the big tree, as columns": (
        "hq_admin",
        "query ReferralChart($p: ID!) { referralTree(patientId: $p, depth: 50, maxNodes: 10000) "
        "{ truncated columns { parentIndex depth subtreeSize convertedCount convertedValue } } }",
        {"p": "<tree root>"},
    ),
    "chain metrics for a year, by branch": (
        "hq_admin",
        "query ChainMetrics($from: DateTime!, $to: DateTime!) { metrics(from: $from, to: $to) "
        "{ total { leads leadToVisitRate visitToDealRate returnVisitRate repurchaseRate "
        "referralRate revenue referredRevenue followUpCompletionRate } "
        "byBranch { branch { name } figures { leads returnVisitRate repurchaseRate revenue } } "
        "} }",
        {"from": "<a year ago>", "to": "<now>"},
    ),
    "hostile: query too deep (refused)": (
        "hq_admin",
        "query Deep { me { tenant { slug } } "
        + "patients { edges { node { " * 6
        + "id"
        + " } } }" * 6
        + " }",
        {},
    ),
}


@dataclass
class Row:
    operation: str
    concurrency: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    req_per_s: float
    server_cpu_ms: float
    sql_per_request: float
    decrypted_per_request: float
    log_entries_per_request: float
    floor_p50_ms: float | None
    ratio: float | None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """CPU time of the server: the process and, with several workers, its worker processes
    (live children are not in the parent's own counters until they are waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(_cpu_seconds(int(child)) for child in children)


def _count_sealed(value: Any) -> int:
    if isinstance(value, dict):
        return sum((k in SEALED and v is not None) + _count_sealed(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_count_sealed(v) for v in value)
    return 0


async def _app_url(owner_url: str) -> str:
    """On PostgreSQL, a login role inside the deployment's group role (RLS applies)."""
    if not owner_url.startswith("postgresql"):
        return owner_url
    engine = create_async_engine(owner_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        exists = await conn.exec_driver_sql("SELECT 1 FROM pg_roles WHERE rolname='pp_bench_login'")
        if exists.first() is None:
            await conn.exec_driver_sql("CREATE ROLE pp_bench_login LOGIN NOSUPERUSER NOBYPASSRLS")
    await engine.dispose()
    await asyncio.to_thread(lambda: upgrade(owner_url, app_login="pp_bench_login"))
    return (
        make_url(owner_url)
        .set(username="pp_bench_login", password=None)
        .render_as_string(hide_password=False)
    )


# Documents the registry holds (pushed before the run): sent by hash, as production clients
# send them, so that they run by their compiled plans (unless `--plans off`).
TRUSTED: set[str] = set()


def _body(query: str, variables: dict[str, Any]) -> dict[str, Any]:
    if query in TRUSTED:
        persisted = {"version": 1, "sha256Hash": sha256(query)}
        return {"extensions": {"persistedQuery": persisted}, "variables": variables}
    return {"query": query, "variables": variables}


async def _drive(
    client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any], n: int, c: int
) -> tuple[list[float], float, list[dict[str, Any]]]:
    samples: list[float] = []
    bodies: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    queue = list(range(n))
    body = _body(query, variables)

    async def worker() -> None:
        while queue:
            queue.pop()
            start = time.perf_counter()
            r = await client.post("/graphql", json=body, headers=headers)
            samples.append((time.perf_counter() - start) * 1000)
            bodies.append(r.json())

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    return samples, n / (time.perf_counter() - began), bodies


def _sql_time(value: datetime, pg: bool) -> Any:
    # SQLite keeps UTC times as text (tenancy.orm.UtcDateTime); compare like with like.
    return value if pg else value.replace(tzinfo=None).isoformat(sep=" ")


# The referral tree by hand, for HQ (every node visible): walk down to depth 50, each node's
# stored figures.
FLOOR_TREE = """
WITH RECURSIVE walk(id, parent, depth) AS (
  SELECT id, CAST(NULL AS uuid), 0 FROM patients WHERE tenant_id = :t AND id = :root
  UNION ALL SELECT r.referred_id, r.referrer_id, w.depth + 1 FROM referrals r
    JOIN walk w ON r.referrer_id = w.id WHERE r.tenant_id = :t AND w.depth < 50
)
SELECT w.id, w.parent, w.depth, coalesce(f.descendants, 0), coalesce(f.converted, 0),
  coalesce(f.converted_fen, 0)
FROM walk w LEFT JOIN referral_figures f ON f.tenant_id = :t AND f.patient_id = w.id
ORDER BY w.depth, w.id LIMIT 10001
"""

# The year's conversion figures by hand, per home branch, in one pass over visits and orders
# as the API makes it (domain.care.metrics), plus the follow-ups; columns in the order of
# domain.care.metrics.Figures (tests/bench compares the two).
FLOOR_METRICS = [
    "SELECT p.home_branch_id, count(CASE WHEN p.created_at >= :since AND p.created_at < :until "
    "THEN 1 END), count(CASE WHEN p.created_at >= :since AND p.created_at < :until "
    "AND v.patient_id IS NOT NULL THEN 1 END), count(v.first_at), "
    "count(CASE WHEN o.last_paid_at >= v.first_at THEN 1 END), sum(v.came), sum(v.returned), "
    "count(CASE WHEN o.orders > 0 THEN 1 END), sum(o.rep), count(CASE WHEN p.created_at >= "
    ":since AND p.created_at < :until AND r.referred_id IS NOT NULL THEN 1 END), sum(o.fen), "
    "sum(CASE WHEN r.referred_id IS NOT NULL THEN o.fen END) "
    "FROM patients p LEFT JOIN (SELECT patient_id, "
    "min(CASE WHEN is_first AND arrived_at >= :since AND arrived_at < :until "
    "THEN arrived_at END) AS first_at, "
    "max(CASE WHEN arrived_at >= :since AND arrived_at < :until THEN 1 ELSE 0 END) AS came, "
    "max(CASE WHEN NOT is_first AND arrived_at >= :since AND arrived_at < :until THEN 1 "
    "ELSE 0 END) AS returned FROM visits WHERE tenant_id = :t AND status = 'arrived' "
    "GROUP BY patient_id) v ON v.patient_id = p.id "
    "LEFT JOIN (SELECT patient_id, max(paid_at) AS last_paid_at, "
    "count(CASE WHEN paid_at >= :since AND paid_at < :until THEN 1 END) AS orders, "
    "max(CASE WHEN NOT is_first AND paid_at >= :since AND paid_at < :until THEN 1 ELSE 0 END)"
    " AS rep, sum(CASE WHEN paid_at >= :since AND paid_at < :until "
    "THEN total_fen - refunded_fen END) AS fen FROM orders WHERE tenant_id = :t "
    "AND status IN ('paid', 'refunded') GROUP BY patient_id) o ON o.patient_id = p.id "
    "LEFT JOIN referrals r ON r.tenant_id = p.tenant_id AND r.referred_id = p.id "
    "WHERE p.tenant_id = :t AND p.merged_into_id IS NULL AND ((p.created_at >= :since "
    "AND p.created_at < :until) OR v.came = 1 OR o.orders > 0) GROUP BY p.home_branch_id",
    "SELECT p.home_branch_id, count(*), count(CASE WHEN f.status = 'done' THEN 1 END) "
    "FROM follow_ups f JOIN patients p ON p.tenant_id = f.tenant_id AND p.id = f.patient_id "
    "WHERE f.tenant_id = :t AND p.merged_into_id IS NULL AND f.status <> 'cancelled' "
    "AND f.due_at >= :since AND f.due_at < :until GROUP BY p.home_branch_id",
]


async def _middle(state: AppState, tenant_id: uuid.UUID) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) of the patient halfway down the largest tenant's list."""
    async with state.sessions() as s, s.begin():
        await bind_tenant(s, tenant_id)
        total = await s.scalar(select(func.count()).select_from(Patient))
        row = (
            await s.execute(
                select(Patient.created_at, Patient.id)
                .order_by(Patient.created_at.desc(), Patient.id.desc())
                .offset((total or 0) // 2)
                .limit(1)
            )
        ).one()
    return row[0], row[1]


def _bind(
    variables: dict[str, Any], tenant_id: uuid.UUID, middle: tuple[datetime, uuid.UUID]
) -> dict[str, Any]:
    """Fill the placeholders of OPERATIONS' variables for this dataset and this moment."""
    now = datetime.now(UTC)
    known = {
        "<middle of the pool>": encode_cursor([middle[0].isoformat(), str(middle[1])]),
        "<tree root>": to_global_id("Patient", patient_id(tenant_id, 0)),
        "<a year ago>": (now - timedelta(days=365)).isoformat(),
        "<now>": now.isoformat(),
    }
    return {k: known.get(v, v) if isinstance(v, str) else v for k, v in variables.items()}


async def _floor(
    state: AppState,
    tenant_id: Any,
    operation: str,
    runs: int,
    middle: tuple[datetime, uuid.UUID],
) -> float | None:
    """The same work by hand: one or two SQL statements, same driver, same decryption."""
    engine = state.sessions.kw["bind"]
    async with state.sessions() as s, s.begin():
        await bind_tenant(s, tenant_id)
        cipher = await load_cipher(s, state.key_provider)
    pg = engine.dialect.name == "postgresql"
    tenant = str(tenant_id) if pg else tenant_id.hex
    tree_root = patient_id(tenant_id, 0)
    set_tenant = "SELECT set_config('app.tenant_id', :t, true)"
    if operation.startswith("patient list"):
        deep = "AND (created_at, id) < (:at, :id) " if "deep page" in operation else ""
        sql = [
            "SELECT id, name_ct, phone_ct, wechat_id_ct, lead_score, lifecycle_stage "
            f"FROM patients WHERE tenant_id = :t AND erased_at IS NULL {deep}"
            "ORDER BY created_at DESC, id DESC LIMIT 50",
            "SELECT pt.patient_id, tags.name FROM patient_tags pt JOIN tags ON tags.id = pt.tag_id"
            " AND tags.tenant_id = pt.tenant_id WHERE pt.tenant_id = :t AND pt.patient_id IN :ids",
        ]
        fields = ("name", "phone", "wechat_id")
    elif operation == "segment count":
        sql = [
            "SELECT count(*) FROM patients WHERE tenant_id = :t AND lead_score >= 60 AND "
            "source_channel IN ('xiaohongshu', 'douyin') AND erased_at IS NULL"
        ]
        fields = ()
    elif operation.startswith("segment first page"):
        sql = [
            "SELECT id, name_ct, lead_score FROM patients WHERE tenant_id = :t AND "
            "lead_score >= 60 AND source_channel IN ('xiaohongshu', 'douyin') AND erased_at IS"
            " NULL ORDER BY created_at DESC, id DESC LIMIT 50"
        ]
        fields = ("name",)
    elif operation.startswith("chain dashboard"):
        sql = [
            f"SELECT {col}, count(*) FROM patients WHERE tenant_id = :t GROUP BY {col}"
            for col in (
                "pool_tier",
                "lifecycle_stage",
                "home_branch_id",
                "source_channel",
                "lead_score / 20",
            )
        ]
        fields = ()
    elif operation.startswith("referral subtree"):
        sql = [FLOOR_TREE]
        fields = ()
    elif operation.startswith("chain metrics"):
        sql = FLOOR_METRICS
        fields = ()
        # a serial plan, as the API asks for (see domain.care.metrics)
        set_tenant += ", set_config('max_parallel_workers_per_gather', '0', true)"
    else:
        return None
    now = datetime.now(UTC)
    params: dict[str, Any] = {
        "t": tenant,
        "root": str(tree_root) if pg else tree_root.hex,
        "since": _sql_time(now - timedelta(days=365), pg),
        "until": _sql_time(now, pg),
        "at": _sql_time(middle[0], pg),
        "id": str(middle[1]) if pg else middle[1].hex,
    }
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        async with engine.connect() as conn:
            if pg:
                await conn.execute(text(set_tenant), {"t": tenant})
            rows = (await conn.execute(text(sql[0]), params)).all()
            for row in rows if fields else []:
                for i, name in enumerate(fields, start=1):
                    if row[i] is not None:
                        rid = row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0]))
                        cipher.decrypt(row[i], table=TABLE, column=name, row_id=rid)
            if len(sql) > 1 and rows and "IN :ids" in sql[1]:
                stmt = text(sql[1]).bindparams(bindparam("ids", expanding=True))
                await conn.execute(stmt, {"t": tenant, "ids": [r[0] for r in rows]})
            else:
                for extra in sql[1:]:
                    await conn.execute(text(extra), params)
            await conn.commit()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Dataset:
    """The loaded dataset, its documents trusted, and what a run needs to drive it."""

    work: Path
    owner_url: str
    app_url: str
    keyfile: Path
    jwks: Path
    keys: LocalKeyProvider
    owner: AppState
    plans: list[Any]
    largest: str
    tenant_id: uuid.UUID
    middle: tuple[datetime, uuid.UUID]


async def prepare(scale: float, owner_url: str | None) -> Dataset:
    """Migrate, load (or resume loading) the dataset, push the operations to the registry."""
    work = RESULTS / "work"
    work.mkdir(parents=True, exist_ok=True)
    owner_url = owner_url or f"sqlite+aiosqlite:///{work / 'bench-v2.db'}"
    keyfile, jwks = work / "master.key", work / "signing-keys.json"
    if not keyfile.exists():
        keyfile.write_text(generate_master_key_text())
        jwks.write_text(SigningKeys.generate_jwks_json())
    await asyncio.to_thread(upgrade, owner_url)
    keys = LocalKeyProvider.from_text(keyfile.read_text())
    owner = app_state(
        Settings(data_dir=work),
        session_factory(make_engine(owner_url)),
        keys,
        SigningKeys.from_jwks_json(jwks.read_text()),
    )
    plans = plan(scale)
    await load(owner.sessions, keys, plans, say)
    async with owner.sessions() as s, s.begin():
        texts = [query for _role, query, _v in OPERATIONS.values()]
        TRUSTED.update(await push_texts(s, "bench", texts))
    largest = plans[0].slug
    async with owner.sessions() as s:
        tenant_id = await s.scalar(select(Tenant.id).where(Tenant.slug == largest))
    middle = await _middle(owner, tenant_id)
    app_url = await _app_url(owner_url)
    return Dataset(
        work, owner_url, app_url, keyfile, jwks, keys, owner, plans, largest, tenant_id, middle
    )


async def run(
    scale: float,
    owner_url: str | None,
    requests: int,
    only: str = "",
    workers: int = 1,
    plans_on: bool = True,
) -> str:
    data = await prepare(scale, owner_url)
    owner = data.owner

    env = {
        **os.environ,
        "PATIENTPOOL_ENV": "production",
        "PATIENTPOOL_DATABASE_URL": data.app_url,
        "PATIENTPOOL_MASTER_KEY_FILE": str(data.keyfile),
        "PATIENTPOOL_SIGNING_KEYS_FILE": str(data.jwks),
        "PATIENTPOOL_DATA_DIR": str(data.work),
        # The bench drives its own documents, not the trusted registry's: production's
        # default (`only`) would refuse them all, the sign-in first.
        "PATIENTPOOL_PERSISTED_QUERIES": "allow",
        "PATIENTPOOL_COMPILED_PLANS": "true" if plans_on else "false",
    }
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "process.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[Row] = []
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for _ in range(200):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            tokens: dict[str, str] = {}
            for role, _q, _v in OPERATIONS.values():
                if role not in tokens:
                    signed = await client.post(
                        "/graphql",
                        json={
                            "query": SIGN_IN,
                            "variables": {
                                "t": data.largest,
                                "e": f"{role}@{data.largest}.bench",
                                "p": PASSWORD,
                            },
                        },
                    )
                    tokens[role] = signed.json()["data"]["signIn"]["accessToken"]
            app_engine = make_engine(data.app_url)
            counter = StatementCounter().attach(app_engine)
            in_process = app_state(
                Settings(data_dir=data.work),
                session_factory(app_engine),
                data.keys,
                owner.signing_keys,
            )
            transport = httpx.ASGITransport(app=create_app(in_process.settings, in_process))
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as local:
                for name, (role, query, template) in OPERATIONS.items():
                    if only not in name:
                        continue
                    say(f"driving: {name}")
                    variables = _bind(template, data.tenant_id, data.middle)
                    _s, _r, warm = await _drive(client, tokens[role], query, variables, 5, 1)
                    errors = warm[0].get("errors") if warm else None
                    if errors and not name.startswith("hostile"):
                        raise SystemExit(f"bench: {name} answered an error: {errors[0]}")
                    before = counter.count
                    await _drive(local, tokens[role], query, variables, 5, 1)
                    sql_per = (counter.count - before) / 5
                    floor = await _floor(
                        owner if "sqlite" in data.app_url else in_process,
                        data.tenant_id,
                        name,
                        30,
                        data.middle,
                    )
                    for c in (1, 8):
                        async with owner.sessions() as s, s.begin():
                            await bind_tenant(s, data.tenant_id)
                            logged = len((await s.scalars(select(AccessLogEntry.seq))).all())
                        cpu = _cpu_seconds(server.pid)
                        samples, rps, bodies = await _drive(
                            client, tokens[role], query, variables, requests, c
                        )
                        cpu = (_cpu_seconds(server.pid) - cpu) / requests * 1000
                        async with owner.sessions() as s, s.begin():
                            await bind_tenant(s, data.tenant_id)
                            logged = (
                                len((await s.scalars(select(AccessLogEntry.seq))).all()) - logged
                            )
                        p50 = statistics.median(samples)
                        rows.append(
                            Row(
                                name,
                                c,
                                p50,
                                percentile(samples, 95),
                                percentile(samples, 99),
                                rps,
                                cpu,
                                sql_per,
                                sum(map(_count_sealed, bodies)) / len(bodies),
                                logged / requests,
                                floor,
                                (p50 / floor) if floor else None,
                            )
                        )
            await app_engine.dispose()
    finally:
        server.terminate()
        server.wait(timeout=30)
        await owner.sessions.kw["bind"].dispose()
    return _report(rows, scale, data.owner_url, data.plans, workers, plans_on)


def _report(
    rows: list[Row], scale: float, url: str, plans: list[Any], workers: int, plans_on: bool
) -> str:
    db = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    head = (
        f"{db}; largest tenant {plans[0].patients:,} patients, {len(plans)} tenants; "
        f"{os.cpu_count()} cores; uvicorn, {workers} worker{'s' if workers > 1 else ''}, "
        "production settings; "
        f"trusted documents by hash, compiled plans {'on' if plans_on else 'off'}"
    )
    lines = [
        head,
        "",
        "| operation | c | p50 ms | p95 ms | p99 ms | req/s | server CPU ms/req | SQL/req "
        "| decrypted/req | log entries/req | floor p50 ms | API ÷ floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor = f"{r.floor_p50_ms:.2f}" if r.floor_p50_ms else "–"
        ratio = f"{r.ratio:.1f}×" if r.ratio else "–"
        lines.append(
            f"| {r.operation} | {r.concurrency} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.req_per_s:.0f} | {r.server_cpu_ms:.1f} | "
            f"{r.sql_per_request:.0f} | {r.decrypted_per_request:.0f} | "
            f"{r.log_entries_per_request:.1f} | {floor} | {ratio} |"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale-{db.lower()}-{stamp}.json").write_text(
        json.dumps(
            {
                "database": db,
                "scale": scale,
                "workers": workers,
                "compiled_plans": plans_on,
                "rows": [asdict(r) for r in rows],
            },
            indent=2,
        )
    )
    table = "\n".join(lines)
    (RESULTS / f"scale-{db.lower()}-{stamp}.md").write_text(table + "\n")
    return table


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench scale")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="1.0: 100,000 patients in the largest tenant, 50,000 in 4 others",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="owner URL of a PostgreSQL database (default: SQLite file)",
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--only", default="", help="drive only the operations whose name contains this text"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (`serve --workers N`)"
    )
    parser.add_argument(
        "--plans",
        choices=("on", "off"),
        default="on",
        help="trusted documents by their compiled plans (on) or graphql-core's stock path",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    print(
        asyncio.run(
            run(
                args.scale,
                args.database_url,
                args.requests,
                args.only,
                args.workers,
                args.plans == "on",
            )
        )
    )
