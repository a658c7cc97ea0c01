"""The outbox on both databases, against a real Redis broker: rows are written with the
change that asks for the work, sent in order and deleted; a broker that is down leaves
them queued; a row claimed by another relay is not sent twice until its lease runs out."""

from __future__ import annotations

import datetime as dt

import redis
from sqlalchemy import select

from evidence import clock, outbox, queue
from evidence.config import Settings
from evidence.context import Context
from evidence.outbox import OutboxMessage, Relay, pending, relay
from evidence.queue import BUNDLES, INGEST, MEDIA, QUEUES, ROUTES
from tests.fixtures.services import free_port
from workers.app import make_celery, make_sender


def _sender(ctx: Context, url: str):  # type: ignore[no-untyped-def]
    return make_sender(make_celery(ctx.settings.model_copy(update={"broker_url": url})))


def _queue(url: str, name: str = INGEST) -> list[bytes]:
    return redis.Redis.from_url(url).lrange(name, 0, -1)


def _add(ctx: Context, task: str, *args: str) -> None:
    with ctx.db.write_session() as s:
        outbox.add(s, task, *args)


def test_rows_are_sent_to_their_queues_and_deleted(ctx: Context, redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(url).delete(*QUEUES)
    _add(ctx, queue.PROCESS_UPLOAD, "u1")
    _add(ctx, queue.BUILD_BUNDLE, "b1")
    _add(ctx, queue.MAKE_REDACTION, "c1", "redaction-1")
    done = relay(ctx, _sender(ctx, url))
    assert (done.sent, done.failed, pending(ctx)) == (3, 0, 0)
    # Each task on its queue (evidence/queue.py: ROUTES), none anywhere else.
    queued = {name: _queue(url, name) for name in QUEUES}
    assert {name: len(m) for name, m in queued.items() if m} == {INGEST: 1, BUNDLES: 1, MEDIA: 1}
    assert b"u1" in queued[INGEST][0] and b"b1" in queued[BUNDLES][0]
    assert b"redaction-1" in queued[MEDIA][0]
    assert relay(ctx, _sender(ctx, url)).sent == 0


def test_a_broker_that_is_down_leaves_the_rows_for_the_next_relay(
    ctx: Context, redis_url: str
) -> None:
    _add(ctx, queue.PROCESS_UPLOAD, "u2")
    _add(ctx, queue.PROCESS_UPLOAD, "u3")
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = relay(ctx, _sender(ctx, nobody))
    assert (done.sent, done.failed) == (0, 2) and "Error" in (done.error or "")
    with ctx.db.session() as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert [(r.attempts, r.claimed_until) for r in rows] == [(1, None), (0, None)]
    assert rows[0].last_error and len(rows[0].last_error) <= outbox.MAX_ERROR

    url = redis_url.rsplit("/", 1)[0] + "/6"
    redis.Redis.from_url(url).delete(*QUEUES)
    assert relay(ctx, _sender(ctx, url)).sent == 2
    assert pending(ctx) == 0 and len(_queue(url)) == 2


def test_a_claimed_row_is_left_alone_until_its_lease_runs_out(ctx: Context, redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).delete(*QUEUES)
    _add(ctx, queue.PROCESS_UPLOAD, "u4")
    now = clock.now()
    with ctx.db.write_session() as s:  # another relay claimed it and died before deleting
        s.scalars(select(OutboxMessage)).one().claimed_until = now + outbox.LEASE
    assert relay(ctx, _sender(ctx, url)).sent == 0
    later = now + outbox.LEASE + dt.timedelta(seconds=1)
    clock.set_clock(lambda: later)
    assert relay(ctx, _sender(ctx, url)).sent == 1 and len(_queue(url)) == 1


def test_the_requests_relay_never_raises_and_pauses_after_a_failure(
    ctx: Context, redis_url: str
) -> None:
    _add(ctx, queue.PROCESS_UPLOAD, "u5")
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    after_commit = Relay(ctx, _sender(ctx, nobody), pause=60)
    first = after_commit()
    assert first is not None and first.failed == 1
    assert after_commit() is None, "the broker just failed: left alone for a while"
    assert pending(ctx) == 1


def test_every_task_named_is_registered_by_the_workers_and_every_schedule_names_one(
    tmp_path,
) -> None:
    import workers.tasks  # noqa: F401  (registers the tasks, as the worker does at start)

    celery = make_celery(Settings(data_dir=tmp_path))
    registered = {name for name in celery.tasks if not name.startswith("celery.")}
    assert registered == set(queue.TASKS)
    assert set(queue.OUTBOX_TASKS) <= registered
    scheduled = {entry["task"] for entry in celery.conf.beat_schedule.values()}
    assert scheduled == set(queue.SCHEDULED_TASKS)
    assert celery.conf.beat_scheduler == "workers.beat:Scheduler"  # which relays the outbox
    # Every task is routed to one of the queues, by the one table.
    assert set(ROUTES) == set(queue.TASKS) and set(ROUTES.values()) == set(QUEUES)
    for task in queue.TASKS:
        assert celery.amqp.router.route({}, task)["queue"].name == ROUTES[task]


def test_uploads_left_processing_are_queued_again_for_a_starting_worker(
    ctx: Context, clip_1080p, redis_url: str
) -> None:
    from evidence.accounts.service import create_device
    from evidence.ingest.service import complete_upload, declare_upload, process_upload
    from evidence.outbox import resume_unfinished_uploads
    from tests.fixtures.ingest import put_as_joined

    device = create_device(ctx, None, "dock-resume").device
    declared = declare_upload(
        ctx, device, sha256=clip_1080p.sha256, size=clip_1080p.size, filename=clip_1080p.path.name
    )
    put_as_joined(ctx, declared.upload_id, clip_1080p.path)
    complete_upload(ctx, device, declared.upload_id)
    url = redis_url.rsplit("/", 1)[0] + "/8"
    redis.Redis.from_url(url).delete(*QUEUES)
    assert relay(ctx, _sender(ctx, url)).sent == 1  # the hand-over at complete

    assert resume_unfinished_uploads(ctx) == 1  # its worker died: queued again
    assert relay(ctx, _sender(ctx, url)).sent == 1
    assert all(declared.upload_id.encode() in m for m in _queue(url)) and len(_queue(url)) == 2
    assert process_upload(ctx, declared.upload_id) == "stored"
    assert process_upload(ctx, declared.upload_id) == "stored", "the second delivery is a no-op"
    assert resume_unfinished_uploads(ctx) == 0
