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
  evidence.redactions.lost_redactions.

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
from evidence.redactions import lost_redactions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requeued:
    bundles: list[str]
    redactions: list[tuple[str, str]]  # (clip id, kind)


def _waiting(ctx: Context) -> set[tuple[str, tuple[str, ...]]]:
    with ctx.db.session() as s:
        rows = s.execute(select(outbox.OutboxMessage.task, outbox.OutboxMessage.args)).all()
    return {(task, tuple(args)) for task, args in rows}


def requeue_lost_work(ctx: Context, older_than: dt.timedelta) -> Requeued:
    """Queue again, through the outbox, the bundles and redactions whose task was lost
    (`older_than`: how long work may wait or run before it counts as lost)."""
    waiting = _waiting(ctx)
    bundles = [
        b for b in stalled_bundles(ctx, older_than) if (queue.BUILD_BUNDLE, (b,)) not in waiting
    ]
    redactions = [
        r for r in lost_redactions(ctx, older_than) if (queue.MAKE_REDACTION, r) not in waiting
    ]
    with ctx.db.write_session() as s:
        for bundle_id in bundles:
            outbox.add(s, queue.BUILD_BUNDLE, bundle_id)
        for clip_id, kind in redactions:
            outbox.add(s, queue.MAKE_REDACTION, clip_id, kind)
    for bundle_id in bundles:
        log.warning("bundle %s: its build was lost; queued again", bundle_id)
    for clip_id, kind in redactions:
        log.warning("redaction %s of clip %s: its task was lost; queued again", kind, clip_id)
    return Requeued(bundles, redactions)
