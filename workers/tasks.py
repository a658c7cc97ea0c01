"""Thin tasks: parse, call one `evidence` service, return."""

from __future__ import annotations

import datetime as dt
import logging

from workers.app import app
from evidence.config import get_settings
from evidence.context import Context
from evidence.errors import EvidenceError

log = logging.getLogger(__name__)
_ctx: Context | None = None


def context() -> Context:
    global _ctx
    if _ctx is None:
        _ctx = Context(get_settings())
    return _ctx


@app.task(
    name="evidence.ingest.process_upload",
    bind=True,
    # Storage or database hiccups are worth retrying; our own errors (a missing upload,
    # a hash mismatch already recorded) are final and retried never.
    autoretry_for=(OSError, ConnectionError, TimeoutError),
    dont_autoretry_for=(EvidenceError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
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


@app.task(name="evidence.ingest.requeue_stalled")
def requeue_stalled(older_than_seconds: int = 600) -> int:
    """Re-enqueue uploads whose processing task was lost (run by the scheduler)."""
    from evidence.ingest.service import stalled_uploads

    ids = stalled_uploads(context(), dt.timedelta(seconds=older_than_seconds))
    for upload_id in ids:
        process_upload.delay(upload_id)
    return len(ids)


app.conf.beat_schedule = {
    "requeue-stalled-uploads": {"task": "evidence.ingest.requeue_stalled", "schedule": 300.0},
}
