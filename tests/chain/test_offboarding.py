"""A chain that leaves: `patientpool tenant offboard` on chains made with `tenant create` and
patients made through the API. The archive opens with the printed key and holds the patients'
names; afterwards no key of the chain remains, two app instances answer its sealed fields
"shredded", sign-in is closed, a rerun changes nothing, the other chain reads as before, the
access log verifies, and no plaintext sits in the data directory. A run stopped mid-export is
finished by the next one."""

from __future__ import annotations

import asyncio
import json
import shlex
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from api.app import create_app
from api.context import AppState
from auth.access_log import AccessLogEntry
from domain.tenants.models import Tenant
from process.cli import app as cli
from process.offboarding import offboard_command
from process.serve import app_state
from process.settings import Settings
from tenancy.keystore import TenantKey
from tenancy.session import make_engine, session_factory
from tests.chain.conftest import Operator, new_chain, sign_in_pair
from tests.conftest import Database
from tests.files import read_elsewhere
from tests.readme import blocks
from tests.support import codes, gql, ok, patient_values

CREATE_PATIENT = """mutation($i: CreatePatientInput!) {
  createPatient(input: $i) { patient { id name } } }"""
PATIENTS = """{ patients(first: 50) { totalCount
  edges { node { id lifecycleStage name phone medicalHistory } } } }"""
STATE_PURPOSE = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: LEGAL,
  note: "handover review") { id } }"""
SIGN_IN = """mutation($t: String!, $e: String!, $p: String!) {
  signIn(tenant: $t, email: $e, password: $p) { accessToken } }"""


@pytest.fixture
async def second_api(chain_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """Another app instance with an engine (a pool) of its own: a second process."""
    engine = make_engine(chain_state.settings.database_url or "", pool_size=2)
    state = app_state(
        chain_state.settings,
        session_factory(engine),
        chain_state.key_provider,
        chain_state.signing_keys,
        chain_state.sign_in_limits,
    )
    transport = httpx.ASGITransport(app=create_app(state.settings, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    await engine.dispose()


async def _chain_with_patients(
    api: httpx.AsyncClient, operator: Operator, slug: str, tag: str, n: int
) -> tuple[str, str, list[dict[str, str]]]:
    """A chain as a customer makes one; returns its admin password, a token and the patients'
    seeded values."""
    password = await new_chain(operator, slug, "--branch-name", "总店", "--branch-city", "上海")
    token = (await sign_in_pair(api, slug, f"admin@{slug}.test", password))["accessToken"]
    branch = ok(await gql(api, "{ branches { edges { node { id } } } }", token=token))["branches"][
        "edges"
    ][0]["node"]["id"]
    made = []
    for i in range(n):
        values = patient_values(i, tag)
        created = ok(
            await gql(
                api,
                CREATE_PATIENT,
                {
                    "i": {
                        "name": values["name"],
                        "phone": values["phone"],
                        "medicalHistory": values["medical_history"],
                        "homeBranchId": branch,
                    }
                },
                token=token,
            )
        )
        # HQ reads these health fields back before the handover: a legal review, stated.
        pid = created["createPatient"]["patient"]["id"]
        ok(await gql(api, STATE_PURPOSE, {"id": pid}, token=token))
        made.append(values)
    return password, token, made


async def _scalar(db: Database, stmt: Any) -> Any:
    """A read-back check as the owner (never how a test makes its data)."""
    engine = create_async_engine(db.owner_url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(stmt)
    finally:
        await engine.dispose()


async def _all(db: Database, stmt: Any) -> list[tuple[Any, ...]]:
    engine = create_async_engine(db.owner_url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(stmt)).all()]
    finally:
        await engine.dispose()


async def _tenant_id(db: Database, slug: str) -> uuid.UUID:
    return await _scalar(db, select(Tenant.__table__.c.id).where(Tenant.__table__.c.slug == slug))


async def _keys_of(db: Database, tenant_id: uuid.UUID) -> int:
    keys = TenantKey.__table__
    return await _scalar(
        db, select(func.count()).select_from(keys).where(keys.c.tenant_id == tenant_id)
    )


async def _log_entries(db: Database, tenant_id: uuid.UUID) -> int:
    log = AccessLogEntry.__table__
    return await _scalar(
        db, select(func.count()).select_from(log).where(log.c.tenant_id == tenant_id)
    )


def _readme_commands(substitutions: dict[str, str]) -> list[list[str]]:
    """The `patientpool …` arguments of the README's "A chain that leaves" block."""
    (text,) = blocks("sh", "## A chain that leaves")
    for old, new in substitutions.items():
        text = text.replace(old, new)
    prefix = "uv run patientpool "
    return [shlex.split(line)[3:] for line in text.splitlines() if line.startswith(prefix)]


def _key_of(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("archive key")]
    assert len(lines) == 1, output
    return lines[0].rsplit(" ", 1)[1]


def _files_under(*roots: Path) -> bytes:
    found = [p for root in roots for p in root.rglob("*") if p.is_file()]
    return b"".join(read_elsewhere(found).values())


def _sqlite_files(db: Database) -> list[Path]:
    if db.kind != "sqlite":
        return []
    path = Path(db.owner_url.split("///", 1)[1])
    return [p for p in path.parent.glob(path.name + "*")]


async def test_a_chain_leaves(
    api: httpx.AsyncClient,
    second_api: httpx.AsyncClient,
    operator: Operator,
    chain_env: tuple[dict[str, str], Settings],
    db: Database,
    unique: str,
    tmp_path: Path,
) -> None:
    leaving, staying = f"leave-{unique}", f"stay-{unique}"
    password, token, patients = await _chain_with_patients(api, operator, leaving, "offb", 5)
    _, other_token, others = await _chain_with_patients(api, operator, staying, "offk", 2)
    # a token of the leaving chain held by the second process
    second_token = (await sign_in_pair(second_api, leaving, f"admin@{leaving}.test", password))[
        "accessToken"
    ]
    before_other = ok(await gql(api, PATIENTS, token=other_token))
    assert {e["node"]["name"] for e in before_other["patients"]["edges"]} == {
        p["name"] for p in others
    }
    leaving_id, staying_id = await _tenant_id(db, leaving), await _tenant_id(db, staying)
    assert await _keys_of(db, leaving_id) == 2

    out = tmp_path / "handover" / f"{leaving}.ppa"
    out.parent.mkdir()
    # The README's commands, as written there (with this test's chain, paths and key).
    readme = {"my-chain-data": str(tmp_path / "opened"), "/secure/handover/my-chain.ppa": str(out)}
    offboard, _ = _readme_commands({**readme, "my-chain": leaving})
    done = await operator.run(*offboard, "--batch", "2")
    key = _key_of(done)
    assert "offboarded; keys destroyed" in done

    # No wrapped key of the chain remains; the other chain keeps both of its own.
    assert await _keys_of(db, leaving_id) == 0
    assert await _keys_of(db, staying_id) == 2

    # Both processes answer every sealed field "shredded", at once (keys are read per request).
    for client, bearer in ((api, token), (second_api, second_token)):
        answer = await gql(client, PATIENTS, token=bearer)
        assert answer["errors"], answer
        assert {e["extensions"]["code"] for e in answer["errors"]} == {"NOT_FOUND"}
        assert {e["extensions"].get("reason") for e in answer["errors"]} == {"DATA_SHREDDED"}
        assert not any(p["name"] in json.dumps(answer, ensure_ascii=False) for p in patients)

    # Sign-in to the chain is closed; the other chain reads exactly as before.
    refused = await gql(api, SIGN_IN, {"t": leaving, "e": f"admin@{leaving}.test", "p": password})
    assert codes(refused) == ["UNAUTHENTICATED"]
    assert "offboarded" in refused["errors"][0]["message"]
    assert ok(await gql(second_api, PATIENTS, token=other_token)) == before_other

    # The access log holds the offboarding (an export, then the shredding) and verifies.
    entries = await _log_entries(db, leaving_id)
    verified = await operator.run("audit", "verify", "--tenant", leaving)
    assert verified.startswith(f"{leaving}: ok, {entries} entries")
    log = AccessLogEntry.__table__
    actions = await _all(
        db,
        select(log.c.action, log.c.reason)
        .where(log.c.tenant_id == leaving_id, log.c.actor_id == "cli:tenant-offboard")
        .order_by(log.c.seq),
    )
    assert actions == [
        ("export", f"tenant.offboard.export Tenant:{leaving_id}"),
        ("admin", f"tenant.offboard.shred Tenant:{leaving_id}"),
    ]

    # A rerun changes nothing and says so in one line.
    archive = out.read_bytes()
    again = await operator.run("tenant", "offboard", "--slug", leaving, "--out", str(out))
    assert again.strip().splitlines() == [
        f"tenant {leaving}: already offboarded (shredded); nothing changed"
    ]
    assert out.read_bytes() == archive
    assert await _log_entries(db, leaving_id) == entries

    # The archive opens with the printed key and holds the patients, decrypted.
    opened = tmp_path / "opened"
    _, open_it = _readme_commands({**readme, "my-chain": leaving, "<the printed key>": key})
    said = await operator.run(*open_it)
    assert "rows in" in said
    rows = [json.loads(line) for line in (opened / "patients.jsonl").read_text().splitlines()]
    assert sorted(r["name"] for r in rows) == sorted(p["name"] for p in patients)
    assert sorted(r["medical_history"] for r in rows) == sorted(
        p["medical_history"] for p in patients
    )
    assert not any(k.endswith(("_ct", "_bidx")) for r in rows for k in r)
    staff = (opened / "staff_users.jsonl").read_text()
    assert "password_hash" not in staff and f"admin@{leaving}.test" in staff
    manifest = json.loads((opened / "manifest.json").read_text())
    assert manifest["tenant"]["slug"] == leaving and manifest["rows"]["patients"] == 5
    assert not (opened / "tenant_keys.jsonl").exists()
    # …and with any other key it opens nothing.
    wrong = tmp_path / "wrong"
    refused_key = await operator.fails(
        "tenant", "open-archive", str(out), "--key", "A" * 43, "--out", str(wrong)
    )
    assert "does not open" in refused_key and not wrong.exists()

    # No plaintext in the data directory, the archive's directory or the database files;
    # the same search finds the names where they were decrypted on purpose.
    data_dir = Path(chain_env[0]["PATIENTPOOL_DATA_DIR"])
    stored = _files_under(data_dir, out.parent) + b"".join(
        read_elsewhere(_sqlite_files(db)).values()
    )
    values = [v for p in patients for v in (p["name"], p["phone"], p["medical_history"])]
    assert [v for v in values if v.encode() in stored] == []
    assert all(v.encode() in _files_under(opened) for v in values)


class Stopped(BaseException):
    """Stands in for a kill: nothing below catches it, nothing cleans up after it."""


async def test_an_offboarding_stopped_mid_export_is_finished_by_the_next_run(
    api: httpx.AsyncClient,
    operator: Operator,
    chain_env: tuple[dict[str, str], Settings],
    db: Database,
    unique: str,
    tmp_path: Path,
) -> None:
    slug = f"halt-{unique}"
    password, token, patients = await _chain_with_patients(api, operator, slug, "offh", 4)
    out = tmp_path / f"{slug}.ppa"
    printed: list[str] = []
    seen: list[str] = []

    def stop_after_three(table: str, batches: int) -> None:
        seen.append(table)
        if seen.count("patients") == 3:
            raise Stopped

    with pytest.raises(Stopped):
        await offboard_command(
            chain_env[1], slug, out, lambda _m: None, printed.append,
            batch=1, after_batch=stop_after_three,
        )  # fmt: skip
    # Stopped while exporting: no key was given out, nothing is shredded, sign-in is closed.
    assert printed == [] and not out.exists()
    partial = out.with_name(out.name + ".partial").read_bytes()
    # patients were exported before the stop: nothing of them readable on disk
    assert partial.startswith(b"PPARCHIVE1\n")
    assert [p["name"] for p in patients if p["name"].encode() in partial] == []
    tenant_id = await _tenant_id(db, slug)
    assert await _keys_of(db, tenant_id) == 2
    state = Tenant.__table__.c.offboarding_state
    assert await _scalar(db, select(state).where(Tenant.__table__.c.id == tenant_id)) == "exporting"
    refused = await gql(api, SIGN_IN, {"t": slug, "e": f"admin@{slug}.test", "p": password})
    assert codes(refused) == ["UNAUTHENTICATED"]
    still = ok(await gql(api, PATIENTS, token=token))  # tokens already out still read
    assert still["patients"]["totalCount"] == 4

    done = await operator.run("tenant", "offboard", "--slug", slug, "--out", str(out))
    key = _key_of(done)
    assert await _keys_of(db, tenant_id) == 0
    assert not out.with_name(out.name + ".partial").exists()
    opened = tmp_path / "opened"
    await operator.run("tenant", "open-archive", str(out), "--key", key, "--out", str(opened))
    rows = [json.loads(line) for line in (opened / "patients.jsonl").read_text().splitlines()]
    assert sorted(r["name"] for r in rows) == sorted(p["name"] for p in patients)
    assert (await operator.run("audit", "verify", "--tenant", slug)).startswith(f"{slug}: ok")


async def _exit(operator: Operator, *args: str) -> tuple[int, str]:
    # the command runs its own event loop: a thread of its own
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=operator.env)
    return result.exit_code, result.output


async def test_offboard_usage_mistakes(operator: Operator, unique: str, tmp_path: Path) -> None:
    """Bad usage exits 2 with one line, and touches nothing."""
    code, said = await _exit(
        operator, "tenant", "offboard", "--slug", f"nope-{unique}", "--out", str(tmp_path / "x")
    )
    assert code == 2 and "no tenant with slug" in said
    slug = f"keep-{unique}"
    await new_chain(operator, slug)
    taken = tmp_path / "taken.ppa"
    taken.write_bytes(b"someone else's file")
    code, said = await _exit(operator, "tenant", "offboard", "--slug", slug, "--out", str(taken))
    assert code == 2 and "exists" in said and taken.read_bytes() == b"someone else's file"
    code, said = await _exit(
        operator, "tenant", "offboard", "--slug", slug, "--out", str(tmp_path / "no" / "x")
    )
    assert code == 2 and "no directory" in said
    code, said = await _exit(
        operator, "tenant", "open-archive", str(taken), "--key", "short", "--out", str(tmp_path)
    )
    assert code == 2 and "--key" in said
    # …and the chain was never marked: its admin still signs in (new_chain's sign-in path)
    code, said = await _exit(operator, "tenant", "offboard", "--slug", slug, "--out", str(taken))
    assert code == 2


async def test_offboarding_a_chain_whose_keys_are_gone_says_so(
    operator: Operator, unique: str, tmp_path: Path
) -> None:
    """Keys destroyed earlier (`keys shred`): nothing sealed can be handed over; one line,
    exit 1, and no archive."""
    slug = f"gone-{unique}"
    await new_chain(operator, slug)
    await operator.run("keys", "shred", "--tenant", slug, "--yes")
    out = tmp_path / "gone.ppa"
    code, said = await _exit(operator, "tenant", "offboard", "--slug", slug, "--out", str(out))
    assert code == 1 and "does not open" in said and len(said.strip().splitlines()) == 1
    assert not out.exists()


async def test_offboard_without_out_writes_into_the_data_dir(operator: Operator, unique: str):
    """`tenant offboard --slug S` alone (the contract's form): the archive goes to
    `<data dir>/offboarding/S.ppa` and opens with the printed key."""
    slug = f"plain-{unique}"
    await new_chain(operator, slug)
    done = await operator.run("tenant", "offboard", "--slug", slug)
    archive = Path(operator.env["PATIENTPOOL_DATA_DIR"]) / "offboarding" / f"{slug}.ppa"
    assert str(archive) in done and archive.read_bytes().startswith(b"PPARCHIVE1\n")
    opened = archive.with_name(f"{slug}-opened")
    key = _key_of(done)
    await operator.run("tenant", "open-archive", str(archive), "--key", key, "--out", str(opened))
    assert (opened / "manifest.json").exists()
