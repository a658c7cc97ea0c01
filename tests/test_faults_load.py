"""Fault suite: ten docks at once against one server.

Ten `evidence dock` processes, five distinct clips each, dock into one real API process
(`evidence serve`) with two workers. Every clip must be stored exactly once, and the test
prints the p50/p99 latency of declare and complete as the docks saw them (reported, never
asserted: timing on a shared CI machine proves nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evidence.accounts.service import create_device
from evidence.config import Settings
from evidence.context import Context
from tests.fixtures.databases import make_settings
from tests.fixtures.store_faults import (
    assert_nothing_lost,
    camera_folder,
    docked_files,
    make_clips,
    percentile,
    running_store,
    timed_dock,
    wait_processed,
)

pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]

DOCKS = 10
CLIPS_PER_DOCK = 5


def _settings(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> Settings:
    """PostgreSQL runs the production broker (Redis); SQLite the embedded one."""
    if database_url.startswith("postgresql"):
        redis_url = request.getfixturevalue("redis_url")
        return make_settings(
            tmp_path,
            database_url,
            broker_url=redis_url.rsplit("/", 1)[0] + "/5",
            broker_visibility_timeout=60,
        )
    return make_settings(tmp_path, database_url)


def test_ten_docks_at_once_store_every_clip_once(
    tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> None:
    settings = _settings(tmp_path, database_url, request)
    ctx = Context(settings)
    clips = make_clips(tmp_path / "clips", DOCKS * CLIPS_PER_DOCK, tag="load")
    cameras = [
        camera_folder(tmp_path / f"camera{i}", clips[i * CLIPS_PER_DOCK : (i + 1) * CLIPS_PER_DOCK])
        for i in range(DOCKS)
    ]
    keys = [create_device(ctx, None, f"dock-station-{i}").key for i in range(DOCKS)]

    with running_store(settings, tmp_path / "logs", workers=1, concurrency=2) as server:
        timings = [tmp_path / f"timings{i}.json" for i in range(DOCKS)]
        docks = [
            timed_dock(cam, server.url, key, out)
            for cam, key, out in zip(cameras, keys, timings, strict=True)
        ]
        outcomes = [(d.wait(timeout=600), d.communicate()[1]) for d in docks]
        for code, err in outcomes:
            assert code == 0, err + server.log("api")
        wait_processed(
            ctx, DOCKS * CLIPS_PER_DOCK, 600, extra=lambda: server.log("worker0")[-3000:]
        )

    calls = [c for t in timings for c in json.loads(t.read_text())]
    for kind in ("declare", "complete"):
        seconds = [c["seconds"] for c in calls if c["kind"] == kind]
        assert len(seconds) >= DOCKS * CLIPS_PER_DOCK, f"every clip was {kind}d"
        print(
            f"\n{kind}: {len(seconds)} calls from {DOCKS} docks at once: "
            f"p50 {percentile(seconds, 50) * 1000:.0f} ms, "
            f"p99 {percentile(seconds, 99) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms"
        )
    assert_nothing_lost(ctx, [f for cam in cameras for f in docked_files(cam)])
