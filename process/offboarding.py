"""`patientpool tenant offboard` and `tenant open-archive`: a chain that leaves takes its data
along in one encrypted archive, and what stays behind is crypto-shredded.

The archive is JSON lines, sealed chunk by chunk as it is written (tenancy.archive) under a
fresh key that is printed once and kept nowhere: a manifest line, then one line per row
(`{"table": …, "row": {…}}`) of every tenant table the receiving chain can use, with the
patients' sealed fields decrypted under their names (`name`, `phone`, …), and an end line with
the row counts. Credentials (keys, password hashes, token digests, second-factor secrets, the
WeCom app's secrets) and the blind indexes stay behind: they open nothing at the receiver.

Resumable (domain.tenants.offboarding): the export restarts from the first row if a run
stopped before it finished (a key printed by a run that did not finish opens nothing useful,
and a key cannot be resumed without storing it); the shredding is one transaction.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from auth import access_log
from auth.access_log import AccessEvent, Action, Actor, RequestInfo
from domain.patients.models import SEALED_FIELDS
from domain.tenants import offboarding
from domain.tenants.offboarding import OffboardingState
from migrations.registry import target_metadata
from process.operator import owner_sessions, provider
from process.settings import Settings
from tenancy.archive import ArchiveError, ArchiveWriter, key_text, new_archive_key, open_chunks
from tenancy.keyring import DecryptionError, FieldCipher
from tenancy.keystore import load_cipher, shred_tenant_keys
from tenancy.orm import tenant_tables
from tenancy.session import tenant_session
from tenancy.table_rows import tenant_row_batches

FORMAT = "patientpool-offboarding/1"
ACTOR = Actor("system", "cli:tenant-offboard")

# Left behind: they authenticate or decrypt, and are worthless (or dangerous) elsewhere.
LEFT_BEHIND = frozenset(
    {
        "tenant_keys",
        "refresh_sessions",
        "service_tokens",
        "staff_tokens",
        "staff_recovery_codes",
        "staff_totp",
        "wecom_apps",
        "mini_program_apps",
        # work in progress of an import: sealed file chunks and rejected rows, no records
        "import_files",
        "import_chunks",
        "import_rejections",
    }
)
DROPPED_COLUMNS = {
    "staff_users": frozenset({"password_hash"}),
}
# Sealed columns the export opens: table → field names (`<name>_ct`, bound to the row's id).
# Any other sealed column (`*_ct`) or blind index (`*_bidx`) stays behind: after the shred
# nothing could open it, and an index is a keyed hash of the chain's identifiers.
SEALED = {
    "patients": tuple(SEALED_FIELDS),
    "stated_purposes": ("note", "flag_note"),
    "survey_answers": ("free_text",),  # JSON {question key: text}
}
# The row id sealed values are bound to, where it is not `id`.
ROW_ID = {"survey_answers": "delivery_id"}

# A test hook: called after each batch written (table, batches so far); raising stops the run
# as a kill would.
AfterBatch = Callable[[str, int], None]


@dataclass
class Exported:
    counts: dict[str, int] = field(default_factory=dict)
    patient_ids: list[uuid.UUID] = field(default_factory=list)
    integrity_failures: int = 0


def exported_tables() -> list[Table]:
    return [target_metadata.tables[t] for t in tenant_tables() if t not in LEFT_BEHIND]


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _row(table: str, row: Any, cipher: FieldCipher, done: Exported) -> dict[str, Any]:
    dropped = DROPPED_COLUMNS.get(table, frozenset())
    sealed = SEALED.get(table, ())
    sealed_columns = {f"{name}_ct" for name in sealed}
    out = {
        k: _plain(v)
        for k, v in row.items()
        if k not in dropped and k not in sealed_columns and not k.endswith(("_ct", "_bidx"))
    }
    for name in sealed:
        blob = row[f"{name}_ct"]
        value = None
        if blob is not None:
            try:
                row_id = row[ROW_ID.get(table, "id")]
                value = cipher.decrypt(blob, table=table, column=name, row_id=row_id)
            except DecryptionError:
                done.integrity_failures += 1  # tampered at rest: handed over as null, counted
        out[name] = value
    return out


async def _write_archive(
    session: AsyncSession,
    cipher: FieldCipher,
    raw: BinaryIO,
    key: bytes,
    tenant: dict[str, Any],
    batch: int,
    after_batch: AfterBatch | None,
    progress: Callable[[str], None],
) -> Exported:
    sealed = ArchiveWriter(raw, key)
    done = Exported()

    def line(obj: dict[str, Any]) -> None:
        sealed.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

    line({"format": FORMAT, "tenant": tenant})
    batches = 0
    for table in exported_tables():
        done.counts[table.name] = 0
        async for rows in tenant_row_batches(session, table, batch):
            for row in rows:
                line({"table": table.name, "row": _row(table.name, row, cipher, done)})
                if table.name == "patients":
                    done.patient_ids.append(row["id"])
            done.counts[table.name] += len(rows)
            batches += 1
            if after_batch is not None:
                after_batch(table.name, batches)
        progress(f"exported {table.name}: {done.counts[table.name]} rows")
    line({"end": {"rows": done.counts, "integrity_failures": done.integrity_failures}})
    sealed.close()
    return done


def read_archive(path: Path, key: bytes) -> tuple[dict[str, Any], dict[str, int]]:
    """Read an archive through once without keeping it: its manifest and its row counts per
    table, checked against its end line (ArchiveError if anything is off)."""
    counts: dict[str, int] = {}
    manifest: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    for obj in _lines(path, key):
        if "table" in obj:
            counts[obj["table"]] = counts.get(obj["table"], 0) + 1
        elif "format" in obj:
            manifest = obj
        elif "end" in obj:
            end = obj["end"]
    if manifest is None or end is None:
        raise ArchiveError("the archive has no manifest or no end")
    if {t: n for t, n in end["rows"].items() if n} != counts:
        raise ArchiveError("the archive's rows do not match its end line")
    return manifest, counts


def _lines(path: Path, key: bytes) -> Iterator[dict[str, Any]]:
    rest = b""
    with path.open("rb") as raw:
        for chunk in open_chunks(raw, key):
            rest += chunk
            *whole, rest = rest.split(b"\n")
            for piece in whole:
                yield json.loads(piece)
    if rest:
        raise ArchiveError("the archive ends in the middle of a line")


def open_archive(path: Path, key: bytes, out_dir: Path) -> dict[str, int]:
    """Decrypt an archive into `out_dir`: manifest.json and one `<table>.jsonl` per table (rows
    as JSON objects). The files are written only once the whole archive has authenticated: a
    first pass checks it without writing anything."""
    manifest, counts = read_archive(path, key)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").write_text(
        json.dumps({**manifest, "rows": counts}, ensure_ascii=False, indent=2) + "\n"
    )
    files: dict[str, Any] = {}
    try:
        for obj in _lines(path, key):
            if "table" in obj:
                name = obj["table"]
                if name not in files:
                    files[name] = (out_dir / f"{name}.jsonl").open("w", encoding="utf-8")
                files[name].write(json.dumps(obj["row"], ensure_ascii=False) + "\n")
    finally:
        for f in files.values():
            f.close()
    return counts


async def offboard_command(
    cfg: Settings,
    slug: str,
    out: Path,
    progress: Callable[[str], None],
    emit_key: Callable[[str], None],
    *,
    batch: int = 500,
    after_batch: AfterBatch | None = None,
) -> str:
    """Export, then shred; each step resumes from the tenant's offboarding state. The archive's
    key goes to `emit_key` once, after the archive is complete and read back, and before the
    state says exported (so no run can leave an exported archive whose key nobody saw)."""
    keys = provider(cfg)
    async with owner_sessions(cfg) as sessions:
        async with sessions() as session, session.begin():
            tenant = await offboarding.tenant_by_slug(session, slug)
            if tenant is None:
                raise ValueError(f"no tenant with slug {slug!r}")
            state = tenant.offboarding_state
            tenant_id = tenant.id
            about = {"id": str(tenant.id), "slug": tenant.slug, "name": tenant.name}
            if state == OffboardingState.SHREDDED:
                return f"tenant {slug}: already offboarded (shredded); nothing changed"
            if state != OffboardingState.EXPORTED:
                if not out.parent.is_dir():
                    raise ValueError(f"--out: no directory {out.parent}")
                if state is None and out.exists():
                    raise ValueError(f"--out: {out} exists; choose another path")
                # Sign-in closes here, before the first row is read.
                await offboarding.set_state(session, tenant, OffboardingState.EXPORTING)
        async with tenant_session(sessions, tenant_id) as session:
            if state != OffboardingState.EXPORTED:
                key = new_archive_key()
                partial = out.with_name(out.name + ".partial")
                async with session.begin():
                    cipher = await load_cipher(session, keys)
                    with partial.open("wb") as raw:
                        done = await _write_archive(
                            session, cipher, raw, key, about, batch, after_batch, progress
                        )
                        os.fsync(raw.fileno())
                # Read back with the key before anyone is given it, and before anything is shredded.
                _, counts = read_archive(partial, key)
                if counts != {t: n for t, n in done.counts.items() if n}:
                    raise ArchiveError("the archive read back does not hold what was written")
                os.replace(partial, out)
                emit_key(key_text(key))
                async with session.begin():
                    await offboarding.set_state(session, tenant, OffboardingState.EXPORTED)
                    await access_log.append(
                        session,
                        ACTOR,
                        RequestInfo(operation_name="tenant offboard"),
                        [
                            AccessEvent(
                                action=Action.EXPORT,
                                patient_ids=done.patient_ids,
                                field_groups=("contact", "health"),
                                reason=f"tenant.offboard.export Tenant:{tenant_id}",
                            )
                        ],
                    )
                progress(
                    f"archive {out}: {sum(done.counts.values())} rows"
                    + (
                        f", {done.integrity_failures} sealed values failed"
                        if done.integrity_failures
                        else ""
                    )
                )
            else:
                progress(f"tenant {slug}: archive already written (its key was printed then)")
            async with session.begin():
                await shred_tenant_keys(session)
                await offboarding.set_state(session, tenant, OffboardingState.SHREDDED)
                await access_log.append(
                    session,
                    ACTOR,
                    RequestInfo(operation_name="tenant offboard"),
                    [
                        AccessEvent(
                            action=Action.ADMIN,
                            patient_ids=[],
                            reason=f"tenant.offboard.shred Tenant:{tenant_id}",
                        )
                    ],
                )
    return f"tenant {slug}: offboarded; keys destroyed, its sealed fields are unreadable for good"
