"""Helpers of the import tests: a chain made by `tenant create` with a second branch, a tag
and existing patients made through the API, and scans for plaintext."""

from __future__ import annotations

import asyncio
import re
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from api.context import AppState
from auth.access_log import AccessLogEntry
from bench.import_rows import phone_of
from domain.imports.service import ImportOptions, ImportService
from domain.patients.models import Patient
from domain.pool.models import Job
from domain.tenants.models import Tenant
from migrations.registry import target_metadata
from tenancy.keyring import FieldCipher
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant, make_engine, session_factory
from tests.chain.conftest import Operator, new_chain, sign_in_pair
from tests.conftest import Database
from tests.files import read_elsewhere
from tests.support import SEEDED, gql, ok

CREATE_BRANCH = """mutation($i: CreateBranchInput!) { createBranch(input: $i) { id code } }"""
CREATE_GROUP = """mutation($n: String!) { createTagGroup(name: $n) { id } }"""
CREATE_TAG = """mutation($g: ID!, $n: String!) { createTag(groupId: $g, name: $n) { id } }"""
CREATE_PATIENT = """mutation($i: CreatePatientInput!) { createPatient(input: $i) {
  patient { id } } }"""
JOB = """query($id: ID!) { job(id: $id) { id kind status total done
  importReport { created updated unchanged rejected rejections { row reason } } } }"""


@dataclass
class Chain:
    slug: str
    hq: str
    branches: dict[str, str]
    existing: dict[str, str]  # phone → patient global id


async def chain_for_import(
    api: httpx.AsyncClient, operator: Operator, slug: str, existing: int = 3
) -> Chain:
    password = await new_chain(
        operator, slug, "--branch-name", "上海徐汇店", "--branch-city", "上海"
    )
    hq = (await sign_in_pair(api, slug, f"admin@{slug}.test", password))["accessToken"]
    made = ok(
        await gql(
            api,
            CREATE_BRANCH,
            {"i": {"code": "hz1", "name": "杭州西湖店", "city": "杭州"}},
            token=hq,
        )
    )["createBranch"]
    group = ok(await gql(api, CREATE_GROUP, {"n": "客户等级"}, token=hq))["createTagGroup"]
    ok(await gql(api, CREATE_TAG, {"g": group["id"], "n": "VIP"}, token=hq))
    main = await branch_id(api, hq, "main")
    chain = Chain(slug, hq, {"main": main, "hz1": made["id"]}, {})
    for k in range(existing):
        phone = phone_of(f"{slug}-existing", k)
        name = f"测试患者{slug}-existing{k}"
        SEEDED.update({name, f"+86{phone}"})
        created = ok(
            await gql(
                api,
                CREATE_PATIENT,
                {"i": {"name": name, "phone": phone, "homeBranchId": main}},
                token=hq,
            )
        )
        chain.existing[phone] = created["createPatient"]["patient"]["id"]
    return chain


async def branch_id(api: httpx.AsyncClient, token: str, code: str) -> str:
    found = ok(await gql(api, "{ branches { edges { node { id code } } } }", token=token))
    return next(e["node"]["id"] for e in found["branches"]["edges"] if e["node"]["code"] == code)


async def wait_for_job(api: httpx.AsyncClient, token: str, job_id: str) -> dict:
    """The job once it has ended (it runs on this event loop: each pass lets it go on)."""
    for _ in range(2000):
        job = ok(await gql(api, JOB, {"id": job_id}, token=token))["job"]
        if job["status"] != "running":
            return job
        await asyncio.sleep(0.01)
    raise AssertionError("the import job did not end")


def marks(tag: str) -> list[re.Pattern[bytes]]:
    """Byte patterns any plaintext value of file `tag` holds (names in UTF-8 and GB18030, the
    marked health texts, and the phones as written and as stored)."""
    crc = f"{zlib.crc32(tag.encode()) % 1000:03d}".encode()
    literal = [
        f"测试患者{tag}".encode(),
        f"测试患者{tag}".encode("gb18030"),
        f"history-{tag}".encode(),
        f"diagnosis-{tag}".encode(),
        f"note-{tag}".encode(),
    ]
    return [re.compile(re.escape(b)) for b in literal] + [re.compile(rb"139" + crc + rb"\d{5}")]


async def table_bytes(db: Database) -> dict[str, bytes]:
    """Every row of every table, its values as bytes (bytea as stored, text as UTF-8), read
    as the owner (the superuser on PostgreSQL: no row-level security)."""
    engine = make_engine(db.owner_url)
    out: dict[str, bytes] = {}
    try:
        async with engine.connect() as conn:
            for table in target_metadata.sorted_tables:
                rows = await conn.execute(text(f"SELECT * FROM {table.name}"))
                parts: list[bytes] = []
                for row in rows:
                    for value in row:
                        if isinstance(value, bytes | bytearray | memoryview):
                            parts.append(bytes(value))
                        elif value is not None:
                            parts.append(str(value).encode())
                out[table.name] = b"\x00".join(parts)
    finally:
        await engine.dispose()
    return out


def files_under(*roots: Path) -> dict[str, bytes]:
    found = [path for root in roots for path in root.rglob("*") if path.is_file()]
    return {str(path): data for path, data in read_elsewhere(found).items()}


def sqlite_files(db: Database) -> list[Path]:
    if db.kind != "sqlite":
        return []
    path = Path(make_url(db.owner_url).database or "")
    return [p for p in path.parent.glob(path.name + "*") if p.is_file()]


# A uuid as text (dashed, or 32 hex digits as SQLite keeps them): now and then one holds the
# 11 digits of a phone pattern by chance (a tenant's id, in casbin_rules); no value is hidden
# in one, so they are blanked before the search.
_UUIDS = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    rb"|(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])"
)


def leaks(blobs: dict[str, bytes], tag: str) -> list[str]:
    patterns = marks(tag)
    scrubbed = {name: _UUIDS.sub(b"-", blob) for name, blob in blobs.items()}
    return [name for name, blob in scrubbed.items() for m in patterns if m.search(blob)]


async def logged_import_ids(db: Database, tenant_slug: str) -> tuple[set[str], set[str]]:
    """(patient ids the tenant's `import` access-log entries name, the tenant's patients)."""
    from domain.tenants.models import Tenant

    engine = make_engine(db.owner_url)
    try:
        async with session_factory(engine)() as session:
            async with session.begin():
                tenant_id = await session.scalar(
                    select(Tenant.id).where(Tenant.slug == tenant_slug)
                )
            assert tenant_id is not None
            await bind_tenant(session, tenant_id)
            async with session.begin():
                entries = await session.scalars(
                    select(AccessLogEntry.patient_ids).where(AccessLogEntry.action == "import")
                )
                import json

                logged = {pid for e in entries for pid in json.loads(e)}
                patients = {str(p) for p in await session.scalars(select(Patient.id))}
    finally:
        await engine.dispose()
    return logged, patients


async def bind_to_chain(session: AsyncSession, slug: str) -> uuid.UUID:
    """Bind a fresh session to the chain `slug`; the tenant's id."""
    async with session.begin():
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    assert tenant_id is not None
    await bind_tenant(session, tenant_id)
    return tenant_id


async def start_import(
    session: AsyncSession, state: AppState, slug: str, data: bytes
) -> tuple[uuid.UUID, Job, FieldCipher]:
    """Bind `session` to the chain `slug` and start an import job of `data` there, as the
    system (the command line's kind of actor: no staff member's care applies); (the tenant's
    id, the job, the chain's cipher)."""
    tenant_id = await bind_to_chain(session, slug)
    async with session.begin():
        cipher = await load_cipher(session, state.key_provider)
        job = await ImportService(session, cipher).start(data, ImportOptions(), "system:t")
    return tenant_id, job, cipher
