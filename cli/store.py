"""The store's data: `evidence db` (schema), `evidence storage` (the object store),
`evidence retention` and `evidence scrub`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from cli.common import context, fail
from evidence.config import get_settings
from evidence.errors import EvidenceError

if TYPE_CHECKING:
    from evidence.verify.report import Check

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
retention_app = typer.Typer(
    help="Retention: what falls due, and the disposal sweep.", no_args_is_help=True
)
storage_app = typer.Typer(
    help="Object store: create the bucket (Object Lock), check it.", no_args_is_help=True
)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every schema migration to the configured database."""
    from evidence.migrate import upgrade

    url = get_settings().resolved_database_url()
    upgrade(url)
    typer.echo(f"database at head: {url.split('@')[-1]}")


@db_app.command("grant-app-role")
def db_grant_app_role(
    role: Annotated[str, typer.Argument(help="the role the API and workers connect as")],
) -> None:
    """Give the application's PostgreSQL role its rights (rows only: no DDL, append-only
    ledger tables), connected as the owner that ran `evidence db upgrade`. Run it after
    every upgrade (docs/deploy.md, "Database roles")."""
    from evidence.db_roles import grant_app_role

    url = get_settings().resolved_database_url()
    try:
        grants = grant_app_role(url, role)
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"{role}: rows of {len(grants.read_write)} tables; read and append only on "
        f"{', '.join(grants.append_only)}; no DDL"
    )


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop always returns


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
    from evidence.scrub.service import RESTORE_HINT, Failure, ScrubReport
    from evidence.scrub.service import scrub as run_scrub

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
            context(),
            max_objects=max_objects,
            batch_size=batch_size,
            rate_mb_per_s=rate,
            progress=progress,
        )
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    except StorageUnreachable as exc:
        raise fail(
            f"scrub stopped, the storage is unreachable: {exc}. No object was "
            "recorded as failed; run `evidence scrub` again when it is back"
        ) from None
    typer.echo(
        f"checked {report.checked} objects ({_human(report.bytes)}) in {report.batches} "
        f"batches: {len(report.failures)} failures"
        + (f", {len(report.restored)} restored" if report.restored else "")
    )
    if report.failures:
        raise fail(
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
        raise fail(f"{what} FAILED: {bad[0].name}: {bad[0].detail}")
    typer.echo(f"OK: {what}: the object store is ready")


@retention_app.command("schedule")
def retention_schedule(
    days: Annotated[int, typer.Option(help="Show what falls due within this many days.")] = 90,
) -> None:
    """What would be disposed of (or reviewed) and when. Changes nothing."""
    from evidence.retention.service import due_within

    rows = due_within(context(), within_days=days, limit=5000)
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

    locked, held = relock_all(context())
    typer.echo(f"locked {locked} original(s) until their retention dates; {held} under legal hold")


@retention_app.command("sweep")
def retention_sweep() -> None:
    """Run the scheduler's retention sweep now: apply policy changes, queue due clips,
    carry out approved disposals (the same as the scheduled job)."""
    from evidence.retention.service import sweep

    report = sweep(context())
    typer.echo(
        f"rescheduled {report.rescheduled}, queued {report.queued} "
        f"({report.auto_approved} approved by policy), disposed of {report.disposed}, "
        f"waiting {len(report.waiting)}"
    )
    if report.waiting:
        raise fail(
            "some approved disposals could not be carried out (storage lock); "
            "see GET /api/v1/disposals?state=approved for the reason"
        )
