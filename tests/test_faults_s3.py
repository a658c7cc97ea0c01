"""Fault suite: the S3 server (Ceph RGW) down for 30 s, during ingest and during a scrub.

The store talks to a radosgw of its own on the session's Ceph cluster (tests/fixtures/
faults.py: `Gateway`), which the test really stops (the process exits, the port refuses)
and starts again on the same port. Production profile: S3, PostgreSQL, Redis.

- Ingest: the dock either waits the outage out or fails clearly (no traceback), and a rerun
  stores everything; the workers finish every upload by themselves once S3 is back.
- Scrub: `evidence scrub` says the storage is unreachable (no traceback, and no object is
  recorded as missing or failed), and a rerun after it returns completes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from evidence.accounts.service import create_device
from evidence.config import Settings
from evidence.context import Context
from evidence.ingest.models import Upload
from evidence.ledger.models import LedgerEntry
from evidence.migrate import upgrade
from tests.fixtures.services import wait_until
from tests.fixtures.store_faults import (
    REPO,
    Gateway,
    assert_nothing_lost,
    camera_folder,
    dock,
    docked_files,
    make_clips,
    own_gateway,
    process_env,
    running_store,
    wait_processed,
)

pytestmark = [pytest.mark.fault, pytest.mark.s3, pytest.mark.timeout(900)]

OUTAGE_SECONDS = 30  # how long the S3 server is down in each scenario
CLIPS = 12


@pytest.fixture
def gateway(s3_server) -> Iterator[Gateway]:  # type: ignore[no-untyped-def]
    with own_gateway(s3_server.ceph_dir) as g:
        yield g


@pytest.fixture
def settings(
    tmp_path: Path,
    gateway: Gateway,
    s3_server,
    s3_bucket: str,  # type: ignore[no-untyped-def]
    postgres_server,
    redis_url: str,
) -> Settings:
    url = postgres_server.create_database()
    upgrade(url)
    return Settings(
        data_dir=tmp_path / "var",
        database_url=url,
        storage_backend="s3",
        s3_endpoint=gateway.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        s3_bucket=f"{s3_bucket[:40]}-{uuid.uuid4().hex[:8]}",
        broker_url=redis_url.rsplit("/", 1)[0] + "/6",
        broker_visibility_timeout=60,
    )


def _outage(gateway: Gateway) -> float:
    """Stop the gateway; returns when it went down (monotonic)."""
    gateway.stop()
    return time.monotonic()


def _back_after_outage(gateway: Gateway, down_at: float) -> None:
    time.sleep(max(0.0, down_at + OUTAGE_SECONDS - time.monotonic()))
    gateway.start()


def _completed(ctx: Context) -> int:
    with ctx.db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Upload).where(Upload.state != "pending")) or 0
        )


def test_s3_down_during_ingest_loses_nothing(
    tmp_path: Path, settings: Settings, gateway: Gateway
) -> None:
    ctx = Context(settings)
    ctx.store  # noqa: B018  (creates the bucket)
    key = create_device(ctx, None, "dock-s3-outage").key
    camera = camera_folder(tmp_path / "camera", make_clips(tmp_path / "clips", CLIPS, tag="s3"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")},
        "EVIDENCE_DEVICE_KEY": key,
        "PYTHONPATH": str(REPO),
    }
    # The worker starts only once S3 is down, with uploads already handed to it: its first
    # attempts must fail and be retried, not dropped until the stalled-upload sweep.
    with running_store(settings, tmp_path / "logs", workers=0) as server:
        docking = subprocess.Popen(
            [sys.executable, "-m", "cli", "dock", str(camera), "--api", server.url],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: _completed(ctx) > 0, 120, "the first completed upload")
        down_at = _outage(gateway)
        server.start_worker(concurrency=2)
        _back_after_outage(gateway, down_at)
        _, err = docking.communicate(timeout=600)
        print(f"\ndock during the outage: exit {docking.returncode}\n{err[-2000:]}")
        assert "Traceback" not in err, err
        if docking.returncode != 0:
            failed = [line for line in err.splitlines() if "FAILED" in line]
            assert failed and docking.returncode == 1, err
            rerun = dock(camera, server.url, key)
            assert rerun.returncode == 0, rerun.stderr
        # Within a minute or two of S3's return the workers have finished every upload by
        # themselves (task retries with backoff), long before the 10-minute sweep.
        wait_processed(ctx, CLIPS, 180, extra=lambda: server.log("worker0")[-4000:])
    assert_nothing_lost(ctx, docked_files(camera))


def test_s3_down_during_a_scrub_is_reported_and_a_rerun_completes(
    tmp_path: Path, settings: Settings, gateway: Gateway
) -> None:
    ctx = Context(settings)
    ctx.store  # noqa: B018  (creates the bucket)
    key = create_device(ctx, None, "dock-s3-scrub").key
    camera = camera_folder(tmp_path / "camera", make_clips(tmp_path / "clips", 5, tag="scrub"))
    with running_store(settings, tmp_path / "logs", concurrency=2) as server:
        assert dock(camera, server.url, key).returncode == 0
        wait_processed(ctx, 5, 240, extra=lambda: server.log("worker0")[-4000:])

    env = process_env(settings)
    argv = [sys.executable, "-m", "cli", "scrub", "--batch-size", "1"]
    # Slowed to 20 kB/s so the outage falls in the middle of the pass.
    scrubbing = subprocess.Popen(
        [*argv, "--rate", "0.02"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: _entries(ctx, "scrub.batch") > 0, 120, "the first scrub batch")
    down_at = _outage(gateway)
    out, err = scrubbing.communicate(timeout=300)
    print(f"\nscrub during the outage: exit {scrubbing.returncode}\n{out[-1000:]}\n{err[-2000:]}")
    assert scrubbing.returncode == 1, out + err
    assert "Traceback" not in err, err
    assert "unreachable" in err or "cannot reach" in err, err
    assert _entries(ctx, "integrity.failed") == 0, "an outage is not a missing object"

    _back_after_outage(gateway, down_at)
    again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "OK: every stored object matches its recorded SHA-256" in again.stdout
    assert _entries(ctx, "integrity.failed") == 0
    assert_nothing_lost(ctx, docked_files(camera))


def _entries(ctx: Context, kind: str) -> int:
    with ctx.db.session() as s:
        return len(s.scalars(select(LedgerEntry.idx).where(LedgerEntry.type == kind)).all())
