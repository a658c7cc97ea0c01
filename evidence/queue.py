"""The task queue's names: the queue the workers consume and the name of every task.

The API, the services and the scheduler never run a task: they send one by name (the
services through the outbox, evidence/outbox.py; the scheduler from its schedule,
workers/beat.py), and the workers (workers/tasks.py) register a task under each name. These
strings travel in queued messages and in outbox rows, so they never change: a renamed task
would strand the work already queued under its old name. (Some predate the Python names of
the tasks, which follow the service function each calls.)

Plain strings, no Celery: the core names the work and leaves the sending to its caller.
"""

from __future__ import annotations

QUEUE = "evidence"  # the one queue every worker consumes (`evidence worker --queues`)

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
