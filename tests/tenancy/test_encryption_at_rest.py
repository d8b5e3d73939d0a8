"""No plaintext identifier or health text reaches the database; blind-index search; rotation
with an interrupted re-encryption; crypto-shredding; erasure of one patient."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from api.context import AppState
from domain.patients.models import SEALED_FIELDS, Patient
from domain.patients.reencrypt import reencrypt_patients
from domain.patients.service import unseal
from process.demo import load_demo
from process.settings import Settings
from tenancy.keyring import KeyShreddedError
from tenancy.keystore import load_cipher, rotate_data_key, shred_tenant_keys
from tenancy.session import bind_tenant
from tests.conftest import _make_pg_database
from tests.support import World, build_world, codes, gql, ok, sign_in


async def _demo_plaintexts(url: str, cfg: Settings) -> set[str]:
    """Every sealed value of the demo, decrypted through the product, minus values that are
    legitimately plain elsewhere (staff display names come from the same name generator)."""
    from auth.models import StaffUser
    from domain.tenants.models import Tenant
    from tenancy.keyring import LocalKeyProvider
    from tenancy.session import make_engine, session_factory

    engine = make_engine(url)
    keys = LocalKeyProvider.from_text(cfg.master_key_text())
    values: set[str] = set()
    staff_names: set[str] = set()
    try:
        async with session_factory(engine)() as s, s.begin():
            tenant_ids = (await s.scalars(select(Tenant.id))).all()
        for tenant_id in tenant_ids:
            async with session_factory(engine)() as s, s.begin():
                await bind_tenant(s, tenant_id)
                cipher = await load_cipher(s, keys)
                staff_names |= set((await s.scalars(select(StaffUser.display_name))).all())
                for p in (await s.scalars(select(Patient))).all():
                    for name in SEALED_FIELDS:
                        value = unseal(cipher, p, name)
                        if value:
                            values.add(value)
                            if name == "phone":
                                values.add(value.removeprefix("+86"))
    finally:
        await engine.dispose()
    staff_text = "\n".join(staff_names)
    return {v for v in values if len(v) >= 2 and v not in staff_text and v != "无特殊"}


async def test_demo_leaves_no_plaintext_in_sqlite_file(tmp_path: Path) -> None:
    cfg = Settings(data_dir=tmp_path)
    from migrations.runner import upgrade

    await asyncio.to_thread(upgrade, cfg.owner_database_url)
    assert await load_demo(cfg)
    plaintexts = await _demo_plaintexts(cfg.owner_database_url, cfg)
    assert len(plaintexts) > 500
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("patientpool.db*"))
    found = [v for v in plaintexts if v.encode() in raw]
    assert found == []
    # and the check can fail: the staff names, stored plain, are found
    assert b"HQ admin" in raw


@pytest.mark.postgres
async def test_demo_leaves_no_plaintext_in_postgres(tmp_path: Path, unique: str) -> None:
    from tests.conftest import _pg_reachable, pg_unavailable

    reason = await _pg_reachable()
    if reason is not None:
        pg_unavailable(reason)
    db = await _make_pg_database(f"pp_scan_{unique}")
    cfg = Settings(data_dir=tmp_path, database_url=db.owner_url)
    assert await load_demo(cfg)
    plaintexts = await _demo_plaintexts(db.owner_url, cfg)
    engine = create_async_engine(db.owner_url)
    hits: list[str] = []
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            for table in tables:
                rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()
                for row in rows:
                    for value in row:
                        blob = value.encode() if isinstance(value, str) else value
                        if isinstance(blob, bytes | memoryview):
                            blob = bytes(blob)
                            hits += [v for v in plaintexts if v.encode() in blob]
    finally:
        await engine.dispose()
        from tests.conftest import drop_pg_database

        await drop_pg_database(f"pp_scan_{unique}")
    assert len(plaintexts) > 500
    assert hits == []


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"e-{unique}")


async def test_phone_search_through_blind_index(
    client: httpx.AsyncClient, owner_state: AppState, world: World, unique: str
) -> None:
    token = await sign_in(client, world, "hq_admin")
    phone = world.plaintext["b2"]["phone"]
    local = phone.removeprefix("+86")
    spaced = f"{local[:3]} {local[3:7]} {local[7:]}"
    q = "query($p: String!) { patients(filter: {phone: $p}) { totalCount edges { node { id } } } }"
    found = await gql(client, q, {"p": spaced}, token=token)
    assert [e["node"]["id"] for e in found["data"]["patients"]["edges"]] == [world.gid("b2")]
    # the same phone in another tenant has another blind index
    other = await build_world(owner_state, f"e2-{unique}")
    token2 = await sign_in(client, other, "hq_admin")
    create = "mutation($in: CreatePatientInput!) { createPatient(input: $in) { patient { id } } }"
    made = await gql(
        client,
        create,
        {"in": {"name": "同号", "phone": phone, "homeBranchId": other.branch_gid("b1")}},
        token=token2,
    )
    assert "errors" not in made
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        mine = await s.scalar(
            select(Patient.phone_bidx).where(Patient.id == world.patients["b2"].id)
        )
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, other.tenant_id)
        theirs = (await s.scalars(select(Patient.phone_bidx))).all()
    assert mine is not None and mine not in theirs
    # a known phone within one tenant finds the person (OneID), however it is spaced
    dup = await gql(
        client,
        create.replace("patient { id }", "patient { id } existing"),
        {"in": {"name": "重复", "phone": spaced, "homeBranchId": world.branch_gid("b1")}},
        token=token,
    )
    assert ok(dup)["createPatient"] == {"patient": {"id": world.gid("b2")}, "existing": True}


async def test_rotation_with_interrupted_reencryption(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    token = await sign_in(client, world, "hq_admin")
    q = "{ patients(first: 100) { edges { node { name medicalHistory } } } }"
    before = await gql(client, q, token=token)
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        assert await rotate_data_key(s, owner_state.key_provider) == 2
    create = "mutation($in: CreatePatientInput!) { createPatient(input: $in) { patient { id } } }"
    made = await gql(
        client,
        create,
        {
            "in": {
                "name": "新钥匙",
                "medicalHistory": "after",
                "homeBranchId": world.branch_gid("b1"),
            }
        },
        token=token,
    )
    assert "errors" not in made
    # HQ reads every health field back to check the rotation: a review, so it states why.
    state = """mutation($id: ID!) { statePurpose(patientId: $id, purpose: QUALITY_REVIEW,
      note: "key rotation check") { id } }"""
    made_id = made["data"]["createPatient"]["patient"]["id"]
    for pid in [*(world.gid(k) for k in world.patients), made_id]:
        assert "errors" not in await gql(client, state, {"id": pid}, token=token)

    async def versions() -> list[int]:
        async with owner_state.sessions() as s, s.begin():
            await bind_tenant(s, world.tenant_id)
            cipher = await load_cipher(s, owner_state.key_provider)
            rows = (await s.scalars(select(Patient).order_by(Patient.id))).all()
            return [cipher.key_version(p.name_ct) for p in rows]

    assert sorted(await versions()) == [1, 1, 1, 1, 2]
    async with owner_state.sessions() as s:
        await bind_tenant(s, world.tenant_id)
        async with s.begin():
            cipher = await load_cipher(s, owner_state.key_provider)
        # interrupted after one batch of two rows
        await reencrypt_patients(s, cipher, batch=2, stop_after_batches=1)
    partial = await versions()
    assert 1 in partial and partial.count(2) >= 2
    during = await gql(client, q, token=token)
    assert "errors" not in during
    async with owner_state.sessions() as s:
        await bind_tenant(s, world.tenant_id)
        async with s.begin():
            cipher = await load_cipher(s, owner_state.key_provider)
        await reencrypt_patients(s, cipher, batch=2)
    assert await versions() == [2] * 5
    after = await gql(client, q, token=token)
    old = {e["node"]["name"] for e in before["data"]["patients"]["edges"]}
    assert old < {e["node"]["name"] for e in after["data"]["patients"]["edges"]}


async def test_shredded_tenant_reads_say_so(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    token = await sign_in(client, world, "hq_admin")
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        await shred_tenant_keys(s)
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        with pytest.raises(KeyShreddedError):
            await load_cipher(s, owner_state.key_provider)
    result = await gql(
        client, "{ patients { edges { node { lifecycleStage name } } } }", token=token
    )
    assert {e["extensions"].get("reason") for e in result["errors"]} == {"DATA_SHREDDED"}
    assert "crypto-shredded" in result["errors"][0]["message"]


async def test_erase_one_patient(
    client: httpx.AsyncClient, owner_state: AppState, world: World
) -> None:
    token = await sign_in(client, world, "hq_admin")
    erase = "mutation($id: ID!) { erasePatient(id: $id) { patient { id erased name phone } } }"
    result = await gql(client, erase, {"id": world.gid("b1")}, token=token)
    assert result["data"]["erasePatient"]["patient"] == {
        "id": world.gid("b1"),
        "erased": True,
        "name": None,
        "phone": None,
    }
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        row = await s.scalar(select(Patient).where(Patient.id == world.patients["b1"].id))
        assert all(getattr(row, f"{f}_ct") is None for f in SEALED_FIELDS)
        assert row.phone_bidx is None
    count = await gql(client, "{ patients { totalCount } }", token=token)
    assert count["data"]["patients"]["totalCount"] == len(world.patients) - 1
    again = await gql(
        client,
        "mutation($id: ID!, $in: UpdatePatientInput!) { updatePatient("
        "id: $id, input: $in) { patient { id } } }",
        {"id": world.gid("b1"), "in": {"name": "back"}},
        token=token,
    )
    assert codes(again) == ["CONFLICT"]
    # an operator may not erase
    operator = await sign_in(client, world, "operator")
    denied = await gql(client, erase, {"id": world.gid("assigned")}, token=operator)
    assert codes(denied) == ["FORBIDDEN"]


def test_keys_commands(tmp_path: Path) -> None:
    """The operator's commands, as processes: rotate, re-encrypt with progress, retire."""
    env = {**os.environ, "PATIENTPOOL_DATA_DIR": str(tmp_path)}
    run = [sys.executable, "-m", "process.cli"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*run, *args], env=env, capture_output=True, text=True, timeout=120)

    assert cli("migrate").returncode == 0
    made = cli(
        "tenant",
        "create",
        "--slug",
        "ops-chain",
        "--name",
        "运维连锁",
        "--admin-email",
        "admin@ops.test",
    )
    assert made.returncode == 0, made.stderr
    assert "password:" in made.stdout
    rotated = cli("keys", "rotate", "--tenant", "ops-chain")
    assert rotated.returncode == 0 and "version 2" in rotated.stdout
    moved = cli("keys", "reencrypt", "--tenant", "ops-chain", "--retire")
    assert moved.returncode == 0, moved.stderr
    assert "retired 1 old data key" in moved.stderr
    missing = cli("keys", "rotate", "--tenant", "nope")
    assert missing.returncode == 2 and "no tenant" in missing.stderr
    assert cli("keys", "shred", "--tenant", "ops-chain").returncode == 2
    assert cli("audit", "verify").returncode == 0
