"""Retention of the access log: old entries move to archived segment files, the chain still
verifies from the first entry ever written, an interrupted archive resumes, and a segment that
is altered, replaced or lost is caught."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from api.context import AppState
from auth.access_log import AccessEvent, AccessLogEntry, AccessLogSegment, Action, Actor, append
from auth.access_log import RequestInfo as Info
from auth.access_log_archive import ArchiveError, LogVerifyResult, archive_log, verify_log
from tenancy.orm import utcnow
from tenancy.session import bind_tenant
from tests.auth.test_access_log import _owner_exec, _relock, _tid, _unlock, entries
from tests.conftest import Database
from tests.support import World, build_world, codes, gql, sign_in

RETENTION = "mutation($d: Int) { setAccessLogRetention(days: $d) { retentionDays } }"
HISTORY = """query($id: ID!) { patientAccessHistory(patientId: $id, first: 50) { totalCount
  edges { node { seq } } } }"""
ARCHIVE = (
    "{ accessLogArchive { retentionDays segments { number firstSeq lastSeq entries fileName "
    "fileSha256 lastHash } } }"
)


@pytest.fixture
async def world(owner_state: AppState, unique: str) -> World:
    return await build_world(owner_state, f"ar-{unique}")


async def _archive(
    owner: AppState, world: World, archive_dir: Path, *, days_ahead: int = 181, **kw: object
) -> object:
    """Archive as if `days_ahead` days had passed (retention 180: everything up to a day from
    now goes)."""
    async with owner.sessions() as s:
        await bind_tenant(s, world.tenant_id)
        return await archive_log(
            s,
            archive_dir,
            now=utcnow() + timedelta(days=days_ahead),
            **kw,  # type: ignore[arg-type]
        )


async def _verify(owner: AppState, world: World, archive_dir: Path) -> LogVerifyResult:
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        return await verify_log(s, archive_dir)


async def _segments(owner: AppState, world: World) -> list[AccessLogSegment]:
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        stmt = select(AccessLogSegment).order_by(AccessLogSegment.number)
        return list((await s.scalars(stmt)).all())


async def _append_at(owner: AppState, world: World, days_ahead: int, n: int) -> None:
    events = [
        AccessEvent(
            Action.READ,
            [world.patients["b1"].id],
            ["contact"],
            occurred_at=utcnow() + timedelta(days=days_ahead),
        )
        for _ in range(n)
    ]
    async with owner.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        await append(s, Actor("system", "test"), Info(), events)


async def _read_patients(client: httpx.AsyncClient, token: str, n: int) -> None:
    for _ in range(n):
        await gql(client, "{ patients(first: 3) { edges { node { name } } } }", token=token)


async def _retain(client: httpx.AsyncClient, world: World, days: int | None = 180) -> None:
    admin = await sign_in(client, world, "hq_admin")
    result = await gql(client, RETENTION, {"d": days}, token=admin)
    assert result["data"]["setAccessLogRetention"]["retentionDays"] == days, result


async def test_archived_segments_keep_the_chain_provable(
    db: Database, client: httpx.AsyncClient, owner_state: AppState, world: World, tmp_path: Path
) -> None:
    token = await sign_in(client, world, "hq_admin")
    await _read_patients(client, token, 4)
    await _retain(client, world)
    await _append_at(owner_state, world, 0, 2)  # about b1, archived with the rest
    old = len(await entries(owner_state, world))
    # Entries to keep: two dated after the cutoff, then one older entry behind them (a segment
    # is a prefix of the chain, so it stays too).
    await _append_at(owner_state, world, 2, 2)
    await _append_at(owner_state, world, 0, 1)

    result = await _archive(owner_state, world, tmp_path, segment_size=3)
    assert result.entries == old
    assert result.segments == -(-old // 3)
    live = await entries(owner_state, world)
    assert [e.seq for e in live] == [old + 1, old + 2, old + 3]
    segments = await _segments(owner_state, world)
    assert [s.number for s in segments] == list(range(1, len(segments) + 1))
    assert segments[0].first_seq == 1 and segments[-1].last_seq == old
    for seg in segments:
        path = tmp_path / seg.file_name
        assert hashlib.sha256(path.read_bytes()).digest() == seg.file_sha256
        lines = gzip.decompress(path.read_bytes()).splitlines()
        assert [json.loads(x)["seq"] for x in lines] == list(range(seg.first_seq, seg.last_seq + 1))

    checked = await _verify(owner_state, world, tmp_path)
    assert checked.result.ok, checked
    assert (checked.result.entries, checked.archived_entries) == (old + 3, old)
    # b1's history holds its live entries only, and its count agrees with its pages (the
    # count reads the index of touched patients, whose rows outlive the archived entries).
    auditor = await sign_in(client, world, "auditor")
    history = await gql(client, HISTORY, {"id": world.gid("b1")}, token=auditor)
    page = history["data"]["patientAccessHistory"]
    assert [e["node"]["seq"] for e in page["edges"]] == [old + 3, old + 2, old + 1]
    assert page["totalCount"] == 3
    # Nothing is left to archive; a second run is a no-op.
    assert (await _archive(owner_state, world, tmp_path, segment_size=3)).entries == 0

    # The chain goes on through the segments: new requests link to the archived last hash.
    await _read_patients(client, token, 2)
    assert (await _verify(owner_state, world, tmp_path)).result.ok

    # Auditors see the retention and the segments (boundaries and digests, never contents).
    seen = (await gql(client, ARCHIVE, token=auditor))["data"]["accessLogArchive"]
    assert seen["retentionDays"] == 180
    assert sum(s["entries"] for s in seen["segments"]) == old
    assert seen["segments"][-1]["lastHash"] == segments[-1].last_hash.hex()
    assert seen["segments"][0]["fileSha256"] == segments[0].file_sha256.hex()

    # The operator's command proves the same, and says how much is archived.
    env = {
        **os.environ,
        "PATIENTPOOL_DATABASE_URL": db.owner_url,
        "PATIENTPOOL_DATA_DIR": str(owner_state.settings.data_dir),
        "PATIENTPOOL_AUDIT_ARCHIVE_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "process.cli", "audit", "verify", "--tenant", world.slug],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"({old} in {len(segments)} archived segments)" in done.stdout


async def test_an_interrupted_archive_resumes(
    client: httpx.AsyncClient, owner_state: AppState, world: World, tmp_path: Path
) -> None:
    token = await sign_in(client, world, "hq_admin")
    await _read_patients(client, token, 5)
    await _retain(client, world)
    total = len(await entries(owner_state, world))

    def stop(_message: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await _archive(owner_state, world, tmp_path, segment_size=2, progress=stop)
    assert len(await _segments(owner_state, world)) == 1  # the first segment is whole
    assert (await _verify(owner_state, world, tmp_path)).result.ok

    seen: list[str] = []
    rest = await _archive(owner_state, world, tmp_path, segment_size=2, progress=seen.append)
    assert rest.entries == total - 2 and len(seen) == rest.segments
    segments = await _segments(owner_state, world)
    assert [s.number for s in segments] == list(range(1, len(segments) + 1))
    assert sum(s.last_seq - s.first_seq + 1 for s in segments) == total
    checked = await _verify(owner_state, world, tmp_path)
    assert checked.result.ok and checked.archived_entries == total


def _rewrite_first_line(path: Path) -> None:
    lines = gzip.decompress(path.read_bytes()).splitlines()
    first = json.loads(lines[0])
    first["actor_id"] = "someone-else"
    lines[0] = json.dumps(first, sort_keys=True, ensure_ascii=False).encode()
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", mtime=0))


@pytest.mark.parametrize("how", ["file altered", "file lost", "file and digest replaced"])
async def test_tampered_segments_are_detected(
    db: Database,
    client: httpx.AsyncClient,
    owner_state: AppState,
    world: World,
    tmp_path: Path,
    how: str,
) -> None:
    token = await sign_in(client, world, "hq_admin")
    await _read_patients(client, token, 3)
    await _retain(client, world)
    await _archive(owner_state, world, tmp_path, segment_size=100)
    [segment] = await _segments(owner_state, world)
    path = tmp_path / segment.file_name
    if how == "file lost":
        path.unlink()
        expected = "archived segment 1 missing"
    else:
        _rewrite_first_line(path)
        expected = "archived segment 1 altered (file digest differs)"
    if how == "file and digest replaced":
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        blob = f"decode('{digest}', 'hex')" if db.kind == "postgres" else f"X'{digest}'"
        if db.kind == "postgres":
            unlock = ("ALTER TABLE access_log_segments DISABLE TRIGGER USER",)
            relock = ("ALTER TABLE access_log_segments ENABLE TRIGGER USER",)
        else:
            unlock = ("DROP TRIGGER access_log_segments_no_update",)
            relock = (
                "CREATE TRIGGER access_log_segments_no_update BEFORE UPDATE ON "
                "access_log_segments BEGIN SELECT RAISE(ABORT, 'append-only'); END",
            )
        await _owner_exec(
            db,
            *unlock,
            f"UPDATE access_log_segments SET file_sha256 = {blob} "
            f"WHERE tenant_id = '{_tid(db, world)}'",
            *relock,
        )
        expected = "entry altered (archived segment 1)"
    checked = await _verify(owner_state, world, tmp_path)
    assert not checked.result.ok
    assert checked.result.reason.startswith(expected), checked
    if how == "file and digest replaced":
        assert checked.result.broken_seq == 1


async def test_only_archived_entries_can_be_deleted(
    db: Database, client: httpx.AsyncClient, owner_state: AppState, world: World, tmp_path: Path
) -> None:
    token = await sign_in(client, world, "hq_admin")
    await _read_patients(client, token, 2)
    live = await entries(owner_state, world)
    # Not even the owner deletes an entry that no segment holds.
    with pytest.raises((DBAPIError, IntegrityError, OperationalError)):
        await _owner_exec(
            db, f"DELETE FROM access_log WHERE tenant_id = '{_tid(db, world)}' AND seq = 1"
        )
    assert len(await entries(owner_state, world)) == len(live)

    # A broken chain is not archived: the break must be found, not filed away.
    await _owner_exec(
        db,
        *_unlock(db),
        f"UPDATE access_log SET actor_id = 'x' WHERE tenant_id = '{_tid(db, world)}' AND seq = 2",
        *_relock(db),
    )
    await _retain(client, world)
    with pytest.raises(ArchiveError, match="chain broken at entry 2"):
        await _archive(owner_state, world, tmp_path)
    assert await _segments(owner_state, world) == []
    assert not list(tmp_path.iterdir())


async def test_retention_is_validated_and_kept_to_its_roles(
    client: httpx.AsyncClient, owner_state: AppState, world: World, tmp_path: Path
) -> None:
    admin = await sign_in(client, world, "hq_admin")
    too_short = await gql(client, RETENTION, {"d": 30}, token=admin)
    assert codes(too_short) == ["BAD_USER_INPUT"]
    assert "180" in too_short["errors"][0]["message"]
    auditor = await sign_in(client, world, "auditor")
    assert codes(await gql(client, RETENTION, {"d": 400}, token=auditor)) == ["FORBIDDEN"]
    doctor = await sign_in(client, world, "doctor")
    assert codes(await gql(client, ARCHIVE, token=doctor)) == ["FORBIDDEN"]
    seen = await gql(client, ARCHIVE, token=auditor)
    assert seen["data"]["accessLogArchive"] == {"retentionDays": None, "segments": []}
    # With no retention set nothing is archived, however old.
    assert (await _archive(owner_state, world, tmp_path, days_ahead=10_000)).entries == 0
    await _retain(client, world, 400)
    await _retain(client, world, None)
    assert (await _archive(owner_state, world, tmp_path, days_ahead=10_000)).entries == 0


async def test_other_tenants_segments_stay_apart(
    client: httpx.AsyncClient, owner_state: AppState, world: World, unique: str, tmp_path: Path
) -> None:
    other = await build_world(owner_state, f"ar2-{unique}")
    for each in (world, other):
        await _read_patients(client, await sign_in(client, each, "hq_admin"), 2)
    await _retain(client, world)
    await _archive(owner_state, world, tmp_path)
    assert await _segments(owner_state, world)
    theirs = await sign_in(client, other, "auditor")
    seen = await gql(client, ARCHIVE, token=theirs)
    assert seen["data"]["accessLogArchive"]["segments"] == []
    # Their chain is untouched and whole.
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, other.tenant_id)
        count = len((await s.scalars(select(AccessLogEntry))).all())
    checked = await _verify(owner_state, other, tmp_path)
    assert checked.result.ok and checked.result.entries == count and checked.segments == 0
