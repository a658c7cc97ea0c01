"""The sweep that finds work whose task was lost and hands it to the outbox again.

The outbox (evidence/outbox.py) makes sure a task is sent once its request commits. What it
cannot see is a task lost after that: a worker killed mid-job on the embedded broker (which
does not redeliver), a message dropped by a broker that lost its data, a task that gave up
after its retries while the storage was down. Each kind of work leaves a mark in the
database that says it is still owed, and the scheduler (workers/beat.py) runs this sweep
every few minutes:

- an upload still processing with no heartbeat: evidence.ingest.service.stalled_uploads
  (its own scheduled task, requeue_stalled_uploads);
- a bundle still queued or building: evidence.bundles.service.stalled_bundles;
- a redaction requested, neither made nor recorded as failed:
  evidence.redactions.lost_redactions;
- an accepted public submission whose clip is still verifying:
  evidence.submissions.service.unprocessed_submissions;
- a notification still queued: evidence.notifications.unsent_notifications.

Work that already has a row waiting in the outbox is left to it (the broker is down, and
the relay will send it when the broker is back). Every task is idempotent, so a job that was
only slow, not lost, is merely done twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select

from evidence import outbox, queue
from evidence.bundles.service import stalled_bundles
from evidence.context import Context
from evidence.notifications import unsent_notifications
from evidence.redactions import lost_redactions
from evidence.submissions.service import unprocessed_submissions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requeued:
    bundles: list[str]
    redactions: list[tuple[str, str]]  # (clip id, kind)
    submissions: list[str]  # clip ids
    notifications: list[str]

    def __len__(self) -> int:
        return sum(map(len, (self.bundles, self.redactions, self.submissions, self.notifications)))


def _waiting(ctx: Context) -> set[tuple[str, tuple[str, ...]]]:
    with ctx.db.session() as s:
        rows = s.execute(select(outbox.OutboxMessage.task, outbox.OutboxMessage.args)).all()
    return {(task, tuple(args)) for task, args in rows}


def requeue_lost_work(ctx: Context, older_than: dt.timedelta) -> Requeued:
    """Queue again, through the outbox, the work whose task was lost (`older_than`: how long
    work may wait or run before it counts as lost)."""
    waiting = _waiting(ctx)

    def lost(task: str, owed: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        return [args for args in owed if (task, args) not in waiting]

    found = {
        queue.BUILD_BUNDLE: lost(
            queue.BUILD_BUNDLE, [(b,) for b in stalled_bundles(ctx, older_than)]
        ),
        queue.MAKE_REDACTION: lost(queue.MAKE_REDACTION, lost_redactions(ctx, older_than)),
        queue.PROCESS_SUBMISSION: lost(
            queue.PROCESS_SUBMISSION, [(c,) for c in unprocessed_submissions(ctx, older_than)]
        ),
        queue.SEND_NOTIFICATION: lost(
            queue.SEND_NOTIFICATION, [(n,) for n in unsent_notifications(ctx, older_than)]
        ),
    }
    with ctx.db.write_session() as s:
        for task, owed in found.items():
            for args in owed:
                outbox.add(s, task, *args)
    for task, owed in found.items():
        for args in owed:
            log.warning("%s%s: its task was lost; queued again", task, list(args))
    return Requeued(
        bundles=[b for (b,) in found[queue.BUILD_BUNDLE]],
        redactions=[(c, k) for (c, k) in found[queue.MAKE_REDACTION]],
        submissions=[c for (c,) in found[queue.PROCESS_SUBMISSION]],
        notifications=[n for (n,) in found[queue.SEND_NOTIFICATION]],
    )
