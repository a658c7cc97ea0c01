"""A full disk: ffmpeg's "No space left on device" is named DiskFull (not a codec problem)
and retried until space returns; the API says 507 and that the disk is full; nothing
half-stored is counted as stored; signing in needs no free disk."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from evidence.accounts.service import create_device, create_user
from evidence.clips.models import Clip, Derivative
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import DiskFull
from evidence.ingest.models import Upload
from evidence.ingest.service import process_upload
from evidence.media.derivatives import transcode_proxy
from tests.conftest import sqlite_only
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.faults import (
    RECOVERED_WITHIN,
    assert_nothing_lost,
    clips_ready,
    running_worker,
    small_disk,
    wait_for,
)
from tests.fixtures.ingest import Dock
from tests.fixtures.media import Clip as ClipFile

pytestmark = pytest.mark.fault
MiB = 1024 * 1024


def test_ffmpeg_out_of_space_is_disk_full_and_leaves_no_partial_file(
    clip_1080p: ClipFile, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "full", 64 * 1024) as disk:
        with pytest.raises(DiskFull) as raised:
            transcode_proxy(
                clip_1080p.path, disk.path / "proxy.mp4", input_sha256=clip_1080p.sha256
            )
        assert "disk is full" in str(raised.value) and "libx264" not in str(raised.value)
        assert list(disk.path.iterdir()) == []


@sqlite_only
def test_a_worker_out_of_disk_retries_and_finishes_when_space_returns(
    ctx: Context, clip_1080p: ClipFile, tmp_path: Path
) -> None:
    """The worker's work directory has no room for the proxy. (The original itself is read
    in place from the local store, never copied there: docs/ingest.md.)"""
    key = create_device(ctx, None, "dock-full").key
    log = tmp_path / "worker.log"
    with (
        small_disk(ctx.settings.data_dir / "work", 16 * 1024) as disk,
        running_api(ctx.settings) as api,
        running_worker(ctx.settings, beat=False, log=log),
    ):
        done = Dock(httpx.Client(base_url=api, timeout=30), key).dock(clip_1080p)
        wait_for(
            lambda: log.read_text(errors="replace").count("DiskFull") >= 2,
            120,
            "the worker meeting the full disk and retrying",
        )
        with ctx.db.session() as s:
            assert s.get(Upload, done["id"]).state == "processing"
            assert s.get(Clip, done["clip_id"]).state == "stored"  # the original is safe
            assert s.scalars(select(Derivative)).all() == []  # nothing half-made counted
        assert "libx264" not in log.read_text(errors="replace")
        disk.resize(256 * MiB)
        took = wait_for(
            lambda: clips_ready(ctx, [clip_1080p]),
            RECOVERED_WITHIN,
            "the clip finished after space returned",
        )
        print(f"ready {took:.1f} s after space returned")
    assert_nothing_lost(ctx, [clip_1080p])


@sqlite_only
def test_a_full_object_store_answers_507_and_signing_in_still_works(
    tmp_path: Path, database_url: str, clip_1080p: ClipFile
) -> None:
    with small_disk(tmp_path / "objects", 256 * 1024) as disk:
        settings: Settings = make_settings(tmp_path, database_url, storage_dir=disk.path)
        ctx = Context(settings)
        key = create_device(ctx, None, "dock-507").key
        create_user(ctx, "auditor1", "auditor", "a long enough password")
        with running_api(settings) as api:
            dock = Dock(httpx.Client(base_url=api, timeout=30), key)
            declared = dock.declare(clip_1080p).json()
            (part,) = declared["parts"]
            put = httpx.put(part["url"], content=clip_1080p.path.read_bytes(), timeout=60)
            assert put.status_code == 507, put.text
            assert put.headers["content-type"] == "application/problem+json"
            assert "disk is full" in put.json()["detail"]
            assert dock.complete(declared["id"]).status_code == 409  # nothing half-stored
            token = httpx.post(
                f"{api}/api/v1/auth/token",
                data={"username": "auditor1", "password": "a long enough password"},
            )
            assert token.status_code == 200, token.text

            disk.resize(256 * MiB)
            again = dock.declare(clip_1080p).json()
            dock.send(clip_1080p, again)
            assert dock.complete(again["id"]).status_code == 202
        assert process_upload(ctx, again["id"]) == "stored"
        assert_nothing_lost(ctx, [clip_1080p])


def test_signing_in_with_the_databases_own_disk_full_is_a_clear_507_never_unrecorded(
    tmp_path: Path,
) -> None:
    """Sign-in writes nothing but the database; if the SQLite database's own disk is full
    its ledger entry cannot be written, so it is refused, saying why, until space returns."""
    from evidence.migrate import upgrade

    with small_disk(tmp_path / "disk", 24 * MiB) as disk:
        url = f"sqlite:///{disk.path}/evidence.db"
        upgrade(url)
        ctx = Context(make_settings(disk.path, url))
        create_user(ctx, "auditor1", "auditor", "a long enough password")
        form = {"username": "auditor1", "password": "a long enough password"}
        with running_api(ctx.settings) as api:
            assert httpx.post(f"{api}/api/v1/auth/token", data=form).status_code == 200
            filler = disk.path / "filler"
            with filler.open("wb") as f, pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 65536)
            refused = httpx.post(f"{api}/api/v1/auth/token", data=form)
            assert refused.status_code == 507, refused.text
            assert "database cannot record" in refused.json()["detail"]
            assert "disk is full" in refused.json()["detail"]
            filler.unlink()
            assert httpx.post(f"{api}/api/v1/auth/token", data=form).status_code == 200
        entries = ctx.ledger.entries_about(f"user:{_user_id(ctx, 'auditor1')}")
        signed_in = [e for _, e in entries if json.loads(e)["type"] == "user.logged_in"]
        assert len(signed_in) == 2, (
            "each sign-in that succeeded is recorded, the refused one is not"
        )
        ctx.db.dispose()


def _user_id(ctx: Context, name: str) -> str:
    from evidence.accounts.models import User

    with ctx.db.session() as s:
        return s.scalar(select(User.id).where(User.username == name))
