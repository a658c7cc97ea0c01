"""The outbox: work for the workers is written in the same transaction as the change that
asks for it, and sent to the broker afterwards.

Sending to the broker inside a request, after the database commit, loses the work whenever
the broker is down at that moment: the change is committed, the task never sent, and a
retried request finds nothing left to do. So a service that hands work over (a completed
upload, a bundle or redaction request) adds an outbox row in its own transaction, and a
relay sends the rows to the broker and deletes them: right after the commit, best effort,
and every few seconds from the scheduler (workers/beat.py), so work resumes within seconds
of the broker coming back. A row is claimed for a short lease while it is sent, so two
relays (the API and the scheduler) do not both send it; if a relay dies after sending but
before deleting, the row is sent again after the lease: tasks are idempotent, so
at-least-once is enough.

A row holds a task's name (evidence/queue.py) and its arguments; this module runs no task
and knows no broker: the caller gives the relay a `send` function (the API and the scheduler
build theirs from their process's Celery app, workers/app.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Integer, String, delete, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from evidence import clock, queue
from evidence.context import Context
from evidence.db import Base
from evidence.types import UTCDateTime

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=15)  # a claimed row unsent after this is sent again
BATCH = 100
MAX_ERROR = 300

Send = Callable[[str, list[Any]], None]


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(100))
    args: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # While a relay sends the row; NULL or past: free to claim.
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR))


def add(s: Session, task: str, *args: str) -> None:
    """Queue `task(*args)` in the caller's transaction: it is sent only if that commits.
    `task` is one of evidence.queue.OUTBOX_TASKS."""
    s.add(OutboxMessage(task=task, args=list(args), created_at=clock.now(), attempts=0))


@dataclass(frozen=True)
class Relayed:
    sent: int
    failed: int  # rows left for the next relay because the broker refused or was down
    error: str | None = None


def _claimable(now: dt.datetime):  # type: ignore[no-untyped-def]
    return or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now)


def pending(ctx: Context) -> int:
    """Rows waiting to be sent (claimed or not): for tests and health checks."""
    with ctx.db.session() as s:
        return len(s.scalars(select(OutboxMessage.id)).all())


def relay(ctx: Context, send: Send, *, limit: int = BATCH) -> Relayed:
    """Send due outbox rows to the broker, oldest first, and delete the ones sent.

    Stops at the first send that fails (the broker is down: the rest would fail too) and
    leaves that row and the unsent ones for the next relay. Database errors propagate."""
    now = clock.now()
    with ctx.db.session() as s:  # a cheap read first: most calls find nothing to do
        if s.scalar(select(OutboxMessage.id).where(_claimable(now)).limit(1)) is None:
            return Relayed(0, 0)
    with ctx.db.write_session() as s:
        rows = list(
            s.scalars(
                select(OutboxMessage)
                .where(_claimable(now))
                .order_by(OutboxMessage.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        for row in rows:
            row.claimed_until = now + LEASE
        claimed = [(r.id, r.task, list(r.args)) for r in rows]
    sent: list[int] = []
    error: str | None = None
    refused: int | None = None
    for row_id, task, args in claimed:
        try:
            send(task, args)
        except Exception as exc:  # noqa: BLE001 - any broker failure leaves the row queued
            error, refused = f"{type(exc).__name__}: {exc}"[:MAX_ERROR], row_id
            break
        sent.append(row_id)
    unsent = [row_id for row_id, _, _ in claimed if row_id not in set(sent)]
    with ctx.db.write_session() as s:
        if sent:
            s.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(sent)))
        for row in s.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(unsent))):
            row.claimed_until = None
            if row.id == refused:
                row.attempts += 1
                row.last_error = error
    if error:
        log.warning(
            "outbox: sent %d, %d left for the next relay: %s", len(sent), len(unsent), error
        )
    return Relayed(len(sent), len(unsent), error)


class Relay:
    """Best-effort relaying after a request's commit: never raises, and after a failure
    leaves the broker alone for `pause` seconds so a broker outage does not slow every
    request (the scheduler's relay sends the rows when it is back)."""

    def __init__(self, ctx: Context, send: Send, pause: float = 5.0):
        self.ctx, self.send, self.pause = ctx, send, pause
        self._quiet_until = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> Relayed | None:
        with self._lock:
            if time.monotonic() < self._quiet_until:
                return None
        try:
            done = relay(self.ctx, self.send)
        except Exception as exc:  # noqa: BLE001 - the caller's change is committed; rows wait
            log.warning(
                "outbox: relay failed (%s: %s); the rows wait for the next relay",
                type(exc).__name__,
                str(exc)[:MAX_ERROR],
            )
            done = Relayed(0, 0, "relay failed")
        if done.error:
            with self._lock:
                self._quiet_until = time.monotonic() + self.pause
        return done


def resume_unfinished_uploads(ctx: Context) -> int:
    """Queue again every upload still processing, for a store whose only worker is starting
    (`evidence up` after a crash or a kill): the embedded broker does not deliver again a
    task its dead worker had taken. A task that is in fact still queued then runs twice, and
    the second run finds the upload stored and returns. Returns how many were queued."""
    import datetime as dt

    from evidence.ingest.service import stalled_uploads

    ids = stalled_uploads(ctx, dt.timedelta(0))
    with ctx.db.write_session() as s:
        for upload_id in ids:
            add(s, queue.PROCESS_UPLOAD, upload_id)
    return len(ids)
