"""The broker (Redis) down during ingest, on the production profile (PostgreSQL, Redis, the
local object store): a dock that completes meanwhile is answered 202, the work waits in
the outbox, and the clip is stored within a minute of Redis coming back, with no dock rerun."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from evidence.accounts.service import create_device
from evidence.context import Context
from evidence.ingest.models import Upload
from evidence.outbox import pending
from evidence.queue import INGEST
from tests.conftest import postgres_only
from tests.fixtures.api import running_api
from tests.fixtures.faults import (
    OUTAGE_SECONDS,
    RECOVERED_WITHIN,
    assert_nothing_lost,
    clips_ready,
    dock_folder,
    running_worker,
    start_dock,
    wait_for,
)
from tests.fixtures.ingest import Dock
from tests.fixtures.media import Clip as ClipFile
from tests.fixtures.redis import RedisServer

pytestmark = pytest.mark.fault


@postgres_only
def test_redis_stopped_during_ingest_loses_nothing_and_work_resumes_by_itself(
    ctx: Context,
    restartable_redis: RedisServer,
    clip_1080p: ClipFile,
    clip_mov: ClipFile,
    tmp_path: Path,
) -> None:
    ctx.settings = ctx.settings.model_copy(update={"broker_url": restartable_redis.url})
    key = create_device(ctx, None, "dock-redis-fault").key
    with (
        running_api(ctx.settings) as api,
        running_worker(ctx.settings, log=tmp_path / "worker.log"),
    ):
        before = dock_folder(api, key, [clip_1080p], tmp_path / "before")
        assert before.returncode == 0, before.stderr
        wait_for(lambda: clips_ready(ctx, [clip_1080p]), 120, "a clip docked with Redis up")

        restartable_redis.stop()
        down_at = time.monotonic()
        # The dock completes (202: the work is in the outbox) and then waits for the server
        # to vouch for the verified original, which it cannot do until the broker is back.
        during = start_dock(api, key, [clip_mov], tmp_path / "during")
        wait_for(lambda: _completed(ctx, clip_mov), OUTAGE_SECONDS, "the dock completing")
        assert pending(ctx) == 1
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        assert during.poll() is None, "the dock must not call the clip done before it is verified"

        restartable_redis.start()
        took = wait_for(
            lambda: clips_ready(ctx, [clip_mov]),
            RECOVERED_WITHIN,
            "the clip completed during the outage, stored after Redis returned",
        )
        print(f"stored {took:.1f} s after Redis returned")
        assert pending(ctx) == 0
        out, err = during.communicate(timeout=RECOVERED_WITHIN)
        assert during.returncode == 0, out + err  # the same run, no rerun
    assert_nothing_lost(ctx, [clip_1080p, clip_mov])


def _completed(ctx: Context, clip: ClipFile) -> bool:
    with ctx.db.session() as s:
        states = s.scalars(select(Upload.state).where(Upload.sha256 == clip.sha256)).all()
    return states == ["processing"]


@postgres_only
def test_completing_while_the_broker_is_down_answers_202_and_completing_again_sends_the_work(
    ctx: Context,
    restartable_redis: RedisServer,
    clip_1080p: ClipFile,
) -> None:
    """What the dock sees: no 500 after the commit, and a retried complete (or any later
    request) hands the held work to the broker once it is back."""
    import redis

    ctx.settings = ctx.settings.model_copy(update={"broker_url": restartable_redis.url})
    key = create_device(ctx, None, "dock-redis-202").key
    with running_api(ctx.settings) as api:
        dock = Dock(httpx.Client(base_url=api, timeout=30), key)
        declared = dock.declare(clip_1080p).json()
        dock.send(clip_1080p, declared)
        restartable_redis.stop()
        done = dock.complete(declared["id"])
        assert done.status_code == 202, done.text
        assert done.json()["state"] == "processing"
        assert pending(ctx) == 1
        restartable_redis.start()
        time.sleep(5.5)  # the API leaves a broker that just failed alone for a few seconds
        again = dock.complete(declared["id"])
        assert again.status_code == 202 and pending(ctx) == 0
    queued = redis.Redis.from_url(restartable_redis.url).lrange(INGEST, 0, -1)
    assert len(queued) == 1 and declared["id"].encode() in queued[0]
