"""The scheduler: its schedule (`beat_schedule`, every periodic task in one place), and the
relay of the outbox it runs besides.

The outbox (evidence/outbox.py) holds work the API could not hand to the broker. Relaying it
here, every few seconds, rather than as a periodic task has two reasons: a periodic task
would itself go through the broker, and one every few seconds would fill the workers' logs
with "received" and "succeeded" lines for nothing. There is exactly one scheduler per
deployment (docs/deploy.md), so exactly one relay besides the API's after each commit.
"""

from __future__ import annotations

import time
from typing import Any

from celery.beat import PersistentScheduler

from evidence import queue
from evidence.config import Settings, get_settings
from evidence.context import Context
from evidence.outbox import Relay

# The longest a task waits in the outbox after the broker comes back.
OUTBOX_RELAY_SECONDS = 5.0


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every periodic task, by entry name (the names key the scheduler's saved state in
    beat-schedule, so they stay as they are). workers.app.make_celery sets it."""
    scrub_every = float(settings.scrub_interval_seconds)
    return {
        "requeue-stalled-uploads": {"task": queue.REQUEUE_STALLED_UPLOADS, "schedule": 300.0},
        "abandon-stale-uploads": {"task": queue.ABANDON_STALE_UPLOADS, "schedule": 3600.0},
        "timestamp-checkpoint": {
            "task": queue.TIMESTAMP_IF_GROWN,
            "schedule": float(settings.tsa_interval_seconds),
        },
        "retention-sweep": {
            "task": queue.RETENTION_SWEEP,
            "schedule": float(settings.retention_sweep_seconds),
        },
        "scrub-objects": {
            "task": queue.SCRUB,
            "schedule": scrub_every,
            # A run still queued when the next is due is dropped: two runs would scrub the
            # same slice.
            "options": {"expires": scrub_every},
        },
        "requeue-lost-work": {"task": queue.REQUEUE_LOST_WORK, "schedule": 600.0},
        "sweep-work-files": {
            "task": queue.SWEEP_WORK_FILES,
            "schedule": 600.0,
            "options": {"expires": 600.0},
        },
    }


class Scheduler(PersistentScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._relay: Relay | None = None
        self._next_relay = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        wait = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now >= self._next_relay:
            self._next_relay = now + OUTBOX_RELAY_SECONDS
            self._outbox_relay()()
        return min(wait, max(0.1, self._next_relay - time.monotonic()))

    def _outbox_relay(self) -> Relay:
        if self._relay is None:
            from workers.app import make_sender

            ctx = Context(get_settings())
            # This process was forked from the worker: drop database connections it may
            # have inherited (never closing them, they are the parent's) and open its own.
            ctx.db.engine.dispose(close=False)
            self._relay = Relay(ctx, make_sender(self.app), pause=0.0)
        return self._relay
