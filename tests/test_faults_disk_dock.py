"""Fault suite: the local object store's disk fills up.

The store's directory is a small tmpfs of its own. A filler file leaves room for the first
part of a two-part clip but not the second: docking it must fail clearly (no traceback),
count nothing half-stored as stored (no original, no `clip.ingested` entry), and once space
returns (the filler deleted) the next dock run stores it, with nothing lost or duplicated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from evidence.accounts.service import create_device
from evidence.clips.models import Clip
from evidence.config import Settings
from evidence.context import Context
from evidence.ledger.models import LedgerEntry
from evidence.storage import DEFAULT_PART_SIZE, original_key
from tests.conftest import sqlite_only
from tests.fixtures.databases import make_settings
from tests.fixtures.faults import small_disk
from tests.fixtures.media import Clip as ClipFile
from tests.fixtures.store_faults import (
    assert_nothing_lost,
    camera_folder,
    dock,
    docked_files,
    make_clips,
    running_store,
    wait_processed,
)

pytestmark = [pytest.mark.fault, pytest.mark.timeout(600)]

MiB = 1024 * 1024


@pytest.fixture(name="small_disk")
def _small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs mounted for this test alone (the object store's whole disk)."""
    with small_disk(tmp_path / "disk", 64 * MiB) as disk:
        yield disk.path


def _fill(mount: Path, leave: int) -> Path:
    """Write a filler file until only `leave` bytes are free on `mount`."""
    filler = mount / "filler"
    st = os.statvfs(mount)
    size = st.f_bavail * st.f_frsize - leave
    with filler.open("wb") as f:
        block = b"\0" * MiB
        while size > 0:
            size -= f.write(block[: min(size, MiB)])
        f.flush()
        os.fsync(f.fileno())
    return filler


@dataclass
class FullDisk:
    settings: Settings
    ctx: Context
    key: str
    big: ClipFile
    camera: Path
    filler: Path


def _full_disk(tmp_path: Path, database_url: str, disk: Path) -> FullDisk:
    """A store on `disk`, a camera with a small clip and a two-part one, and the disk filled
    so that part 1 of the big clip fits and part 2 does not."""
    settings = make_settings(tmp_path, database_url, storage_dir=disk / "objects")
    ctx = Context(settings)
    key = create_device(ctx, None, "dock-disk").key
    (big,) = make_clips(tmp_path / "big", 1, tag="big", size="1280x720", seconds=12, lossless=True)
    assert big.size > DEFAULT_PART_SIZE + 2 * MiB, "the clip must need two parts"
    (small,) = make_clips(tmp_path / "small", 1, tag="small")
    camera = camera_folder(tmp_path / "camera", [small, big])
    ctx.store  # noqa: B018  (creates the store's directories before the disk is filled)
    filler = _fill(disk, DEFAULT_PART_SIZE + (big.size - DEFAULT_PART_SIZE) // 2)
    return FullDisk(settings, ctx, key, big, camera, filler)


# The local object store is the embedded profile's, which runs on SQLite.
@sqlite_only
def test_a_full_disk_fails_the_clip_clearly_and_the_next_run_stores_it(
    tmp_path: Path, database_url: str, small_disk: Path
) -> None:
    full = _full_disk(tmp_path, database_url, small_disk)
    settings, ctx, key, big, camera, filler = (
        full.settings,
        full.ctx,
        full.key,
        full.big,
        full.camera,
        full.filler,
    )
    with running_store(settings, tmp_path / "logs") as server:
        # A dock station waits out a full disk for a while (--wait-for-api); here it gives up
        # after a few seconds so that the clip's failure is seen.
        first = dock(camera, server.url, key, "--retries", "2", "--wait-for-api", "5")
        assert first.returncode == 1, first.stderr
        assert "Traceback" not in first.stderr, first.stderr
        failed = [line for line in first.stderr.splitlines() if "FAILED" in line]
        assert len(failed) == 1 and big.path.name in failed[0], first.stderr
        print(f"\nthe dock said: {failed[0]}")
        wait_processed(ctx, 1, 120, extra=lambda: server.log("worker0")[-3000:])
        _assert_not_stored(ctx, big.sha256)

        filler.unlink()  # space returns
        second = dock(camera, server.url, key)
        assert second.returncode == 0, second.stderr
        wait_processed(ctx, 2, 300, extra=lambda: server.log("worker0")[-3000:])
    assert_nothing_lost(ctx, docked_files(camera))


@sqlite_only
def test_a_full_disk_is_named_in_the_docks_message(
    tmp_path: Path, database_url: str, small_disk: Path
) -> None:
    full = _full_disk(tmp_path, database_url, small_disk)
    # No worker here: the dock need not wait for verdicts, nor wait long for the disk.
    with running_store(full.settings, tmp_path / "logs", workers=0) as server:
        first = dock(
            full.camera,
            server.url,
            full.key,
            "--retries",
            "2",
            "--wait",
            "0",
            "--wait-for-api",
            "5",
        )
    (failed,) = [line for line in first.stderr.splitlines() if "FAILED" in line]
    assert full.big.path.name in failed
    assert any(
        words in failed.lower()
        for words in ("disk is full", "no space", "out of space", "insufficient storage")
    ), failed


def _assert_not_stored(ctx: Context, sha256: str) -> None:
    with ctx.db.session() as s:
        assert s.scalars(select(Clip).where(Clip.sha256 == sha256)).all() == [], (
            "no clip row for bytes that never fully arrived"
        )
        ingested = [
            json.loads(e)
            for e in s.scalars(select(LedgerEntry.entry).where(LedgerEntry.type == "clip.ingested"))
        ]
    assert sha256 not in {e["sha256"] for e in ingested}
    assert not ctx.store.exists(original_key(sha256))
