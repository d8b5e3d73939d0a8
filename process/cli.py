"""The `patientpool` command. Exit codes: 0 success, 1 a check failed, 2 bad usage or
configuration (always with a one-line reason on stderr)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from process.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="patientpool: the private patient pool API."
)
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants (clinic chains).")
keys_app = typer.Typer(no_args_is_help=True, help="Per-tenant data keys.")
audit_app = typer.Typer(no_args_is_help=True, help="The access log.")
campaigns_app = typer.Typer(no_args_is_help=True, help="Campaigns (群发): the sender.")
referrals_app = typer.Typer(no_args_is_help=True, help="Referral trees (转介绍).")
documents_app = typer.Typer(
    no_args_is_help=True, help="Trusted documents: the GraphQL operations clients publish."
)
staff_app = typer.Typer(no_args_is_help=True, help="A chain's staff.")
db_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL deployment.")
patients_app = typer.Typer(no_args_is_help=True, help="A chain's patients.")
wecom_app = typer.Typer(no_args_is_help=True, help="WeCom (企业微信): customer groups.")
app.add_typer(tenant_app, name="tenant")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(referrals_app, name="referrals")
app.add_typer(documents_app, name="documents")
app.add_typer(staff_app, name="staff")
app.add_typer(db_app, name="db")
app.add_typer(patients_app, name="patients")
app.add_typer(wecom_app, name="wecom")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the SQLite file and dev keys live.")
]
Host = Annotated[str, typer.Option("--host")]
GRACEFUL_SECONDS = 30
WORKER_HEALTHCHECK_SECONDS = 60
Port = Annotated[int, typer.Option("--port")]


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"patientpool: {message}", err=True)
    raise typer.Exit(code)


def settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    try:
        if data_dir is not None:
            overrides["data_dir"] = data_dir
        return load_settings(**overrides)
    except SettingsError as exc:
        fail(str(exc))


def _migrate(cfg: Settings) -> None:
    from api.documents import ManifestError
    from migrations.runner import upgrade
    from process.document_commands import push_project_operations
    from process.operator import owner_session
    from tenancy.deployment import DeploymentError

    if cfg.owner_database_url.startswith("sqlite"):
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        notes = upgrade(
            cfg.owner_database_url, app_role=cfg.deployment_app_role, app_login=cfg.app_login
        )
    except DeploymentError as exc:
        fail(f"migration failed: {exc}", 1)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, not a traceback
        fail(f"migration failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", 1)
    for note in notes:
        typer.echo(note, err=True)

    async def push() -> None:
        async with owner_session(cfg) as session, session.begin():
            await push_project_operations(session)

    try:
        asyncio.run(push())
    except ManifestError as exc:
        fail(f"frontend-schema/operations: {exc}", 1)


def _serve(cfg: Settings, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    from process.logs import log_config
    from process.serve import served_app

    try:
        # Built here even for several workers: a bad setting or key stops the command before
        # any worker starts, and development keys are written once, not raced for.
        application = served_app(cfg)
    except (SettingsError, ValueError) as exc:
        fail(str(exc))
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "log_config": log_config(fmt=cfg.log_lines),
        "access_log": False,
        # SIGTERM: stop accepting, finish the requests in flight (up to this long), then the
        # lifespan's shutdown closes the pool.
        "timeout_graceful_shutdown": GRACEFUL_SECONDS,
        # A worker must answer the supervisor's ping within this long, from its start on: a
        # worker still importing the app on a busy host would otherwise be killed and
        # replaced over and over (uvicorn's default is 5 s).
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS,
    }
    if workers == 1:
        uvicorn.run(application, **options)  # type: ignore[arg-type]
        return
    # Each worker process builds its own app from the (validated) environment, and writes its
    # metrics where /metrics of any worker reads them all. This process starts the workers,
    # so it empties the directory first: nothing of an earlier run is reported as current.
    metrics_dir = cfg.data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run("process.serve:app_from_environment", factory=True, workers=workers, **options)  # type: ignore[arg-type]


@app.command()
def migrate() -> None:
    """Upgrade the database to the newest schema (as the owner role on PostgreSQL)."""
    cfg = settings()
    _migrate(cfg)
    typer.echo("migrated to head")


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=64, help="Server processes (default: the cores)."),
    ] = None,
) -> None:
    """Serve the API with the configured database, in one or more processes."""
    _serve(settings(), host, port, workers or os.cpu_count() or 1)


@app.command()
def demo(data_dir: DataDir = None, host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Migrate a SQLite file under the data dir, load the demo chains if empty, and serve."""
    from process.demo import accounts_file, load_demo

    cfg = settings(data_dir, database_url=None, migration_database_url=None)
    if cfg.is_production:
        fail("demo refuses to run with PATIENTPOOL_ENV=production")
    _migrate(cfg)
    loaded = asyncio.run(load_demo(cfg, progress=lambda m: typer.echo(m, err=True)))
    typer.echo("demo chains loaded" if loaded else "demo chains already present")
    typer.echo(f"GraphQL: http://{host}:{port}/graphql")
    typer.echo(
        f"Demo sign-ins: patientpool demo-accounts --data-dir {cfg.data_dir}"
        f"  (also in {accounts_file(cfg)})"
    )
    _serve(cfg, host, port)


@app.command("demo-accounts")
def demo_accounts(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """The demo staff sign-ins: tenant slug, email, password, roles, branches."""
    from process.demo import accounts_file

    path = accounts_file(settings(data_dir))
    if not path.exists():
        fail(f"no demo loaded under {path.parent}; run `patientpool demo` first", 1)
    accounts = json.loads(path.read_text())
    if as_json:
        typer.echo(json.dumps(accounts, ensure_ascii=False, indent=2))
        return
    for a in accounts:
        typer.echo(
            f"{a['tenant']:<16} {a['email']:<34} {a['password']:<18} "
            f"{','.join(a['roles']):<16} {','.join(a['branches'])}"
        )


@tenant_app.command("create")
def tenant_create(
    slug: Annotated[str, typer.Option("--slug")],
    name: Annotated[str, typer.Option("--name")],
    admin_email: Annotated[str, typer.Option("--admin-email")],
    kind: Annotated[str, typer.Option("--kind")] = "other",
    branch_name: Annotated[
        str | None, typer.Option("--branch-name", help="Also create a first branch.")
    ] = None,
    branch_city: Annotated[str, typer.Option("--branch-city")] = "",
    branch_code: Annotated[str, typer.Option("--branch-code")] = "main",
) -> None:
    """Create a tenant, its keys and its first HQ admin (prints the admin's password once),
    optionally with a first branch."""
    from process.operator import create_tenant_command

    cfg = settings()
    try:
        created = asyncio.run(
            create_tenant_command(
                cfg, slug, name, admin_email, kind, branch_name, branch_city, branch_code
            )
        )
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"tenant {slug} created; HQ admin {admin_email} password: {created}")
    if branch_name is not None:
        typer.echo(f"first branch created with code {branch_code}")


@tenant_app.command("offboard")
def tenant_offboard(
    slug: Annotated[str, typer.Option("--slug")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where the encrypted archive goes (default: <data dir>/offboarding/S.ppa).",
        ),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, max=10000)] = 500,
) -> None:
    """A chain that leaves: export its data into one encrypted archive (the key is printed
    once, on stdout, and kept nowhere), then crypto-shred it and close its sign-in. Resumable:
    run it again after a stop; after the end it changes nothing."""
    from process.offboarding import offboard_command
    from tenancy.archive import ArchiveError
    from tenancy.keyring import CryptoError

    def emit_key(key: str) -> None:
        # stdout only, never a log: the one copy of the key there will ever be
        typer.echo(f"archive key (shown once, keep it with the archive's receiver): {key}")
        sys.stdout.flush()

    cfg = settings()
    if out is None:
        out = cfg.data_dir / "offboarding" / f"{slug}.ppa"
        out.parent.mkdir(parents=True, exist_ok=True)
        typer.echo(f"archive: {out}", err=True)
    try:
        message = asyncio.run(
            offboard_command(
                cfg, slug, out, lambda m: typer.echo(m, err=True), emit_key, batch=batch
            )
        )
    except ValueError as exc:
        fail(str(exc))
    except ArchiveError as exc:
        fail(f"the archive did not read back: {exc}; nothing was shredded, run again", 1)
    except CryptoError as exc:
        # e.g. the keys were destroyed already (`keys shred`): nothing sealed can be exported
        fail(f"the chain's data does not open: {exc}; nothing was shredded", 1)
    typer.echo(message)


@tenant_app.command("open-archive")
def tenant_open_archive(
    archive: Annotated[Path, typer.Argument(help="The archive `tenant offboard` wrote.")],
    key: Annotated[str, typer.Option("--key", help="The key `tenant offboard` printed.")],
    out: Annotated[Path, typer.Option("--out", help="A directory for the decrypted tables.")],
) -> None:
    """Decrypt an offboarding archive into a directory: manifest.json and one JSON-lines file
    per table. Nothing is written unless the whole archive authenticates."""
    from process.offboarding import open_archive
    from tenancy.archive import ArchiveError, key_from_text

    if not archive.is_file():
        fail(f"no archive at {archive}")
    try:
        raw_key = key_from_text(key)
    except ArchiveError as exc:
        fail(f"--key: {exc}")
    try:
        counts = open_archive(archive, raw_key, out)
    except ArchiveError as exc:
        fail(str(exc), 1)
    typer.echo(f"{out}: {sum(counts.values())} rows in {len(counts)} tables")


@staff_app.command("invite")
def staff_invite(
    tenant: Annotated[str, typer.Option("--tenant")],
    email: Annotated[str, typer.Option("--email")],
    role: Annotated[list[str], typer.Option("--role", help="A role; repeat for more.")],
    branch: Annotated[
        list[str] | None, typer.Option("--branch", help="A branch code; repeat for more.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
) -> None:
    """Invite a staff member; prints the one-time invitation token (valid 72 hours), to be
    used with the acceptInvitation mutation."""
    from process.operator import invite_command

    try:
        token = asyncio.run(invite_command(settings(), tenant, email, role, branch or [], name))
    except ValueError as exc:
        fail(str(exc))
    typer.echo(token)


@patients_app.command("import")
def patients_import(
    tenant: Annotated[str, typer.Option("--tenant")],
    file: Annotated[
        Path | None, typer.Argument(help="A CSV (UTF-8, GB18030) or XLSX file.")
    ] = None,
    mapping: Annotated[
        str | None, typer.Option("--mapping", help='JSON: {"header in the file": "field"}.')
    ] = None,
    on_match: Annotated[
        str, typer.Option("--on-match", help="skip, fill-empty or overwrite.")
    ] = "fill-empty",
    branch: Annotated[
        str, typer.Option("--branch", help="Branch code for rows without one.")
    ] = "main",
    rejected_out: Annotated[
        Path | None,
        typer.Option("--rejected-out", help="Write the rejected rows (with a reason) here."),
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Finish an import job that was cut off.")
    ] = None,
) -> None:
    """Bring patients in from a spreadsheet: a resumable job; prints the counts and each
    rejected row's number and reason."""
    import uuid

    from domain.imports.service import ImportOptions, OnMatch
    from process.patient_import import import_command, parse_mapping_text

    if (file is None) == (resume is None):
        fail("give a FILE, or --resume JOB_ID")
    if file is not None and not file.is_file():
        fail(f"no file {file}")
    try:
        options = ImportOptions(
            mapping=parse_mapping_text(mapping), on_match=OnMatch(on_match), branch=branch
        )
        job_id = None if resume is None else uuid.UUID(resume)
        outcome = asyncio.run(
            import_command(
                settings(),
                tenant,
                file,
                options,
                lambda m: typer.echo(m, err=True),
                job_id,
                rejected_out,
            )
        )
    except ValueError as exc:
        fail(str(exc))
    r = outcome.report
    typer.echo(
        f"job {outcome.job_id} {outcome.status}: created {r.created}, updated {r.updated}, "
        f"unchanged {r.unchanged}, rejected {r.rejected}"
    )
    for number, reason in r.rejections:
        typer.echo(f"row {number}: {reason}")


@keys_app.command("rotate")
def keys_rotate(tenant: Annotated[str, typer.Option("--tenant")]) -> None:
    """Add a new data key for a tenant; new writes use it at once."""
    from process.operator import rotate_command

    try:
        version = asyncio.run(rotate_command(settings(), tenant))
    except ValueError as exc:
        fail(str(exc))
    typer.echo(
        f"tenant {tenant}: data key version {version} is now active; "
        f"run `patientpool keys reencrypt --tenant {tenant}`"
    )


@keys_app.command("reencrypt")
def keys_reencrypt(
    tenant: Annotated[str, typer.Option("--tenant")],
    batch: Annotated[int, typer.Option("--batch", min=1, max=10000)] = 500,
    retire: Annotated[
        bool, typer.Option("--retire", help="Then delete the older data keys for good.")
    ] = False,
) -> None:
    """Re-encrypt a tenant's rows under its newest key; resumable, with progress."""
    from process.operator import reencrypt_command

    try:
        moved = asyncio.run(
            reencrypt_command(settings(), tenant, batch, lambda m: typer.echo(m, err=True), retire)
        )
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"tenant {tenant}: {moved} rows re-encrypted")


@keys_app.command("shred")
def keys_shred(
    tenant: Annotated[str, typer.Option("--tenant")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
) -> None:
    """Crypto-shred a tenant: delete its keys, so none of its sealed fields can be read again."""
    from process.operator import shred_command

    if not yes:
        fail("shredding cannot be undone: add --yes to confirm")
    try:
        asyncio.run(shred_command(settings(), tenant))
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"tenant {tenant}: keys destroyed; its sealed fields are unreadable for good")


@audit_app.command("verify")
def audit_verify(tenant: Annotated[str | None, typer.Option("--tenant")] = None) -> None:
    """Walk the access log's hash chain, archived segments included; exit 0 when whole, 1 at
    the first broken entry."""
    from process.operator import verify_command

    cfg = settings()
    try:
        results = asyncio.run(verify_command(cfg, tenant))
    except ValueError as exc:
        fail(str(exc))
    broken = False
    for slug, checked in results:
        result = checked.result
        archived = (
            f" ({checked.archived_entries} in {checked.segments} archived segments)"
            if checked.segments
            else ""
        )
        if result.ok:
            typer.echo(f"{slug}: ok, {result.entries} entries{archived}")
        else:
            broken = True
            typer.echo(f"{slug}: BROKEN at entry {result.broken_seq}: {result.reason}")
    if broken:
        raise typer.Exit(1)


@audit_app.command("archive")
def audit_archive(tenant: Annotated[str | None, typer.Option("--tenant")] = None) -> None:
    """Move entries older than each tenant's retention into archived segments (under
    PATIENTPOOL_AUDIT_ARCHIVE_DIR); resumable, and `audit verify` still proves the chain."""
    from auth.access_log_archive import ArchiveError
    from process.operator import archive_command

    cfg = settings()
    try:
        results = asyncio.run(archive_command(cfg, tenant, lambda m: typer.echo(m, err=True)))
    except ValueError as exc:
        fail(str(exc))
    except ArchiveError as exc:
        fail(str(exc), 1)
    for slug, result in results:
        typer.echo(f"{slug}: {result.entries} entries archived in {result.segments} segments")


@campaigns_app.command("send")
def campaigns_send(
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=1, max=3600)] = 15,
) -> None:
    """Queue campaigns whose window opened, send their outbox (SMS gateway, WeCom tasks) and
    read results back; runs until stopped (or one pass with --once, exit 1 if a tenant's pass
    failed). Safe to stop at any point and to run more than one."""
    from process.operator import campaigns_send_command

    try:
        clean = asyncio.run(
            campaigns_send_command(
                settings(), tenant, once, interval, lambda m: typer.echo(m, err=True)
            )
        )
    except ValueError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("stopped; the next run resumes from the outbox", err=True)
        return
    if not clean:
        fail("a tenant's pass failed (see above); the next run resumes from the outbox", 1)


@wecom_app.command("sync-groups")
def wecom_sync_groups(tenant: Annotated[str, typer.Option("--tenant")]) -> None:
    """Bring the tenant's customer groups (客户群) in line with WeCom: names, owners, members
    joined and left, groups dismissed; progress on stderr. Exit 1 when WeCom cannot be read
    (what was synced stays; run it again), 2 for an unknown tenant or no WeCom secret."""
    from domain.campaigns.backends import WecomError
    from process.group_sync import NotConfigured, sync_groups_command

    try:
        result = asyncio.run(
            sync_groups_command(settings(), tenant, lambda m: typer.echo(m, err=True))
        )
    except (ValueError, NotConfigured) as exc:
        fail(str(exc))
    except WecomError as exc:
        fail(f"WeCom could not be read ({exc.code}); what was synced stays, run it again", 1)
    typer.echo(
        f"tenant {tenant}: {result.groups} groups synced, {result.joined} members joined, "
        f"{result.left} left, {result.dismissed} groups dismissed"
    )


@referrals_app.command("figures")
def referrals_figures(
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only compare; exit 1 when any tenant's differ.")
    ] = False,
) -> None:
    """Compare each tenant's stored referral figures (subtree sizes, converted counts and
    values) with a recomputation from the links and paid totals, and rebuild those that
    differ (e.g. after links were imported with SQL). Holds the tenant's links and payments
    for the moment it takes."""
    from process.operator import referral_figures_command

    try:
        results = asyncio.run(
            referral_figures_command(settings(), tenant, check, lambda m: typer.echo(m, err=True))
        )
    except ValueError as exc:
        fail(str(exc))
    drifted = False
    for slug, checked in results:
        if not checked.drifted:
            typer.echo(f"{slug}: exact ({checked.referrers} referrers)")
            continue
        drifted = True
        done = "left as they are" if check else "rebuilt"
        typer.echo(f"{slug}: {checked.drifted} of {checked.referrers} referrers differed; {done}")
    if drifted and check:
        raise typer.Exit(1)


Client = Annotated[str, typer.Option("--client", help="The client that owns the documents.")]


@documents_app.command("push")
def documents_push(
    client: Client,
    manifest: Annotated[Path, typer.Argument(help="persisted-documents.json or Apollo's list.")],
    version: Annotated[str | None, typer.Option("--version", help="The client's version.")] = None,
) -> None:
    """Check every document of a manifest against the schema and its limits and, if all pass,
    trust them (old versions stay trusted until revoked)."""
    from api.documents import ManifestError
    from process.document_commands import push_manifest
    from process.operator import owner_session

    if not manifest.is_file():
        fail(f"no manifest at {manifest}")
    cfg = settings()

    async def run() -> int:
        async with owner_session(cfg) as session, session.begin():
            return await push_manifest(session, client, manifest, version)

    try:
        added = asyncio.run(run())
    except ManifestError as exc:
        for problem in exc.problems:
            typer.echo(f"refused: {problem}", err=True)
        fail(f"the manifest was not stored: {len(exc.problems)} document(s) failed", 1)
    typer.echo(f"{client}: {added} document(s) now trusted")


@documents_app.command("list")
def documents_list(
    client: Annotated[str | None, typer.Option("--client")] = None,
) -> None:
    """The trusted documents: client, version, hash, operations, and whether revoked."""
    from process.document_commands import list_documents
    from process.operator import owner_session

    cfg = settings()

    async def run() -> list:
        async with owner_session(cfg) as session:
            return await list_documents(session, client)

    for doc in asyncio.run(run()):
        names = ",".join(json.loads(doc.operations)) or "-"
        state = "revoked" if doc.revoked_at else "trusted"
        typer.echo(f"{doc.client:<20} {doc.client_version:<14} {doc.hash} {state:<8} {names}")


@documents_app.command("revoke")
def documents_revoke(
    client: Client,
    digest: Annotated[str | None, typer.Option("--hash", help="One document.")] = None,
    version: Annotated[str | None, typer.Option("--version", help="A client version.")] = None,
) -> None:
    """Stop trusting a client's documents: one (--hash), one version, or all of them."""
    from process.document_commands import revoke_documents
    from process.operator import owner_session

    cfg = settings()

    async def run() -> int:
        async with owner_session(cfg) as session, session.begin():
            return await revoke_documents(session, client, digest, version)

    count = asyncio.run(run())
    if count == 0:
        fail("no trusted document matched", 1)
    typer.echo(f"{client}: {count} document(s) revoked (every process within 30 s)")


@db_app.command("check")
def db_check() -> None:
    """What the PostgreSQL deployment gets wrong (as the app's login role), one line each;
    exit 1 if anything."""
    from process.operator import db_check_command

    cfg = settings()
    if not cfg.on_postgres:
        fail("db check needs PATIENTPOOL_DATABASE_URL on PostgreSQL")
    try:
        problems = asyncio.run(db_check_command(cfg))
    except Exception as exc:  # noqa: BLE001 - one line for the operator, not a traceback
        fail(f"db check could not run: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", 1)
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo("ok: least-privilege app role, forced row-level security, CONNECT closed")


@app.command("export-schema")
def export_schema(
    out: Annotated[Path, typer.Option("--out")] = Path("frontend-schema/schema.graphql"),
) -> None:
    """Write the GraphQL SDL for frontend developers."""
    from api.sdl import export_sdl

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(export_sdl())
    typer.echo(f"wrote {out}")


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        typer.echo(f"patientpool: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
