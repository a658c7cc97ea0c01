"""The Celery application, built from EVIDENCE_* settings by `make_celery`.

Each process builds it once, in its composition root: the worker process in the `evidence
worker` command (cli/), the API process in `api.app.create_app` (it only sends, by name,
through the outbox relay). Importing this module builds nothing and touches no file. The
queue and task names, and which queue each task goes to, are evidence/queue.py; the tasks,
workers/tasks.py; the schedule, workers/beat.py.

Tasks are acknowledged late and re-queued if the worker dies, so a task may run twice:
every service they call is idempotent. One task at a time per worker process
(prefetch 1), since a transcode saturates a core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from evidence.config import Settings
from evidence.queue import INGEST, ROUTES
from workers.beat import beat_schedule


def broker_url(settings: Settings) -> str:
    if settings.broker_url:
        return settings.broker_url
    # Embedded profile: a SQLite file beside the database, no server to install.
    return f"sqla+sqlite:///{settings.data_dir.resolve()}/broker.db"


def make_celery(settings: Settings) -> Celery:
    """The app for this process. The worker's registers the tasks when it starts (`include`:
    workers/tasks.py); a sender's needs none, it sends by name."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # the embedded broker's file is there
    url = broker_url(settings)
    app = Celery("evidence", broker=url, include=["workers.tasks"])
    app.conf.update(
        # Each task to its queue (evidence/queue.py: ROUTES); the scheduler's and the outbox's
        # sends by name are routed by the same table.
        task_routes={task: {"queue": queue} for task, queue in ROUTES.items()},
        task_default_queue=INGEST,  # every task is routed; this is for none of them
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options=_transport_options(url, settings),
        beat_scheduler="workers.beat:Scheduler",  # also relays the outbox
        beat_schedule=beat_schedule(settings),
    )
    return app


def _transport_options(url: str, settings: Settings) -> dict[str, object]:
    # (kombu's SQLAlchemy transport hands every option to create_engine, so the embedded
    # broker keeps its default one-second polling.)
    if url.startswith(("redis://", "rediss://")):
        # A task not acknowledged within this time is delivered again (worker died).
        timeout = settings.broker_visibility_timeout
        return {
            "visibility_timeout": timeout,
            # A broker host that does not answer fails a send in seconds, not minutes: the
            # outbox keeps the work and the relay tries again.
            "socket_connect_timeout": 5,
            # kombu looks for overdue tasks every interval x throttle seconds (100 s by
            # default); look every few seconds instead, it is one cheap ZRANGE.
            "unacked_restore_interval": max(1, min(10, timeout)),
            "unacked_restore_throttle": 1,
        }
    return {}


# Sending from the outbox: a down broker should fail fast (the row stays queued and the next
# relay tries again), not hold a request for kombu's default retries.
SEND_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.25,
    "interval_max": 0.5,
}


def make_sender(celery: Celery) -> Callable[[str, list[Any]], None]:
    """Send a task by name (the API runs no task code), as the outbox relay needs."""

    def send(task: str, args: list[Any]) -> None:
        celery.send_task(task, args=args, retry=True, retry_policy=SEND_RETRY_POLICY)

    return send
