"""PostgreSQL stopped for 30 s and started again during ingest (production profile: PostgreSQL,
Redis, the local object store). The worker in the middle of a clip meets OperationalError
and retries with backoff; the API answers 503 meanwhile (never 500, never the driver's
words); within a minute of the database's return the clip is ready, with no dock rerun."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from evidence.accounts.service import create_device
from evidence.context import Context
from evidence.migrate import upgrade
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.faults import (
    OUTAGE_SECONDS,
    RECOVERED_WITHIN,
    assert_nothing_lost,
    clips_ready,
    running_worker,
    wait_for,
)
from tests.fixtures.ingest import Dock
from tests.fixtures.media import Clip as ClipFile
from tests.fixtures.media import lavfi_inputs
from tests.fixtures.postgres import PostgresServer, throwaway_postgres
from tests.fixtures.redis import RedisServer

pytestmark = [pytest.mark.fault, pytest.mark.postgres]


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: stopping the session's would disturb other tests."""
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def eight_second_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    import subprocess

    path = tmp_path_factory.mktemp("pgfault") / "EIGHT_0001.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-y",
            *lavfi_inputs("1920x1080", "30", 8),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            # 4:2:2 (High 4:2:2), which browsers do not decode: its proxy is a transcode
            # (seconds long, so there is time to fault it), not a remux (docs/media.md).
            "-pix_fmt",
            "yuv422p",
            "-c:a",
            "aac",
            "-shortest",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return ClipFile.of(path)


def test_postgres_restarted_during_ingest_loses_nothing_and_work_resumes_by_itself(
    own_postgres: PostgresServer,
    restartable_redis: RedisServer,
    eight_second_clip: ClipFile,
    clip_mov: ClipFile,
    tmp_path: Path,
) -> None:
    url = own_postgres.create_database()
    upgrade(url)
    settings = make_settings(tmp_path, url, broker_url=restartable_redis.url)
    ctx = Context(settings)
    key = create_device(ctx, None, "dock-pg-fault").key
    with running_api(settings) as api, running_worker(settings, log=tmp_path / "worker.log"):
        dock = Dock(httpx.Client(base_url=api, timeout=30), key)
        dock.dock(eight_second_clip)
        work = settings.data_dir / "work"
        wait_for(lambda: bool(list(work.rglob("*.partial"))), 120, "the worker transcoding")

        own_postgres.stop()
        down_at = time.monotonic()
        refused = dock.declare(clip_mov)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"]
        assert str(own_postgres.port) not in refused.text, "no driver details in public answers"
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))

        own_postgres.start()
        took = wait_for(
            lambda: clips_ready(ctx, [eight_second_clip]),
            RECOVERED_WITHIN,
            "the clip in hand during the restart, ready after PostgreSQL returned",
        )
        print(f"ready {took:.1f} s after PostgreSQL returned")
        dock.dock(clip_mov)  # the dock's next attempt, as its retries would make it
        wait_for(lambda: clips_ready(ctx, [clip_mov]), 120, "a clip docked after the restart")
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "OperationalError" in log, "the worker met the outage (and retried)"
    assert_nothing_lost(ctx, [eight_second_clip, clip_mov])
