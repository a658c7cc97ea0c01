"""Presigned upload URLs hold what was declared, on the local store and on S3 (Ceph RGW):
a part takes at most its planned size, nothing is written after completion, a device declares
within bounds, abandoned uploads are aborted, and a crash between joining the parts and
recording it does not strand the upload."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest

from evidence import clock
from evidence.accounts.service import create_device
from evidence.context import Context
from evidence.errors import UploadNotFound
from evidence.ingest.models import Upload
from evidence.ingest.service import abandon_stale_uploads, process_upload
from evidence.storage import MiB, original_key
from tests.conftest import sqlite_only
from tests.fixtures.api import running_api
from tests.fixtures.ingest import Dock
from tests.fixtures.media import Clip as ClipFile

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md


@pytest.fixture(params=["local", "s3"])
def backend_ctx(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> Context:
    """The same ingest on both object stores (the database is not what is tested here)."""
    if request.param == "local":
        from tests.fixtures.databases import make_settings

        return Context(make_settings(tmp_path, sqlite_url))
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return Context(server.settings(bucket, tmp_path / "var", database_url=sqlite_url))


@pytest.fixture
def station(backend_ctx: Context):
    ctx = backend_ctx
    key = create_device(ctx, None, "dock-bounds").key
    with running_api(ctx.settings) as url:
        ctx.settings = ctx.settings.model_copy(update={"public_url": url})
        yield Dock(httpx.Client(base_url=url, timeout=60), key), ctx


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    path = tmp_path_factory.mktemp("big") / "BIG.mp4"
    path.write_bytes(os.urandom(20 * MiB))
    return ClipFile.of(path)


def _declare(dock: Dock, sha256: str, size: int) -> httpx.Response:
    return dock.http.post(
        "/api/v1/uploads",
        headers=dock.headers,
        json={"sha256": sha256, "size": size, "filename": "x.mp4"},
    )


def test_a_part_takes_at_most_its_planned_size(station, big_file: ClipFile) -> None:
    dock, ctx = station
    declared = dock.declare(big_file).json()
    first = declared["parts"][0]
    assert first["size"] == 8 * MiB
    oversized = httpx.put(first["url"], content=os.urandom(40 * MiB), timeout=120)
    if ctx.settings.storage_backend == "local":
        assert oversized.status_code == 413, "refused at the door"
    # Wherever it was refused, completing never joins it: the part must be its planned size.
    with big_file.path.open("rb") as f:
        for part in declared["parts"][1:]:
            f.seek(part["offset"])
            assert httpx.put(part["url"], content=f.read(part["size"]), timeout=60).is_success
    refused = dock.complete(declared["id"])
    assert refused.status_code == 409 and "part 1" in refused.json()["detail"]
    dock.send(big_file, dock.declare(big_file).json())
    assert dock.complete(declared["id"]).status_code == 202
    assert process_upload(ctx, declared["id"]) == "stored"


def test_a_single_part_declared_small_does_not_take_20_mb(station) -> None:
    dock, ctx = station
    small = os.urandom(1000)
    declared = _declare(dock, hashlib.sha256(small).hexdigest(), 1000).json()
    (part,) = declared["parts"]
    big = httpx.put(part["url"], content=os.urandom(20 * 1000 * 1000), timeout=120)
    if ctx.settings.storage_backend == "local":
        assert big.status_code == 413
    refused = dock.complete(declared["id"])
    assert refused.status_code == 409
    assert httpx.put(part["url"], content=small).is_success
    assert dock.complete(declared["id"]).status_code == 202
    assert process_upload(ctx, declared["id"]) == "stored"


def test_a_url_replayed_after_completion_cannot_change_what_the_worker_verifies(
    station, clip_1080p: ClipFile
) -> None:
    dock, ctx = station
    declared = dock.declare(clip_1080p).json()
    dock.send(clip_1080p, declared)
    assert dock.complete(declared["id"]).status_code == 202
    (part,) = declared["parts"]
    for body in (clip_1080p.path.read_bytes(), b"\0" * clip_1080p.size):
        replay = httpx.put(part["url"], content=body, timeout=60)
        assert replay.status_code == 404, "the upload is complete: its URLs write nothing"
    assert process_upload(ctx, declared["id"]) == "stored"
    assert ctx.store.stat(original_key(clip_1080p.sha256)).sha256 == clip_1080p.sha256


def test_a_device_declares_within_bounds(station) -> None:
    dock, ctx = station
    five_tib = _declare(dock, "a" * 64, 5 * 1024**4)
    assert five_tib.status_code == 413 and "at most" in five_tib.json()["detail"]
    assert "parts" not in five_tib.json()


@sqlite_only
def test_crash_between_joining_the_parts_and_recording_it_can_be_declared_again(
    ctx: Context, clip_1080p: ClipFile
) -> None:
    key = create_device(ctx, None, "dock-crash").key
    with running_api(ctx.settings) as url:
        dock = Dock(httpx.Client(base_url=url, timeout=30), key)
        declared = dock.declare(clip_1080p).json()
        dock.send(clip_1080p, declared)
        with ctx.db.session() as s:
            upload = s.get(Upload, declared["id"])
        # What complete does before its commit; then the process dies.
        ctx.store.complete_multipart(upload.incoming_key, upload.multipart_id)
        again = dock.declare(clip_1080p)
        assert again.status_code == 201, again.text
        assert again.json()["id"] == declared["id"]
        assert all(p["uploaded"] for p in again.json()["parts"])
        assert dock.complete(declared["id"]).status_code == 202
    assert process_upload(ctx, declared["id"]) == "stored"


# -- per device limits and the abandoned-upload sweep: SQL, so on both databases ---------------


def test_a_device_may_have_only_so_much_pending(ctx: Context) -> None:
    ctx.settings = ctx.settings.model_copy(
        update={"upload_max_pending_per_device": 2, "upload_max_pending_bytes_per_device": 10_000}
    )
    key = create_device(ctx, None, "dock-greedy").key
    with running_api(ctx.settings) as url:
        dock = Dock(httpx.Client(base_url=url, timeout=30), key)
        assert _declare(dock, "1" * 64, 100).status_code == 201
        assert _declare(dock, "1" * 64, 100).status_code == 201, "resuming is not a new upload"
        too_big = _declare(dock, "2" * 64, 9_950)
        assert too_big.status_code == 409 and "bytes pending" in too_big.json()["detail"]
        assert _declare(dock, "3" * 64, 100).status_code == 201
        too_many = _declare(dock, "4" * 64, 100)
        assert too_many.status_code == 409 and "uploads pending" in too_many.json()["detail"]
        other = Dock(dock.http, create_device(ctx, None, "dock-modest").key)
        assert _declare(other, "4" * 64, 100).status_code == 201, "the limit is per device"


def test_abandoned_uploads_are_aborted_and_recorded(ctx: Context, big_file: ClipFile) -> None:
    key = create_device(ctx, None, "dock-gone").key
    with running_api(ctx.settings) as url:
        dock = Dock(httpx.Client(base_url=url, timeout=60), key)
        declared = dock.declare(big_file).json()
        first = declared["parts"][0]
        with big_file.path.open("rb") as f:
            assert httpx.put(first["url"], content=f.read(first["size"]), timeout=60).is_success
        with ctx.db.session() as s:
            upload = s.get(Upload, declared["id"])
        assert abandon_stale_uploads(ctx) == [], "fresh uploads are left alone"
        types = [json.loads(e)["type"] for _, e in ctx.ledger.entries_about(f"upload:{upload.id}")]
        assert types == ["upload.declared"]
        later = clock.now() + dt.timedelta(hours=ctx.settings.upload_abandon_hours + 1)
        clock.set_clock(lambda: later)
        assert abandon_stale_uploads(ctx) == [declared["id"]]
        assert abandon_stale_uploads(ctx) == [], "once"
        with pytest.raises(UploadNotFound):
            ctx.store.list_parts(upload.incoming_key, upload.multipart_id)
        with ctx.db.session() as s:
            assert s.get(Upload, declared["id"]).state == "abandoned"
        (entry,) = [
            json.loads(e)
            for _, e in ctx.ledger.entries_about(f"upload:{declared['id']}")
            if json.loads(e)["type"] == "upload.abandoned"
        ]
        assert entry["sha256"] == big_file.sha256
        clock.set_clock(None)
        again = dock.declare(big_file).json()
        assert again["id"] != declared["id"] and again["state"] == "pending"
        dock.send(big_file, again)
        assert dock.complete(again["id"]).status_code == 202
    assert process_upload(ctx, again["id"]) == "stored"


def test_an_empty_clip_is_one_empty_part(station, clip_empty: ClipFile) -> None:
    dock, ctx = station
    done = dock.dock(clip_empty)
    assert process_upload(ctx, done["id"]) == "stored"
    assert ctx.store.stat(original_key(clip_empty.sha256)).size == 0


def test_the_scheduler_runs_the_abandoned_upload_sweep(tmp_path: Path) -> None:
    from evidence import queue
    from evidence.config import Settings
    from workers import tasks
    from workers.app import make_celery

    celery = make_celery(Settings(data_dir=tmp_path))
    entry = celery.conf.beat_schedule["abandon-stale-uploads"]
    assert entry["task"] == queue.ABANDON_STALE_UPLOADS == tasks.abandon_stale_uploads.name
    assert entry["task"] in celery.tasks


def test_a_declarations_sign_of_life_does_not_make_a_completed_upload_look_stalled(
    ctx: Context, clip_1080p: ClipFile
) -> None:
    from evidence.ingest.service import stalled_uploads

    start = clock.now()
    key = create_device(ctx, None, "dock-slow").key
    with running_api(ctx.settings) as url:
        dock = Dock(httpx.Client(base_url=url, timeout=30), key)
        first = dock.declare(clip_1080p).json()
        clock.set_clock(lambda: start + dt.timedelta(hours=1))
        again = dock.declare(clip_1080p).json()  # resumed an hour later: a sign of life
        assert again["id"] == first["id"]
        dock.send(clip_1080p, again)
        clock.set_clock(lambda: start + dt.timedelta(hours=2))
        assert dock.complete(first["id"]).status_code == 202
    clock.set_clock(lambda: start + dt.timedelta(hours=2, minutes=5))
    assert stalled_uploads(ctx, dt.timedelta(minutes=10)) == [], "completed five minutes ago"
    clock.set_clock(lambda: start + dt.timedelta(hours=2, minutes=11))
    assert stalled_uploads(ctx, dt.timedelta(minutes=10)) == [first["id"]]
