"""Thin tasks: parse, call one `evidence` service, return.

Each is named after the service function it calls and registered under its name in
evidence/queue.py (the strings queued messages carry). They are shared tasks: this module
builds no Celery app; the worker's, made by workers.app.make_celery in the `evidence worker`
command, imports this module when it starts and so registers them. What the scheduler runs,
and how often, is workers/beat.py.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import urllib3.exceptions
from celery import shared_task
from celery.signals import worker_ready
from minio.error import ServerError
from sqlalchemy.exc import InterfaceError, OperationalError

from evidence import queue, workfiles
from evidence.config import get_settings
from evidence.context import Context
from evidence.errors import DiskFull, is_disk_full

log = logging.getLogger(__name__)
_ctx: Context | None = None


def context() -> Context:
    global _ctx
    if _ctx is None:
        _ctx = Context(get_settings())
    return _ctx


# Faults that clear by themselves: a database restarting or unreachable (OperationalError,
# InterfaceError: its connections are invalidated and the retry reconnects), an object store
# or network hiccup (OSError, urllib3's errors, an S3 5xx) and a full disk (DiskFull). Our
# own errors (a missing upload, a hash mismatch already recorded, a disposed clip) are final
# and never retried. The backoff is capped at 30 s so work resumes within a minute of the
# fault clearing; the 20 retries cover about ten minutes, after which the stalled-upload
# sweep takes over.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    OperationalError,
    InterfaceError,
    urllib3.exceptions.HTTPError,
    ServerError,
    DiskFull,
)
RETRY_TRANSIENT: dict[str, Any] = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 20,
}

F = TypeVar("F", bound=Callable[..., Any])


def disk_full_named(fn: F) -> F:
    """A full disk met anywhere in the task (our writes, SQLite) is raised as DiskFull, so
    the log says so in words and the retry policy applies."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DiskFull:
            raise
        except Exception as exc:
            if is_disk_full(exc):
                log.warning("%s: the disk is full; retrying with backoff", fn.__name__)
                raise DiskFull(str(exc)[:200]) from exc
            raise

    return run  # type: ignore[return-value]


@shared_task(
    name=queue.PROCESS_UPLOAD,
    bind=True,
    **RETRY_TRANSIENT,
)
@disk_full_named
def process_upload(self, upload_id: str) -> str:  # type: ignore[no-untyped-def]
    from evidence.ingest.service import process_upload as process

    last: dict[str, int] = {}

    def progress(kind: str, fraction: float) -> None:
        tenth = int(fraction * 10)
        if last.get(kind) != tenth:  # a log line per 10%, not per ffmpeg tick
            last[kind] = tenth
            log.info("upload %s: %s %d%%", upload_id, kind, tenth * 10)

    state = process(context(), upload_id, progress=progress)
    log.info("upload %s: %s", upload_id, state)
    return state


@shared_task(name=queue.REQUEUE_STALLED_UPLOADS)
def requeue_stalled_uploads(older_than_seconds: int = 600) -> int:
    """Re-enqueue uploads whose processing task was lost (run by the scheduler)."""
    from evidence.ingest.service import stalled_uploads

    ids = stalled_uploads(context(), dt.timedelta(seconds=older_than_seconds))
    for upload_id in ids:
        process_upload.delay(upload_id)
    return len(ids)


@shared_task(name=queue.REQUEUE_LOST_WORK)
def requeue_lost_work(older_than_seconds: int = 3600) -> int:
    """Queue again, through the outbox, bundles, redactions, accepted submissions and
    notifications whose task was lost (run by the scheduler; evidence/recovery.py). An hour:
    a job still running after that is rare, and one merely slow is only done twice."""
    from evidence.recovery import requeue_lost_work as requeue

    return len(requeue(context(), dt.timedelta(seconds=older_than_seconds)))


@shared_task(
    name=queue.BUILD_BUNDLE,
    bind=True,
    acks_late=True,  # a worker that dies mid-build leaves the message for another
    **RETRY_TRANSIENT,
)
@disk_full_named
def build_bundle(self, bundle_id: str) -> str:  # type: ignore[no-untyped-def]
    """Build one court bundle; safe to run twice (a ready bundle is left as it is)."""
    from evidence.bundles.service import build_bundle as build

    state = build(
        context(), bundle_id, progress=lambda pct: log.info("bundle %s: %d%%", bundle_id, pct)
    )
    log.info("bundle %s: %s", bundle_id, state)
    return state


@shared_task(name=queue.ABANDON_STALE_UPLOADS)
def abandon_stale_uploads() -> int:
    """Abort pending uploads no device has shown interest in for a long time (scheduled)."""
    from evidence.ingest.service import abandon_stale_uploads as abandon

    ids = abandon(context())
    if ids:
        log.info("abandoned %d stale pending uploads", len(ids))
    return len(ids)


@shared_task(
    name=queue.TIMESTAMP_IF_GROWN,
    # A TSA outage is worth retrying; a reply that does not verify is not (it is logged
    # and the next scheduled run tries again).
    autoretry_for=(OSError, ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=5,
)
def timestamp_if_grown() -> int | None:
    """RFC 3161-timestamp the latest checkpoint if the log grew (run by the scheduler)."""
    from evidence.errors import TimestampUnavailable
    from evidence.timestamps import timestamp_if_grown as timestamp

    try:
        stamp = timestamp(context())
    except TimestampUnavailable as e:
        raise ConnectionError(str(e)) from e  # retried with backoff
    if stamp is None:
        return None
    log.info("checkpoint %d timestamped by %s at %s", stamp.tree_size, stamp.tsa, stamp.gen_time)
    return stamp.tree_size


@shared_task(name=queue.RETENTION_SWEEP)
def retention_sweep() -> dict:
    """Apply policy changes, queue clips that fell due, carry out approved disposals."""
    from evidence.retention.service import sweep
    from evidence.submissions.service import dispose_rejected

    report = sweep(context())
    if report.queued or report.disposed or report.waiting:
        log.info("retention: %s", report)
    rejected = dispose_rejected(context())  # rejected public submissions past their rule
    if rejected:
        log.info("retention: %d rejected public submissions disposed of", len(rejected))
    return {
        "rejected_submissions_disposed": len(rejected),
        "rescheduled": report.rescheduled,
        "queued": report.queued,
        "auto_approved": report.auto_approved,
        "disposed": report.disposed,
        "waiting": len(report.waiting),
    }


@shared_task(name=queue.SCRUB)
def scrub() -> dict[str, int]:
    """Re-hash the next slice of stored objects (run by the scheduler; failures raise the
    alarm in the ledger, the clip's integrity, the log and /metrics, not as task errors)."""
    from evidence.scrub.service import scrub as run_scrub

    report = run_scrub(
        context(), cursor="scheduled", max_objects=get_settings().scrub_objects_per_run
    )
    log.info(
        "scrubbed %d objects (%d bytes) in %d batches, %d failures%s",
        report.checked,
        report.bytes,
        report.batches,
        len(report.failures),
        ", pass finished" if report.finished_pass else "",
    )
    return {"checked": report.checked, "bytes": report.bytes, "failures": len(report.failures)}


@shared_task(
    name=queue.MAKE_REDACTION,
    bind=True,
    acks_late=True,  # a worker that dies mid-encode leaves the message for another
    **RETRY_TRANSIENT,
)
@disk_full_named
def make_redaction(self, clip_id: str, kind: str) -> str:  # type: ignore[no-untyped-def]
    """Make one requested redaction (parameters read from its `redaction.requested` entry);
    safe to run twice (a redaction already recorded is left as it is)."""
    from evidence.redactions import make_redaction as make

    done = make(context(), clip_id, kind)
    log.info("clip %s: %s %s", clip_id, kind, done["state"])
    return str(done["state"])


@shared_task(
    name=queue.PROCESS_SUBMISSION,
    bind=True,
    acks_late=True,
    **RETRY_TRANSIENT,
)
@disk_full_named
def process_submission(self, clip_id: str) -> str:  # type: ignore[no-untyped-def]
    """Probe, proxy and thumbnail of an accepted public submission; safe to run twice."""
    from evidence.submissions.service import process_accepted

    state = process_accepted(context(), clip_id)
    log.info("public submission clip %s: %s", clip_id, state)
    return state


@shared_task(
    name=queue.MAKE_WATERMARKS,
    bind=True,
    acks_late=True,  # a worker that dies mid-encode leaves the message for another
    **RETRY_TRANSIENT,
)
@disk_full_named
def make_watermarks(self, share_id: str) -> int:  # type: ignore[no-untyped-def]
    """Make a share's watermarked copies; safe to run twice (copies made are left alone)."""
    from evidence.cases.watermarks import make_watermarks as make

    made = make(context(), share_id)
    log.info("share %s: %d watermarked copies made", share_id, len(made))
    return len(made)


def _work_root() -> Path:
    return get_settings().data_dir / "work"


@shared_task(name=queue.SWEEP_WORK_FILES)
def sweep_work_files() -> int:
    """Remove work directories of killed workers (also done when a worker starts)."""
    return workfiles.sweep(_work_root())


@worker_ready.connect
def _sweep_at_start(**_: Any) -> None:
    # Files only, no database: safe in the parent before it forks more children.
    workfiles.sweep(_work_root())


@shared_task(
    name=queue.SEND_NOTIFICATION,
    bind=True,
    acks_late=True,
    # A database that is restarting: the message stays queued, the task tries again (as
    # many times as the other tasks); SMTP's retries are counted below (smtp_max_retries).
    max_retries=20,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
)
def send_notification(self, notification_id: str) -> str:  # type: ignore[no-untyped-def]
    """E-mail one queued notification. A server that cannot take it now is tried again with
    backoff (1 s, 2 s, 4 s ... capped at 10 minutes); after the last retry, or at once on a
    permanent refusal, the notification is marked failed (logged, counted on /metrics). The
    event it tells of committed long before: nothing here can undo or hold it up."""
    from evidence import notifications

    ctx = context()
    try:
        return notifications.send(ctx, notification_id)
    except notifications.TemporaryFailure as exc:
        if self.request.retries >= ctx.settings.smtp_max_retries:
            return notifications.give_up(ctx, notification_id, str(exc))
        log.info("notification %s: %s; trying again", notification_id, exc)
        raise self.retry(
            exc=exc,
            countdown=min(600, 2**self.request.retries),
            max_retries=ctx.settings.smtp_max_retries,
        ) from None
