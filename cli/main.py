"""The `evidence` command line (Typer). Commands are thin: parse, call one service, print."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from evidence.config import Settings, get_settings
from evidence.errors import EvidenceError

if TYPE_CHECKING:
    from evidence.verify.report import Check

app = typer.Typer(
    help="Open evidence store for body-worn video.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
admin = typer.Typer(help="Users, devices and the camera register.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
verify = typer.Typer(help="Offline verification anyone can run.", no_args_is_help=True)
app.add_typer(admin, name="admin")
app.add_typer(db_app, name="db")
app.add_typer(verify, name="verify")
retention_app = typer.Typer(
    help="Retention: what falls due, and the disposal sweep.", no_args_is_help=True
)
app.add_typer(retention_app, name="retention")
storage_app = typer.Typer(
    help="Object store: create the bucket (Object Lock), check it.", no_args_is_help=True
)
app.add_typer(storage_app, name="storage")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _context(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    """The store's context, after checking the schema is current (a clear error if not)."""
    from evidence.context import Context
    from evidence.migrate import check_current

    settings = settings or get_settings()
    try:
        check_current(settings.resolved_database_url())
    except EvidenceError as exc:
        raise _fail(str(exc)) from None
    return Context(settings)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every schema migration to the configured database."""
    from evidence.migrate import upgrade

    url = get_settings().resolved_database_url()
    upgrade(url)
    typer.echo(f"database at head: {url.split('@')[-1]}")


@admin.command("create-user")
def create_user(
    name: str,
    role: Annotated[str, typer.Option(help="officer, evidence_officer, cps, auditor or admin")],
    officer_id: Annotated[
        Optional[str], typer.Option(help="collar number linking an officer to their clips")
    ] = None,
    full_name: Annotated[
        Optional[str],
        typer.Option(
            "--name", help="the person's name as documents print it, e.g. 'PC Jane Brown'"
        ),
    ] = None,
) -> None:
    """Create a user; the one-time enrolment link they choose their password with is
    printed alone on the last line. Only the very first account of an empty store, an
    admin, is given a password here (read from stdin, or prompted for on a terminal)."""
    from evidence.accounts.service import bootstrap_allowed, invite_user
    from evidence.accounts.service import create_user as create

    ctx = _context()
    try:
        if role == "admin" and bootstrap_allowed(ctx.ledger):
            if sys.stdin.isatty():
                password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
            else:
                password = sys.stdin.readline().rstrip("\n")
            user = create(
                ctx.ledger, name, role, password, officer_id=officer_id, full_name=full_name
            )
            typer.echo(f"created the first administrator {user.username} id {user.id}")
            return
        new = invite_user(
            ctx.ledger, ctx.settings, name, role, officer_id=officer_id, full_name=full_name
        )
    except EvidenceError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"created user {name} ({new.user['role']}) id {new.user['id']}")
    typer.echo(
        f"enrolment link (shown once, valid until {new.expires_at}; give it to {name}, "
        "who opens it to choose their password):",
        err=True,
    )
    typer.echo(new.enrolment_url)


def _echo_bundle_key(ctx) -> None:  # type: ignore[no-untyped-def]
    from evidence.bundles import keys
    from evidence.bundles.service import signing_key_pem

    pem = signing_key_pem(ctx).encode()
    typer.echo(
        f"bundle signing key: {keys.key_id(pem)} "
        f"(PEM: {(ctx.settings.secrets_dir() / keys.PUBLIC_NAME).resolve()}; "
        "published at /api/v1/bundles/key, every key used at /api/v1/bundles/keys)"
    )


@admin.command("rotate-key")
def rotate_key(
    which: Annotated[str, typer.Argument(help="which key: bundle (the bundle-signing key)")],
) -> None:
    """Start signing bundles with a new key. The old key's validity ends now; its public half
    stays published (GET /api/v1/bundles/keys) so older bundles still verify, its private
    half is moved to keys/retired/ (docs/bundles.md says what to do with it)."""
    from evidence.bundles.service import rotate_signing_key

    if which != "bundle":
        raise _fail(
            f"cannot rotate {which!r}: only the bundle key rotates this way "
            "(the ledger key is the log's identity: every checkpoint a court holds names it)"
        )
    ctx = _context()
    rotation = rotate_signing_key(ctx, actor="system:cli")
    typer.echo(
        f"bundle key rotated at {rotation.at}: {rotation.old_key_id} -> {rotation.new_key_id}"
    )
    typer.echo(
        f"the old private key is at {rotation.retired_private_key}: it signs nothing more; "
        "keep it offline or destroy it under the force's key policy (docs/bundles.md)"
    )
    _echo_bundle_key(ctx)


@admin.command("create-device")
def create_device(
    name: str,
    kind: Annotated[str, typer.Option(help="dock or camera")] = "dock",
) -> None:
    """Create a device; its key is printed once, alone on the last line."""
    from evidence.accounts.service import create_device as create

    try:
        new = create(_context().ledger, name, kind=kind)
    except EvidenceError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"created {new.device.kind} {new.device.name} id {new.device.id}")
    typer.echo("device key (shown once, store it on the dock now):", err=True)
    typer.echo(new.key)


@admin.command("register-camera")
def register_camera(
    serial: str,
    make: Annotated[Optional[str], typer.Option(help="e.g. Axon")] = None,
    model: Annotated[Optional[str], typer.Option(help="e.g. Body 3")] = None,
) -> None:
    """Add a camera to the register (docs/cameras.md)."""
    from evidence.cameras import service

    try:
        camera = service.register_camera(_context(), None, serial, make=make, model=model)
    except EvidenceError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"registered camera {camera['serial']}")


@admin.command("assign-camera")
def assign_camera(
    serial: str,
    officer_id: Annotated[str, typer.Option(help="the officer's collar number")],
    from_: Annotated[
        Optional[str],
        typer.Option("--from", help="start, ISO 8601 (default: now; no zone means UTC)"),
    ] = None,
    to: Annotated[
        Optional[str],
        typer.Option(
            help="end, ISO 8601: a pool checkout for a shift; without it, a personal issue"
        ),
    ] = None,
) -> None:
    """Issue a camera to an officer: personal (no --to) or a pool checkout (--to)."""
    from evidence.cameras import service

    kind = "pool" if to is not None else "personal"
    try:
        a = service.assign(
            _context(),
            None,
            serial,
            officer_id=officer_id,
            kind=kind,
            starts_at=_iso_time(from_, "--from"),
            ends_at=_iso_time(to, "--to"),
        )
    except EvidenceError as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"assigned camera {a['camera_serial']} to officer {a['officer_id']}: "
        f"{a['describe']} (assignment {a['id']})"
    )


def _iso_time(text: str | None, option: str):  # type: ignore[no-untyped-def]
    """ISO 8601 text as an aware datetime; without a zone it is UTC, as the register keeps."""
    import datetime as dt

    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"{option} must be an ISO 8601 time, e.g. 2026-12-01T07:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@admin.command("cameras")
def cameras() -> None:
    """The register: every camera, its state and who holds it now."""
    from evidence.cameras import service

    try:
        items = service.list_cameras(_context(), None)
    except EvidenceError as exc:
        raise _fail(str(exc)) from None
    if not items:
        typer.echo("no cameras in the register (evidence admin register-camera SERIAL)")
    for c in items:
        what = " ".join(x for x in (c["make"], c["model"]) if x) or "unknown make"
        holder = c["holder"]
        held = (
            f"held by {holder['officer_id']} ({holder['describe']})" if holder else "not assigned"
        )
        typer.echo(f"{c['serial']}\t{what}\t{c['state']}\t{held}")


@admin.command("enable-totp")
def enable_totp(name: str) -> None:
    """Give a user a new TOTP secret (two-factor sign-in); the secret is printed once."""
    from evidence.identity import set_totp

    try:
        enrolment = set_totp(_context(), name)
    except EvidenceError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"two-factor sign-in enabled for {name}; from now on sign-in needs a code")
    typer.echo(
        "add this to the user's authenticator app (shown once; a QR code of the "
        "otpauth:// line works too):",
        err=True,
    )
    typer.echo(f"secret: {enrolment.secret}")
    typer.echo(enrolment.uri)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Run the API alone (production: run `evidence db upgrade` first)."""
    _context()
    _run_api(host, port)


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(help="worker processes (a transcode takes a core)")
    ] = 0,
    beat: Annotated[bool, typer.Option(help="also run the scheduler in this process")] = False,
    hostname: Annotated[Optional[str], typer.Option(help="worker node name, e.g. w1@%h")] = None,
) -> None:
    """Run a Celery worker alone (production: as many as you like, on many machines)."""
    _context()
    from evidence.queue import QUEUE
    from workers.app import make_celery

    settings = get_settings()
    celery = make_celery(settings)  # this process's one app; it registers the tasks at start
    argv = [
        "worker",
        "--loglevel=INFO",
        f"--queues={QUEUE}",
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    if beat:
        argv += ["--beat", f"--schedule={settings.data_dir.resolve()}/beat-schedule"]
    celery.worker_main(argv)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """The embedded profile in one command: migrate, then run the API, a worker and the scheduler.

    SIGTERM or Ctrl-C stops everything it started, in order: the API stops taking requests
    and finishes those in flight, then the worker finishes its task (or, after a grace
    period, is stopped with it: the task is done again later), its scheduler with it."""
    from evidence.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url())
    ctx = _context(settings)
    typer.echo(f"data directory: {settings.data_dir.resolve()}")
    typer.echo(f"ledger verifier key: {ctx.ledger.verifier_key}")
    _echo_bundle_key(ctx)
    from evidence.outbox import resume_unfinished_uploads

    resumed = resume_unfinished_uploads(ctx)
    if resumed:
        typer.echo(f"resuming {resumed} upload(s) a stopped worker had not finished")
    stop = _StopRequest()
    stop.install()
    worker_proc = _start_worker_group()
    typer.echo(f"worker: pid {worker_proc.pid}")
    typer.echo(f"sign in: http://{host}:{port}/ui  (create users with: evidence admin create-user)")
    typer.echo(f"API: http://{host}:{port}/api/v1  (OpenAPI: http://{host}:{port}/openapi.json)")
    served = _served_settings(host, port).public_url
    if served != settings.public_url:
        # `evidence admin` runs in another process and cannot know this port: its enrolment
        # links would send people to the wrong address.
        typer.echo(
            f"note: `evidence admin` prints enrolment links for {settings.public_url}; "
            f"run it with EVIDENCE_PUBLIC_URL={served}",
            err=True,
        )
    try:
        if not stop.requested:
            _run_api(host, port)
    finally:
        _stop_worker_group(worker_proc, stop)
    typer.echo("stopped: API, worker and scheduler", err=True)


# How long `evidence up` lets its worker finish the task in hand once asked to stop; then
# the worker and everything under it (prefork children, ffmpeg) are killed. Tasks are
# acknowledged late and idempotent, so an aborted one is simply done again later.
WORKER_STOP_GRACE_SECONDS = 20.0


class _StopRequest:
    """SIGTERM and SIGINT while `up` runs: uvicorn takes them while it serves and hands them
    back when it has stopped; here they only ask for the ordered stop (a second one asks to
    hurry), instead of killing `up` and orphaning its worker."""

    def __init__(self) -> None:
        self.requested = 0

    def install(self) -> None:
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, _sig: int, _frame: object) -> None:
        self.requested += 1


def _start_worker_group():  # type: ignore[no-untyped-def]
    """The worker in a process group of its own, so that stopping it reaches every process
    under it, and so that the terminal's Ctrl-C reaches `up` alone (which stops it in order).
    If `up` itself is killed, the kernel sends the worker SIGTERM (PR_SET_PDEATHSIG)."""
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--concurrency=1", "--beat"],
        start_new_session=True,
        preexec_fn=_term_with_parent(),  # noqa: PLW1509
    )


def _term_with_parent():  # type: ignore[no-untyped-def]
    import signal

    from evidence.media import _libc_prctl

    prctl = _libc_prctl()  # resolved here, in the parent: the child only makes the call
    if prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return hook


def _stop_worker_group(proc, stop: _StopRequest) -> None:  # type: ignore[no-untyped-def]
    """Warm shutdown of the worker, then, after the grace period or a second signal, SIGKILL
    to its whole process group: either way nothing it started outlives `up`."""
    import signal
    import subprocess
    import time

    asked = stop.requested
    if proc.poll() is None:
        typer.echo("stopping the worker (it finishes the task in hand)...", err=True)
        # The worker's main process alone: Celery's warm shutdown lets the task in hand
        # (and its ffmpeg) finish, and stops the scheduler.
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_GRACE_SECONDS
        while time.monotonic() < deadline and stop.requested == asked:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
    _signal_group(proc.pid, signal.SIGKILL)  # stragglers: prefork children, ffmpeg
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty: everything has stopped


def _run_api(host: str, port: int) -> None:
    import uvicorn

    from api.app import create_app

    uvicorn.run(create_app(_served_settings(host, port)), host=host, port=port, log_level="info")


def _served_settings(host: str, port: int) -> Settings:
    """Presigned URLs must point where this server listens, unless EVIDENCE_PUBLIC_URL says
    otherwise (a proxy or a DNS name in front of it)."""
    settings = get_settings()
    if "public_url" in settings.model_fields_set:
        return settings
    if host in ("0.0.0.0", "::"):
        typer.echo(
            "note: listening on all addresses; set EVIDENCE_PUBLIC_URL to the address "
            "docks use to reach this server",
            err=True,
        )
        host = "127.0.0.1"
    return settings.model_copy(update={"public_url": f"http://{host}:{port}"})


@app.command()
def dock(
    directory: Annotated[
        Optional[Path],
        typer.Argument(help="the docked camera's storage (recursively); or use --watch"),
    ] = None,
    api: Annotated[
        str,
        typer.Option(
            envvar="EVIDENCE_API_URL", help="the evidence API's base URL, e.g. http://host:8000"
        ),
    ] = "",
    device_key: Annotated[
        str,
        typer.Option(
            envvar="EVIDENCE_DEVICE_KEY",
            show_envvar=True,
            help="this dock's key (prefer the environment variable: arguments show in process lists)",
        ),
    ] = "",
    jobs: Annotated[int, typer.Option(min=1, max=32, help="clips uploaded in parallel")] = 2,
    retries: Annotated[
        int, typer.Option(min=1, max=20, help="attempts per request before a clip fails")
    ] = 5,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="seconds to wait for the server to verify the clips sent (0: do not "
            "wait; unverified clips are confirmed by the next run)",
        ),
    ] = 600.0,
    wait_for_api: Annotated[
        float,
        typer.Option(
            min=0,
            help="seconds to wait out an API or object store that is down, restarting "
            "or out of storage before a clip fails",
        ),
    ] = 120.0,
    state_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="where the agent keeps its state on this machine (never on the camera); default "
            "$EVIDENCE_DOCK_STATE_DIR, else $XDG_STATE_HOME/evidence-dock"
        ),
    ] = None,
    clear_after_verified: Annotated[
        bool,
        typer.Option(help="delete each clip from the camera once the server verified its original"),
    ] = False,
    watch: Annotated[
        Optional[Path],
        typer.Option(
            help="run until stopped, docking each camera mounted (or folder) under this root"
        ),
    ] = None,
    poll: Annotated[float, typer.Option(help="--watch: seconds between looks")] = 2.0,
    settle: Annotated[
        float, typer.Option(help="--watch: seconds a new camera must stay unchanged before docking")
    ] = 3.0,
    retry_every: Annotated[
        float, typer.Option(help="--watch: seconds between attempts at a camera that failed")
    ] = 60.0,
) -> None:
    """Upload every clip in DIRECTORY (or of each camera under --watch ROOT): resumable,
    idempotent; exit 1 if any clip failed. The same agent as the `evidence-dock` command."""
    from evidence_dock.cli import main as dock_main

    argv = [str(directory)] if directory is not None else []
    argv += [
        "--api",
        api,
        "--device-key",
        device_key,
        "--jobs",
        str(jobs),
        "--retries",
        str(retries),
        "--wait",
        str(wait),
        "--wait-for-api",
        str(wait_for_api),
        "--poll",
        str(poll),
        "--settle",
        str(settle),
        "--retry-every",
        str(retry_every),
    ]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    if clear_after_verified:
        argv.append("--clear-after-verified")
    if watch is not None:
        argv += ["--watch", str(watch)]
    try:
        code = dock_main(argv)
    except SystemExit as exc:  # argparse's exit 2, its message already printed
        code = exc.code if isinstance(exc.code, int) else 2
    if code:
        raise typer.Exit(code)


def _read_key(key: str | None) -> str | None:
    if key and key.startswith("@"):
        return Path(key[1:]).read_text().strip()
    return key


@verify.command("ledger")
def verify_ledger_cmd(
    api: Annotated[Optional[str], typer.Option(help="base URL of an evidence API")] = None,
    db: Annotated[Optional[str], typer.Option(help="database URL to read directly")] = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(help="a checkpoint saved earlier: prove the log only grew since"),
    ] = None,
    key: Annotated[Optional[str], typer.Option(help="the verifier key string, or @FILE")] = None,
    token: Annotated[
        Optional[str], typer.Option(envvar="EVIDENCE_TOKEN", help="bearer token for --api")
    ] = None,
) -> None:
    """Recompute every leaf, the chain and the root; check signatures and consistency."""
    import httpx

    from evidence.verify.ledger import ApiSource, DatabaseSource, verify_ledger
    from evidence.verify.report import Report

    if (api is None) == (db is None):
        raise _fail("give exactly one of --api URL or --db URL", 2)
    pinned = _read_key(key)
    if db is not None and pinned is None:
        pub = get_settings().resolved_ledger_key_path().with_suffix(".pub")
        if pub.exists():
            pinned = pub.read_text().strip()
    source = ApiSource(api, token) if api else DatabaseSource(db, pinned)  # type: ignore[arg-type]
    saved = checkpoint.read_text() if checkpoint else None
    report = Report(echo=typer.echo)
    try:
        verify_ledger(source, report, key=pinned, saved_checkpoint=saved)
    except EvidenceError as exc:
        report.add("ledger readable", False, str(exc))
    except (OSError, httpx.HTTPError) as exc:
        report.add("ledger readable", False, f"{exc}; check the URL and that the server is up")
    if report.ok:
        typer.echo("OK: the ledger verifies")
        return
    first = report.failures[0] if report.failures else None
    raise _fail(
        f"ledger verification FAILED: {first.name}: {first.detail}" if first else "nothing checked"
    )


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop always returns


@app.command()
def scrub(
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            min=1, max=10000, help="objects per ledger entry (default EVIDENCE_SCRUB_BATCH_SIZE)"
        ),
    ] = None,
    rate: Annotated[
        Optional[float],
        typer.Option(
            min=0.001, help="read at most this many MB/s (default EVIDENCE_SCRUB_RATE_MB_PER_S)"
        ),
    ] = None,
    max_objects: Annotated[
        Optional[int],
        typer.Option(min=1, help="stop after this many objects (default: a full pass)"),
    ] = None,
) -> None:
    """Re-hash every stored object against its recorded SHA-256; exit 1 if any failed."""
    from evidence.errors import StorageUnreachable
    from evidence.scrub import RESTORE_HINT, Failure, ScrubReport
    from evidence.scrub import scrub as run_scrub

    def progress(report: ScrubReport, failures: list[Failure]) -> None:
        for f in failures:
            owner = f"clip {f.clip_id}" if f.clip_id else f"bundle {f.bundle_id}"
            detail = "" if f.problem == "missing" else f" (expected {f.expected}, got {f.actual})"
            typer.echo(f"FAILED {f.key}: {owner}: {f.problem}{detail}")
        typer.echo(
            f"scrubbed {report.checked}/{report.total} objects, {_human(report.bytes)}, "
            f"{len(report.failures)} failures",
            err=True,
        )

    try:
        report = run_scrub(
            _context(),
            max_objects=max_objects,
            batch_size=batch_size,
            rate_mb_per_s=rate,
            progress=progress,
        )
    except EvidenceError as exc:
        raise _fail(str(exc)) from None
    except StorageUnreachable as exc:
        raise _fail(
            f"scrub stopped, the storage is unreachable: {exc}. No object was "
            "recorded as failed; run `evidence scrub` again when it is back"
        ) from None
    typer.echo(
        f"checked {report.checked} objects ({_human(report.bytes)}) in {report.batches} "
        f"batches: {len(report.failures)} failures"
        + (f", {len(report.restored)} restored" if report.restored else "")
    )
    if report.failures:
        raise _fail(
            f"{len(report.failures)} stored objects failed the integrity check; {RESTORE_HINT}"
        )
    typer.echo(
        "OK: every stored object matches its recorded SHA-256"
        if report.finished_pass
        else "OK so far (stopped at --max-objects)"
    )


@storage_app.command("init")
def storage_init() -> None:
    """Create the configured bucket with Object Lock (and so versioning) if missing, then
    check it. Idempotent; refuses a bucket without Object Lock."""
    from evidence.storage.setup import init_storage

    _report_storage(init_storage(get_settings()), "storage init")


@storage_app.command("check")
def storage_check() -> None:
    """Read-only: bucket exists, versioning Enabled, Object Lock enabled (or, on the local
    backend, the directory is writable). One line per check; exit 1 naming the first failure."""
    from evidence.storage.setup import check_storage

    _report_storage(check_storage(get_settings()), "storage check")


def _report_storage(checks: list[Check], what: str) -> None:
    from evidence.storage.setup import failures

    for check in checks:
        typer.echo(check.line())
    bad = failures(checks)
    if bad:
        raise _fail(f"{what} FAILED: {bad[0].name}: {bad[0].detail}")
    typer.echo(f"OK: {what}: the object store is ready")


def main() -> None:  # pragma: no cover - console entry point
    app()


@verify.command("bundle")
def verify_bundle_cmd(
    file: Annotated[Path, typer.Argument(help="the bundle ZIP")],
    key: Annotated[
        Optional[str], typer.Option(help="the force's ledger verifier key, or @FILE")
    ] = None,
    bundle_key: Annotated[
        Optional[Path], typer.Option(help="the force's published bundle-signing key (PEM)")
    ] = None,
    tsa_ca: Annotated[
        Optional[Path],
        typer.Option(help="the TSA's root certificate (PEM), to check ledger/checkpoint.tsr"),
    ] = None,
) -> None:
    """Check a court bundle offline: hashes, signatures, inclusion proofs, exhibits."""
    from evidence.verify.bundle import verify_bundle
    from evidence.verify.report import Report

    report = Report(echo=typer.echo)
    verify_bundle(
        file,
        report,
        ledger_key=_read_key(key),
        bundle_key_pem=bundle_key.read_bytes() if bundle_key else None,
        tsa_ca_pem=tsa_ca.read_bytes() if tsa_ca else None,
    )
    if report.ok:
        typer.echo("OK: the bundle verifies")
        return
    first = report.failures[0] if report.failures else None
    raise _fail(
        f"bundle verification FAILED: {first.name}: {first.detail}" if first else "nothing checked"
    )


@retention_app.command("schedule")
def retention_schedule(
    days: Annotated[int, typer.Option(help="Show what falls due within this many days.")] = 90,
) -> None:
    """What would be disposed of (or reviewed) and when. Changes nothing."""
    from evidence.retention.service import due_within

    rows = due_within(_context(), within_days=days, limit=5000)
    for r in rows:
        typer.echo(
            f"{r['retain_until']}  {r['clip_id']}  {r['filename'] or '-'}  "
            f"[{r['rule']}]  {r['outcome']}"
        )
    typer.echo(f"{len(rows)} clip(s) fall due within {days} days", err=True)


@retention_app.command("relock")
def retention_relock() -> None:
    """Re-apply every original's Object Lock and legal hold from the database (after a
    restore into a new bucket with a copy tool that drops retention; docs/backup.md)."""
    from evidence.retention.service import relock_all

    locked, held = relock_all(_context())
    typer.echo(f"locked {locked} original(s) until their retention dates; {held} under legal hold")


@retention_app.command("sweep")
def retention_sweep() -> None:
    """Run the scheduler's retention sweep now: apply policy changes, queue due clips,
    carry out approved disposals (the same as the scheduled job)."""
    from evidence.retention.service import sweep

    report = sweep(_context())
    typer.echo(
        f"rescheduled {report.rescheduled}, queued {report.queued} "
        f"({report.auto_approved} approved by policy), disposed of {report.disposed}, "
        f"waiting {len(report.waiting)}"
    )
    if report.waiting:
        raise _fail(
            "some approved disposals could not be carried out (storage lock); "
            "see GET /api/v1/disposals?state=approved for the reason"
        )
