"""Patient exports (issue 24): `exportPatients` starts a job; `GET /exports/<job id>` gives the
file to the one staff member who asked, until it expires. The file (CSV and XLSX, read back
with openpyxl) holds exactly what the same caller reads through `patients`: HQ every field,
a branch manager their branches only, a role without health access no health column and the
contact fields masked. The access log holds the exported ids; no plaintext lands on disk.
Served API, on tenants made as a customer makes them; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import select, update

from api.context import AppState
from api.ids import parse_global_id
from auth.access_log import AccessLogEntry
from domain.exports.models import ExportFormat, PatientExport
from domain.exports.repository import ExportRepository
from process.export_job import run_export as run_export_job
from tenancy.session import bind_tenant
from tests.conftest import Database
from tests.files import read_elsewhere
from tests.support import SEEDED, World, build_world, codes, gql, ok, sign_in

EXPORT = """mutation($f: ExportFormat!, $flt: PatientFilter) {
  exportPatients(format: $f, filter: $flt) { job { id kind status total } downloadPath
  expiresAt } }"""
JOB = "query($id: ID!) { job(id: $id) { status done total } }"
STATE_PURPOSE = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: QUALITY_REVIEW,
  note: "export review") { id } }"""
MORE = {
    "nationalId": "110105199001010011",
    "wechatId": "wx-export-1",
    "wecomExternalId": "wm-export-1",
    "medicalHistory": 'history-export 糖尿病, "quoted"\nsecond line',
    "notes": "=1+1 note-export",
}
SEEDED.update(v for v in MORE.values())
# the global id of the patient made with MORE, per world
EXPORTED_WITH_MORE: dict[str, str] = {}
SEEDED.update({"测试患者导出", "+8613955500001"})


@pytest.fixture
async def world(owner_state: AppState, unique: str, client: httpx.AsyncClient) -> World:
    world = await build_world(owner_state, f"ex-{unique}")
    hq = await sign_in(client, world, "hq_admin")
    made = await gql(
        client,
        "mutation($in: CreatePatientInput!) { createPatient(input: $in) { patient { id } } }",
        {
            "in": {
                "name": "测试患者导出",
                "phone": "+8613955500001",
                "homeBranchId": world.branch_gid("b2"),
                "gender": "FEMALE",
                "birthYear": 1990,
                "sourceChannel": "xiaohongshu",
                "consent": True,
                **MORE,
            }
        },
        token=hq,
    )
    EXPORTED_WITH_MORE[world.slug] = ok(made)["createPatient"]["patient"]["id"]
    return world


async def run_export(
    client: httpx.AsyncClient, token: str, fmt: str, flt: dict | None = None
) -> dict[str, Any]:
    started = ok(await gql(client, EXPORT, {"f": fmt, "flt": flt}, token=token))["exportPatients"]
    assert started["job"]["kind"] == "export"
    for _ in range(200):  # the job runs in the served process's loop; wait for it to finish
        job = ok(await gql(client, JOB, {"id": started["job"]["id"]}, token=token))["job"]
        if job["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "done" and job["done"] == job["total"], job
    return started


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def parse(content: bytes, fmt: str) -> tuple[list[str], list[list[str]]]:
    """The file's header and rows, every cell as text (empty for no value)."""
    if fmt == "CSV":
        rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
        return rows[0], rows[1:]
    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    table = [list(r) for r in book.active.iter_rows(values_only=True)]
    return [str(h) for h in table[0]], [[_text(c) for c in r] for r in table[1:]]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def as_listed(
    client: httpx.AsyncClient, token: str, headers: list[str], flt: dict | None = None
) -> list[list[str]]:
    """What `patients` answers the same caller for the same columns, as rows of text."""
    fields = " ".join("homeBranch { id }" if h == "homeBranchId" else h for h in headers)
    query = (
        "query($flt: PatientFilter) { patients(first: 100, filter: $flt) { edges { node { "
        + fields
        + " } } } }"
    )
    answer = await gql(client, query, {"flt": flt}, token=token)
    # health fields outside the caller's care answer REASON_REQUIRED (null), the rest stands
    for error in answer.get("errors", []):
        assert error["extensions"].get("reason") == "REASON_REQUIRED", answer
    nodes = [e["node"] for e in answer["data"]["patients"]["edges"]]
    return [
        [_text(n["homeBranch"]["id"] if h == "homeBranchId" else n[h]) for h in headers]
        for n in nodes
    ]


ALL = [
    "id",
    "gender",
    "birthYear",
    "sourceChannel",
    "poolTier",
    "lifecycleStage",
    "trustLevel",
    "leadScore",
    "consented",
    "homeBranchId",
    "createdAt",
    "name",
    "phone",
    "wechatId",
    "wecomExternalId",
    "nationalId",
    "medicalHistory",
    "allergies",
    "diagnoses",
    "notes",
]


@pytest.mark.parametrize("fmt", ["CSV", "XLSX"])
async def test_hq_exports_every_field_of_the_chain_as_it_reads_them(
    client: httpx.AsyncClient, owner_state: AppState, world: World, fmt: str
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    # HQ reads health fields only under a stated purpose: one patient's, for this review.
    stated = await gql(client, STATE_PURPOSE, {"id": EXPORTED_WITH_MORE[world.slug]}, token=hq)
    ok(stated)
    started = await run_export(client, hq, fmt)
    got = await client.get(started["downloadPath"], headers=_auth(hq))
    assert got.status_code == 200, got.text
    assert got.headers["cache-control"] == "no-store"
    headers, rows = parse(got.content, fmt)
    assert headers == ALL
    assert rows == await as_listed(client, hq, headers)
    assert len(rows) == len(world.patients) + 1
    history = {r[0]: r[headers.index("medicalHistory")] for r in rows}
    # the purpose opened that patient's health cells and no other's
    assert history.pop(EXPORTED_WITH_MORE[world.slug]) == MORE["medicalHistory"]
    assert set(history.values()) == {""}
    assert MORE["notes"] in {r[headers.index("notes")] for r in rows}  # text, not a formula
    # The access log holds the download as an export of exactly these patients.
    async with owner_state.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        entries = (
            await session.scalars(select(AccessLogEntry).where(AccessLogEntry.action == "export"))
        ).all()
    job_id = parse_global_id(started["job"]["id"], "Job")
    mine = [e for e in entries if str(job_id) in e.reason]
    opened_gid = EXPORTED_WITH_MORE[world.slug]
    assert {e.actor_id for e in mine} == {str(world.staff["hq_admin"].id)}
    assert mine[0].actor_id == str(world.staff["hq_admin"].id)
    opened = str(parse_global_id(EXPORTED_WITH_MORE[world.slug], "Patient"))
    withheld = sorted(str(parse_global_id(r[0], "Patient")) for r in rows if r[0] != opened_gid)
    assert len(mine) == 2
    by_groups = {e.field_groups: json.loads(e.patient_ids) for e in mine}
    assert by_groups == {"contact,health": [opened], "contact": withheld}


async def test_a_branch_manager_exports_their_branches_only(
    client: httpx.AsyncClient, world: World
) -> None:
    manager = await sign_in(client, world, "branch_manager")  # works in b1
    for fmt, flt in (("CSV", None), ("XLSX", {"stages": ["LEAD"]})):
        started = await run_export(client, manager, fmt, flt)
        got = await client.get(started["downloadPath"], headers=_auth(manager))
        headers, rows = parse(got.content, fmt)
        assert headers == ALL
        assert rows == await as_listed(client, manager, headers, flt)
        branches = {r[headers.index("homeBranchId")] for r in rows}
        assert branches == {world.branch_gid("b1")}
        assert len(rows) == 3  # assigned, hm, b1; not b2 nor the new one in b2


async def test_a_role_without_health_access_gets_no_health_column_and_masked_contacts(
    client: httpx.AsyncClient, world: World
) -> None:
    hq = await sign_in(client, world, "hq_admin")
    # The chain lets its marketing role export (as HQ may give what it holds).
    perms = [
        {"object": "patients:chain", "action": "read"},
        {"object": "fields:contact_masked", "action": "read"},
        {"object": "patients", "action": "export"},
        {"object": "segments", "action": "read"},
    ]
    ok(
        await gql(
            client,
            "mutation($r: String!, $p: [PermissionInput!]!) { setRolePermissions(role: $r,"
            " permissions: $p) { name } }",
            {"r": "marketing", "p": perms},
            token=hq,
        )
    )
    marketing = await sign_in(client, world, "marketing")
    for fmt in ("CSV", "XLSX"):
        started = await run_export(client, marketing, fmt)
        got = await client.get(started["downloadPath"], headers=_auth(marketing))
        headers, rows = parse(got.content, fmt)
        assert headers == ALL[: ALL.index("nationalId")]
        assert rows == await as_listed(client, marketing, headers)
        phones = {r[headers.index("phone")] for r in rows}
        assert all("****" in p for p in phones)
        flat = got.content.decode("utf-8-sig") if fmt == "CSV" else ""
        for values in world.plaintext.values():
            assert values["phone"] not in flat and values["medical_history"] not in flat
    # An operator holds no export permission at all.
    operator = await sign_in(client, world, "operator")
    assert codes(await gql(client, EXPORT, {"f": "CSV"}, token=operator)) == ["FORBIDDEN"]


def _files_under(root: Path, since: float) -> list[Path]:
    out = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and path.stat().st_mtime >= since - 1:
                out.append(path)
        except OSError:
            continue
    return out


async def test_the_download_is_the_askers_alone_expires_and_leaves_no_plaintext(
    client: httpx.AsyncClient,
    owner_state: AppState,
    world: World,
    db: Database,
) -> None:
    started_at = time.time()
    manager = await sign_in(client, world, "branch_manager")
    hq = await sign_in(client, world, "hq_admin")
    started = await run_export(client, manager, "XLSX")
    path = started["downloadPath"]
    # Another staff member (even HQ) gets what a missing export answers; no token, 401.
    for token in (hq, await sign_in(client, world, "doctor")):
        other = await client.get(path, headers=_auth(token))
        assert other.status_code == 404 and codes(other.json()) == ["NOT_FOUND"]
    missing = await client.get(path.replace(path[-6:], "AAAAAA"), headers=_auth(manager))
    assert missing.status_code == 404
    assert (await client.get(path)).status_code == 401
    assert codes((await client.get(path, headers=_auth("nonsense"))).json()) == ["UNAUTHENTICATED"]
    mine = await client.get(path, headers=_auth(manager))
    assert mine.status_code == 200

    # No plaintext on disk: the data dir, the database's files, and any file made since.
    secrets = [v for values in world.plaintext.values() for v in values.values()]
    secrets += [MORE["medicalHistory"], "测试患者导出"]
    roots = [owner_state.settings.data_dir, Path(tempfile.gettempdir())]
    if db.kind == "sqlite":
        roots.append(Path(db.app_url.split("///", 1)[1]).parent)
    scanned: list[Path] = []
    for root in roots:
        for file in _files_under(root, started_at) if root != roots[0] else root.rglob("*"):
            try:
                if file.is_file() and file.stat().st_size <= 200 * 1024 * 1024:
                    scanned.append(file)
            except OSError:
                continue
    for file, data in read_elsewhere(scanned).items():  # the live database among them
        for secret in secrets:
            assert secret.encode() not in data, (file, "holds a plaintext value")

    # Expired: a coded answer, and nothing more.
    async with owner_state.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        await session.execute(
            update(PatientExport)
            .where(PatientExport.id == parse_global_id(started["job"]["id"], "Job"))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    gone = await client.get(path, headers=_auth(manager))
    assert gone.status_code == 410
    assert gone.json()["errors"][0]["extensions"] == {
        "code": "NOT_FOUND",
        "reason": "EXPORT_EXPIRED",
    }


async def test_an_export_job_cut_off_resumes_from_its_cursor(
    client: httpx.AsyncClient, state: AppState, world: World
) -> None:
    """The job finds the same patients in one run as in runs cut off after any batch."""
    hq = await sign_in(client, world, "hq_admin")
    whole = await run_export(client, hq, "CSV")
    async with state.sessions() as session:
        await bind_tenant(session, world.tenant_id)
        async with session.begin():
            first = await ExportRepository(session).get(parse_global_id(whole["job"]["id"], "Job"))
            assert first is not None
            plan = json.loads(first.filter)
            job, _ = await ExportRepository(session).start(
                first.requested_by, ExportFormat.CSV, plan, 0, timedelta(hours=1)
            )
            job_id = job.id
        runs = 0
        while True:
            runs += 1
            done = await run_export_job(session, job_id, "test", batch=2, stop_after_batches=1)
            assert done is not None
            if done.status == "done":
                break
        async with session.begin():
            again = await ExportRepository(session).get(job_id)
            assert again is not None
            assert ExportRepository.ids_of(again) == ExportRepository.ids_of(first)
            assert again.rows == first.rows == len(world.patients) + 1
    assert runs == -(-(len(world.patients) + 1) // 2) + 1  # every batch, then the end
