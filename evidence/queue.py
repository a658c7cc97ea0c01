"""The task queues' names, the name of every task, and which queue each task goes to.

The API, the services and the scheduler never run a task: they send one by name (the
services through the outbox, evidence/outbox.py; the scheduler from its schedule,
workers/beat.py), and the workers (workers/tasks.py) register a task under each name. These
strings travel in queued messages and in outbox rows, so they never change: a renamed task
would strand the work already queued under its old name. (Some predate the Python names of
the tasks, which follow the service function each calls.)

Four queues, so that long work never holds up short work that people wait for: a scrub or a
bundle build of hours must not leave a docked clip unverified behind it (docs/deploy.md, the
production profile). ROUTES is the one table; workers/app.py hands it to Celery as its
task_routes, and `evidence worker --queues` picks which queues a worker consumes.

Plain strings, no Celery: the core names the work and leaves the sending to its caller.
"""

from __future__ import annotations

# The queues. Each is a Redis list of that name (the backlog KEDA scales a Deployment on).
INGEST = "ingest"  # uploads: verify, store, hand on to media (what a dock waits for)
MEDIA = "media"  # proxies and thumbnails, redactions, public submissions: transcodes
BUNDLES = "bundles"  # disclosure bundles: long, one case's footage at a time
MAINTENANCE = "maintenance"  # scheduled sweeps: scrub, retention, work files, checkpoints
QUEUES = (INGEST, MEDIA, BUNDLES, MAINTENANCE)
# The one queue of releases before the four: a worker that consumes every queue (the default,
# and `evidence up`) also drains it, so tasks queued before an upgrade are not stranded.
LEGACY_QUEUE = "evidence"

# Handed over through the outbox, in the transaction of the change that asks for them.
PROCESS_UPLOAD = "evidence.ingest.process_upload"  # (upload_id)
BUILD_BUNDLE = "evidence.bundles.build"  # (bundle_id)
MAKE_REDACTION = "evidence.media.redact"  # (clip_id, kind)
SEND_NOTIFICATION = "evidence.notifications.send"  # (notification_id)
PROCESS_SUBMISSION = "evidence.submissions.process_accepted"  # (clip_id)
MAKE_WATERMARKS = "evidence.media.watermark_share"  # (share_id)

# Sent by the scheduler (workers/beat.py: beat_schedule), without arguments.
REQUEUE_STALLED_UPLOADS = "evidence.ingest.requeue_stalled"
ABANDON_STALE_UPLOADS = "evidence.ingest.abandon_stale"
TIMESTAMP_IF_GROWN = "evidence.ledger.timestamp_checkpoint"
RETENTION_SWEEP = "evidence.retention.sweep"
SCRUB = "evidence.scrub.run"
SWEEP_WORK_FILES = "evidence.work.sweep"
REQUEUE_LOST_WORK = "evidence.recovery.requeue_lost"  # bundles, redactions, submissions, e-mail

OUTBOX_TASKS = (
    PROCESS_UPLOAD,
    BUILD_BUNDLE,
    MAKE_REDACTION,
    SEND_NOTIFICATION,
    PROCESS_SUBMISSION,
    MAKE_WATERMARKS,
)
SCHEDULED_TASKS = (
    REQUEUE_STALLED_UPLOADS,
    ABANDON_STALE_UPLOADS,
    TIMESTAMP_IF_GROWN,
    RETENTION_SWEEP,
    SCRUB,
    SWEEP_WORK_FILES,
    REQUEUE_LOST_WORK,
)
TASKS = OUTBOX_TASKS + SCHEDULED_TASKS  # every task the workers register

# Which queue each task goes to. Notifications go with ingest: they are short, and the person
# told of a share or of a finished submission should not wait behind a scrub.
ROUTES = {
    PROCESS_UPLOAD: INGEST,
    REQUEUE_STALLED_UPLOADS: INGEST,
    ABANDON_STALE_UPLOADS: INGEST,
    SEND_NOTIFICATION: INGEST,
    MAKE_REDACTION: MEDIA,
    PROCESS_SUBMISSION: MEDIA,
    MAKE_WATERMARKS: MEDIA,
    BUILD_BUNDLE: BUNDLES,
    TIMESTAMP_IF_GROWN: MAINTENANCE,
    RETENTION_SWEEP: MAINTENANCE,
    SCRUB: MAINTENANCE,
    SWEEP_WORK_FILES: MAINTENANCE,
    REQUEUE_LOST_WORK: MAINTENANCE,
}


def parse_queues(text: str) -> tuple[str, ...]:
    """`ingest,media` -> ("ingest", "media"); "all" or "" -> every queue and the legacy one.
    An unknown name is refused (ValueError): a worker on a misspelt queue would wait forever."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or names == ["all"]:
        return (*QUEUES, LEGACY_QUEUE)
    unknown = [n for n in names if n not in (*QUEUES, LEGACY_QUEUE)]
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; the queues: {', '.join(QUEUES)}")
    return tuple(dict.fromkeys(names))
