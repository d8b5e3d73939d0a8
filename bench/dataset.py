"""The synthetic multi-tenant dataset for the scale benchmark, loaded with bulk inserts.

Each patient comes with tags, events, visits (初诊 then 复诊), paid orders and, for some, a
referrer: patients 1 … TREE-1 form one referral tree under patient 0 (three referred each, so
10,000 nodes about eight levels deep), and a fifth of the rest were referred by a recent
patient. Ids are derived from (tenant, index), and a patient's rows go in
with it in one transaction, so an interrupted load resumes: it counts the patients there and
continues from that index. Progress lines report rows/s.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.policy import assign_role
from auth.provisioning import add_staff, create_tenant
from domain.care.models import Order, OrderLine, OrderStatus, Visit, VisitStatus
from domain.patients.models import SEALED_FIELDS, LifecycleStage, Patient, PoolTier
from domain.patients.service import TABLE
from domain.pool.models import EventType, InteractionEvent, PatientTag, Tag, TagGroup
from domain.referrals import figures
from domain.referrals.models import Referral
from domain.referrals.models import ReferralFigures as Figures
from domain.tenants.models import Branch, Tenant
from tenancy.keyring import KeyProvider
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant, stamp_rows

PASSWORD = "bench password 1"
CHUNK = 2000
CHANNELS = ["xiaohongshu", "douyin", "wechat_official", "referral", "offline_event"]
TAGS = ["正畸", "种植", "洁牙", "未转化", "已转化", "VIP"]
ROLES = ["hq_admin", "branch_manager", "doctor", "marketing", "auditor"]
SERVICES = [("洁牙", 19_900), ("种植牙", 880_000), ("正畸", 2_580_000), ("补牙", 45_000)]
# Insert order: a row's references go in before it.
TABLES = [Patient, PatientTag, InteractionEvent, Referral, Visit, Order, OrderLine]


# Patients 0 … TREE-1 of each tenant form one referral tree (fixed, so a resumed load that
# asks for more patients grows the same tree).
TREE = 10_000


@dataclass(frozen=True)
class TenantPlan:
    slug: str
    patients: int


def plan(scale: float, tenants: int = 5) -> list[TenantPlan]:
    """Default: the largest tenant 100,000 patients, the others 50,000 each (× scale)."""
    sizes = [100_000] + [50_000] * (tenants - 1)
    return [TenantPlan(f"bench-{i}", max(100, int(n * scale))) for i, n in enumerate(sizes)]


def patient_id(tenant_id: uuid.UUID, index: int) -> uuid.UUID:
    return uuid.uuid5(tenant_id, f"patient-{index}")


async def _ensure_tenant(
    sessions: async_sessionmaker[AsyncSession], keys: KeyProvider, slug: str
) -> uuid.UUID:
    async with sessions() as s, s.begin():
        found = await s.scalar(select(Tenant.id).where(Tenant.slug == slug))
        if found is not None:
            return found
        created = await create_tenant(
            s,
            keys,
            slug=slug,
            name=f"Bench {slug}",
            admin_email=f"hq_admin@{slug}.bench",
            admin_password=PASSWORD,
        )
        branches = [Branch(code=f"b{i}", name=f"门店 {i}", city="上海") for i in range(10)]
        group = TagGroup(name="bench")
        s.add_all([*branches, group])
        await s.flush()
        s.add_all(Tag(group_id=group.id, name=n) for n in TAGS)
        for role in ROLES[1:]:
            user = await add_staff(
                s,
                email=f"{role}@{slug}.bench",
                name=role,
                password=PASSWORD,
                branches=[branches[0]],
            )
            await assign_role(s, f"user:{user.id}", role)
        return created.tenant.id


async def load(
    sessions: async_sessionmaker[AsyncSession],
    keys: KeyProvider,
    plans: list[TenantPlan],
    progress: Callable[[str], None],
) -> None:
    for p in plans:
        tenant_id = await _ensure_tenant(sessions, keys, p.slug)
        async with sessions() as s:
            await bind_tenant(s, tenant_id)
            async with s.begin():
                have = int(await s.scalar(select(func.count()).select_from(Patient)) or 0)
                branches = (await s.scalars(select(Branch.id).order_by(Branch.code))).all()
                tags = (await s.scalars(select(Tag.id).order_by(Tag.name))).all()
                cipher = await load_cipher(s, keys)
            started, rows_written = time.perf_counter(), 0
            for start in range(have, p.patients, CHUNK):
                stop = min(start + CHUNK, p.patients)
                rows = _rows(cipher, tenant_id, start, stop, branches, tags)
                async with s.begin():
                    for model in TABLES:
                        if rows[model.__tablename__]:
                            batch = stamp_rows(s, rows[model.__tablename__])
                            await s.execute(model.__table__.insert(), batch)
                rows_written += sum(map(len, rows.values()))
                rate = rows_written / (time.perf_counter() - started)
                progress(f"{p.slug}: {stop}/{p.patients} patients ({rate:,.0f} rows/s)")
            async with s.begin():
                # Links were written directly: compute the stored referral figures once.
                if rows_written or not await s.scalar(select(func.count()).select_from(Figures)):
                    referrers = await figures.rebuild(s)
                    progress(f"{p.slug}: referral figures of {referrers:,} referrers")
    # Fresh statistics and visibility maps, as autovacuum would give a live database after a
    # while: without them the planner guesses a bulk-loaded table is tiny and scans it whole,
    # and index-only scans still visit every row.
    engine = sessions.kw["bind"]
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        pg = engine.dialect.name == "postgresql"
        await conn.exec_driver_sql("VACUUM ANALYZE" if pg else "ANALYZE")
    progress("statistics refreshed (VACUUM ANALYZE)")


def _rows(
    cipher: object,
    tenant_id: uuid.UUID,
    start: int,
    stop: int,
    branches: list[uuid.UUID],
    tags: list[uuid.UUID],
) -> dict[str, list[dict[str, object]]]:
    rng = random.Random(f"{tenant_id}-{start}")
    now = datetime.now(UTC)
    out: dict[str, list[dict[str, object]]] = {m.__tablename__: [] for m in TABLES}
    stages = [s.value for s in LifecycleStage]
    tree = TREE
    for i in range(start, stop):
        pid = patient_id(tenant_id, i)
        values = {
            "name": f"患者{i}",
            "phone": f"+861{rng.choice('3456789')}{i:09d}",
            "wechat_id": f"wxid_{tenant_id.hex[:6]}{i:08d}",
            "medical_history": "高血压 5 年",
            "allergies": rng.choice(["无", "青霉素过敏"]),
            "diagnoses": "慢性牙周炎",
        }
        created = now - timedelta(days=rng.randrange(365), seconds=i)
        branch = branches[i % len(branches)]
        row: dict[str, object] = {
            "id": pid,
            "home_branch_id": branch,
            "referral_code": f"R{i:09d}",
            "gender": rng.choice(["female", "male"]),
            "birth_year": rng.randrange(1950, 2012),
            "source_channel": rng.choice(CHANNELS),
            "pool_tier": rng.choice([t.value for t in PoolTier]),
            "lifecycle_stage": rng.choice(stages),
            "trust_level": "weak",
            "lead_score": rng.randrange(0, 150),
            "last_interaction_at": now - timedelta(days=rng.randrange(60)),
            "created_at": created,
            "updated_at": now,
            "consent_at": now if rng.random() < 0.8 else None,
        }
        for name in SEALED_FIELDS:
            value = values.get(name)
            row[f"{name}_ct"] = (
                None
                if value is None
                else cipher.encrypt(value, table=TABLE, column=name, row_id=pid)  # type: ignore[attr-defined]
            )
        row["phone_bidx"] = cipher.blind_index(values["phone"], kind="phone")  # type: ignore[attr-defined]
        out["patients"].append(row)
        for tag in rng.sample(list(tags), k=rng.randrange(0, 3)):
            out["patient_tags"].append(
                {"patient_id": pid, "tag_id": tag, "source": "manual", "added_at": now}
            )
        for n in range(rng.randrange(0, 3)):
            out["interaction_events"].append(
                {
                    "id": uuid.uuid5(pid, f"event-{n}"),
                    "client_event_id": f"{pid}-{n}",
                    "patient_id": pid,
                    "type": rng.choice([e.value for e in EventType]),
                    "occurred_at": now - timedelta(days=rng.randrange(60)),
                    "received_at": now,
                    "source": "bench",
                }
            )
        referrer = None
        if 0 < i < tree:
            referrer = (i - 1) // 3
        elif i > tree and rng.random() < 0.2:
            referrer = rng.randrange(max(tree, i - 5000), i)
        if referrer is not None:
            out["referrals"].append(
                {
                    "referred_id": pid,
                    "referrer_id": patient_id(tenant_id, referrer),
                    "channel": "old-brings-new",
                    "created_at": created,
                    "eligible": True,
                    "ineligible_reason": "",
                }
            )
        row["order_total_fen"] = _care(rng, out, pid, branch, created, now)
    return out


def _care(
    rng: random.Random,
    out: dict[str, list[dict[str, object]]],
    pid: uuid.UUID,
    branch: uuid.UUID,
    created: datetime,
    now: datetime,
) -> int:
    """Half the patients visit (a first visit, then return visits); most visitors pay.
    Returns the patient's paid total in fen."""
    if rng.random() < 0.5:
        return 0
    days_left = max(1, (now - created).days)
    count = rng.randint(1, 3)
    visits = sorted(created + timedelta(days=rng.randrange(days_left)) for _ in range(count))
    for n, at in enumerate(visits):
        out["visits"].append(
            {
                "id": uuid.uuid5(pid, f"visit-{n}"),
                "patient_id": pid,
                "branch_id": branch,
                "scheduled_at": at,
                "status": VisitStatus.ARRIVED.value,
                "arrived_at": at,
                "is_first": n == 0,
                "created_at": at - timedelta(days=3),
                "updated_at": at,
            }
        )
    total = 0
    for n, at in enumerate(visits if rng.random() < 0.7 else []):
        service, price = rng.choice(SERVICES)
        oid = uuid.uuid5(pid, f"order-{n}")
        out["orders"].append(
            {
                "id": oid,
                "patient_id": pid,
                "branch_id": branch,
                "status": OrderStatus.PAID.value,
                "total_fen": price,
                "refunded_fen": 0,
                "paid_at": at + timedelta(hours=1),
                "is_first": n == 0,
                "created_by": "bench",
                "version": 1,
                "created_at": at,
            }
        )
        out["order_lines"].append(
            {
                "order_id": oid,
                "line_no": 1,
                "service": service,
                "quantity": 1,
                "unit_price_fen": price,
            }
        )
        total += price
    return total
