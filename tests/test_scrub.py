"""The scrubber re-hashes real stored objects against the database's hashes and raises the
alarm in the ledger, the clip's integrity, the log and /metrics when bytes change or vanish.

Clips are inserted directly (original, derivatives, a clip.ingested entry): what is tested
here is the scrubber, not ingest. Corruption is real: bytes changed in the local store's file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app as cli
from evidence import clock
from evidence.accounts.models import User
from evidence.accounts.service import create_user
from evidence.bundles.models import Bundle
from evidence.cases.models import Case
from evidence.clips.models import Clip, Derivative
from evidence.context import Context
from evidence.retention.models import Disposal
from evidence.scrub.models import ScrubCursor
from evidence.scrub.service import MB, Throttle, scrub, sums_lines
from evidence.storage import original_key
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.people import login

T0 = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)


def add_clip(ctx: Context, seed: str, *, state: str = "ready", derivatives: bool = True) -> str:
    """A stored clip: its original, a proxy and a thumbnail, and its clip.ingested entry."""
    data = f"original bytes of {seed} ".encode() * 500
    sha = hashlib.sha256(data).hexdigest()
    clip_id = str(uuid.uuid4())
    ctx.store.put_original(BytesIO(data), sha)
    with ctx.db.write_session() as s:
        s.add(
            Clip(
                id=clip_id,
                sha256=sha,
                size=len(data),
                state=state,
                ingested_at=clock.now(),
                filename=f"{seed}.mp4",
            )
        )
        s.flush()
        if derivatives:
            for kind in ("proxy", "thumbnail"):
                body = f"{kind} of {seed}".encode() * 100
                key = f"derived/{clip_id}/{kind}"
                stored = ctx.store.put(key, BytesIO(body))
                s.add(
                    Derivative(
                        clip_id=clip_id,
                        kind=kind,
                        key=key,
                        sha256=stored.sha256,
                        size=stored.size,
                        recipe={"test": True},
                        created_at=clock.now(),
                    )
                )
                ctx.ledger.append_in(
                    s,
                    "derivative.created",
                    actor="system:test",
                    subject={"clip": clip_id},
                    kind=kind,
                    key=key,
                    sha256=stored.sha256,
                    size=stored.size,
                )
        ctx.ledger.append_in(
            s,
            "clip.ingested",
            actor="system:test",
            subject={"clip": clip_id},
            sha256=sha,
            size=len(data),
            original=original_key(sha),
        )
    return clip_id


def entries(ctx: Context, type_: str) -> list[dict]:
    return [
        e
        for _, raw in ctx.ledger.entries(0, ctx.ledger.size())
        if (e := json.loads(raw))["type"] == type_
    ]


def clip_row(ctx: Context, clip_id: str) -> Clip:
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
        assert clip is not None
        return clip


def local_file(ctx: Context, key: str) -> Path:
    """Where the local store keeps an object's bytes (docs/storage.md: `{root}/{key}`)."""
    return ctx.settings.resolved_storage_dir().joinpath(*key.split("/"))


def overwrite(path: Path, data: bytes) -> None:
    """Change bytes on disk behind the store's back, as bit rot or an operator would.
    Write-once objects are 0444: the fault needs the permission changed first."""
    mode = path.stat().st_mode
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, mode)


@pytest.fixture
def fixed_clock() -> Iterator[list[dt.datetime]]:
    now = [T0]
    clock.set_clock(lambda: now[0])
    yield now


# --- a clean pass ----------------------------------------------------------------------------


def test_clean_pass_commits_each_batch_hashes(ctx: Context, fixed_clock) -> None:
    ids = [add_clip(ctx, f"clip-{n}") for n in range(3)]
    report = scrub(ctx, batch_size=4)
    assert report.ok and report.finished_pass
    assert (report.checked, report.total, report.batches) == (9, 9, 3)  # ceil(9 / 4)
    batches = entries(ctx, "scrub.batch")
    assert [b["objects"] for b in batches] == [4, 4, 1]
    assert all(b["actor"] == "system:scrubber" and b["subject"] == {} for b in batches)
    assert all(b["failures"] == 0 for b in batches)
    # An auditor holding the objects recomputes each batch's commitment in key order.
    keys = sorted(
        [original_key(clip_row(ctx, i).sha256) for i in ids]
        + [f"derived/{i}/{k}" for i in ids for k in ("proxy", "thumbnail")]
    )
    for n, batch in enumerate(batches):
        chunk = keys[n * 4 : (n + 1) * 4]
        assert (batch["first_key"], batch["last_key"]) == (chunk[0], chunk[-1])
        lines = "".join(
            f"{hashlib.sha256(b''.join(ctx.store.open(k))).hexdigest()}  {k}\n" for k in chunk
        )
        assert batch["sums_sha256"] == hashlib.sha256(lines.encode()).hexdigest()
        assert batch["bytes"] == sum(ctx.store.stat(k).size for k in chunk)
    for i in ids:
        clip = clip_row(ctx, i)
        assert (clip.integrity, clip.integrity_checked_at, clip.integrity_error) == ("ok", T0, None)
    assert entries(ctx, "integrity.failed") == []


def test_ready_bundles_are_scrubbed_and_skipped_clips_are_not(ctx: Context) -> None:
    add_clip(ctx, "kept")
    gone = add_clip(ctx, "disposed", derivatives=False)
    approved = add_clip(ctx, "approved", derivatives=False)
    add_clip(ctx, "in flight", state="verifying", derivatives=False)
    with ctx.db.write_session() as s:
        s.get(Clip, gone).state = "disposed"
        s.add(
            Disposal(
                clip_id=approved,
                state="approved",
                due_at=clock.now(),
                rule="test",
                created_at=clock.now(),
            )
        )
        user = User(
            username="eo", role="evidence_officer", password_hash="x", created_at=clock.now()
        )
        s.add(user)
        s.flush()
        case = Case(title="t", reference="R1", created_by=user.id, created_at=clock.now())
        s.add(case)
        s.flush()
        zipped = b"PK bundle bytes" * 100
        stored = ctx.store.put("bundles/b1.zip", BytesIO(zipped))
        s.add(
            Bundle(
                id="b1",
                case_id=case.id,
                requested_by=user.id,
                state="ready",
                key="bundles/b1.zip",
                tree_size=1,
                sha256=stored.sha256,
                size=stored.size,
                options={},
                created_at=clock.now(),
            )
        )
        ctx.ledger.append_in(
            s,
            "bundle.exported",
            actor="system:test",
            subject={"bundle": "b1"},
            key="bundles/b1.zip",
            sha256=stored.sha256,
            size=stored.size,
        )
    # A disposal deletes the objects before its tombstone: their absence is not a failure.
    for clip_id in (gone, approved):
        path = local_file(ctx, original_key(clip_row(ctx, clip_id).sha256))
        os.chmod(path, 0o644)
        path.unlink()
    report = scrub(ctx)
    assert report.ok and report.checked == 4  # the kept clip's 3 objects and the bundle
    (batch,) = entries(ctx, "scrub.batch")
    assert batch["first_key"] == "bundles/b1.zip"
    overwrite(local_file(ctx, "bundles/b1.zip"), b"tampered")
    report = scrub(ctx)
    assert [(f.key, f.problem, f.bundle_id) for f in report.failures] == [
        ("bundles/b1.zip", "mismatch", "b1")
    ]
    (failed,) = entries(ctx, "integrity.failed")
    assert failed["subject"] == {"bundle": "b1"}
    assert failed["actual"] == hashlib.sha256(b"tampered").hexdigest()


# --- corruption, loss and restore ------------------------------------------------------------


def test_corrupted_object_raises_every_alarm_then_restore_clears_it(
    tmp_path: Path,
    sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    fixed_clock,
) -> None:
    ctx = Context(make_settings(tmp_path, sqlite_url))
    clip_id = add_clip(ctx, "victim")
    add_clip(ctx, "bystander")
    key = original_key(clip_row(ctx, clip_id).sha256)
    path = local_file(ctx, key)
    good = path.read_bytes()
    bad = bytearray(good)
    bad[100] ^= 0x01  # one flipped bit
    overwrite(path, bytes(bad))
    actual = hashlib.sha256(bad).hexdigest()

    with caplog.at_level(logging.ERROR, logger="evidence.scrub"):
        report = scrub(ctx, batch_size=2)
    assert [(f.key, f.problem, f.actual, f.clip_id) for f in report.failures] == [
        (key, "mismatch", actual, clip_id)
    ]
    (failed,) = entries(ctx, "integrity.failed")
    assert failed["subject"] == {"clip": clip_id} and failed["actor"] == "system:scrubber"
    assert (failed["key"], failed["expected"], failed["actual"], failed["problem"]) == (
        key,
        clip_row(ctx, clip_id).sha256,
        actual,
        "mismatch",
    )
    assert sum(b["failures"] for b in entries(ctx, "scrub.batch")) == 1
    errors = [
        r for r in caplog.records if r.name == "evidence.scrub" and r.levelno == logging.ERROR
    ]
    assert len(errors) == 1 and key in errors[0].getMessage() and clip_id in errors[0].getMessage()
    clip = clip_row(ctx, clip_id)
    assert clip.integrity == "failed" and key in clip.integrity_error
    assert "docs/backup.md" in clip.integrity_error

    # The API's clip detail, the UI's clip page and /metrics show it.
    create_user(ctx, "eo", "evidence_officer", "correct horse battery staple")
    scraper = {"Authorization": "Bearer scrape-me"}  # the monitoring system's token
    with running_api(
        ctx.settings.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    ) as url:
        http = httpx.Client(base_url=url, timeout=30)
        token = login(http, "eo")
        d = http.get(
            f"/api/v1/clips/{clip_id}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert d["integrity"]["status"] == "FAILED"
        assert d["integrity"]["scrub"]["status"] == "failed"
        assert key in d["integrity"]["scrub"]["error"]
        assert d["integrity"]["scrub"]["checked_at"] == "2026-11-26T03:00:00.000000Z"
        page = ui_clip_page(url, clip_id)
        assert 'data-integrity="FAILED"' in page and "Integrity check FAILED" in page
        assert 'data-scrub="failed"' in page and key in page
        metrics = http.get("/metrics", headers=scraper).text
        assert metric(metrics, "evidence_integrity_failures") == 1
        assert metric(metrics, "evidence_scrub_last_batch_timestamp_seconds") == T0.timestamp()

        # The CLI names it and exits 1.
        monkeypatch.setenv("EVIDENCE_DATA_DIR", str(ctx.settings.data_dir))
        monkeypatch.setenv("EVIDENCE_DATABASE_URL", sqlite_url)
        from evidence.config import get_settings

        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(cli, ["scrub", "--batch-size", "3"])
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 1, result.output
        assert f"FAILED {key}: clip {clip_id}: mismatch" in result.stdout
        assert "docs/backup.md" in result.output and "1 failures" in result.stdout
        assert "scrubbed 3/6 objects" in result.stderr

        # Passes again: the failure is counted, not entered in the ledger again.
        assert len(scrub(ctx).failures) == 1
        assert len(entries(ctx, "integrity.failed")) == 1

        # The bytes restored from backup: integrity.restored, and the alarm stops.
        fixed_clock[0] = T0 + dt.timedelta(hours=1)
        overwrite(path, good)
        report = scrub(ctx)
        assert report.ok and report.restored == [key]
        (restored,) = entries(ctx, "integrity.restored")
        assert restored["subject"] == {"clip": clip_id} and restored["key"] == key
        clip = clip_row(ctx, clip_id)
        assert (clip.integrity, clip.integrity_error) == ("ok", None)
        assert (
            metric(http.get("/metrics", headers=scraper).text, "evidence_integrity_failures") == 0
        )
        token = login(http, "eo")  # the clock moved past the first token's expiry
        d = http.get(
            f"/api/v1/clips/{clip_id}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert d["integrity"]["status"] == "verified" and d["integrity"]["scrub"]["status"] == "ok"
        assert "Stored bytes: verified 2026-11-26 04:00:00 UTC" in ui_clip_page(url, clip_id)


def ui_clip_page(url: str, clip_id: str) -> str:
    """The review UI's clip page, signed in through the sign-in form as a browser would."""
    with httpx.Client(base_url=url, timeout=30, headers={"Origin": url}) as browser:
        form = browser.get("/ui/login").text
        nonce = re.search(r'name="nonce" value="([^"]+)"', form)
        assert nonce, form
        r = browser.post(
            "/ui/login",
            data={
                "username": "eo",
                "password": "correct horse battery staple",
                "acknowledge": "yes",
                "nonce": nonce[1],
            },
        )
        assert r.status_code == 303, r.text
        page = browser.get(f"/ui/clips/{clip_id}")
        assert page.status_code == 200, page.text
        return page.text


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_deleted_object_is_reported_missing(ctx: Context) -> None:
    clip_id = add_clip(ctx, "proxy lost")
    key = f"derived/{clip_id}/proxy"
    ctx.store.delete(key)
    report = scrub(ctx)
    assert [(f.key, f.problem, f.actual) for f in report.failures] == [(key, "missing", None)]
    (failed,) = entries(ctx, "integrity.failed")
    assert failed["problem"] == "missing" and failed["actual"] is None
    (batch,) = entries(ctx, "scrub.batch")
    # The batch commits only to what was found: the missing object is not in its lines.
    assert batch["objects"] == 3 and batch["failures"] == 1
    clip = clip_row(ctx, clip_id)
    assert clip.integrity == "failed" and f"{key} is missing" in clip.integrity_error
    # A failure of one object is not cleared by another object of the clip checking good.
    scrub(ctx)
    assert clip_row(ctx, clip_id).integrity == "failed"
    assert len(entries(ctx, "integrity.failed")) == 1


def test_an_object_that_cannot_be_read_is_reported_unreadable(ctx: Context) -> None:
    """A damaged file is a failure of that object, not the end of the run. The fault is made
    for real: the proxy's file becomes a symlink to itself, so reading it fails with an
    OS error (ELOOP), as a bad sector's EIO would."""
    clip_id = add_clip(ctx, "proxy damaged")
    key = f"derived/{clip_id}/proxy"
    path = ctx.store.root / key  # type: ignore[attr-defined]
    path.unlink()
    path.symlink_to(path.name)
    report = scrub(ctx)
    assert [(f.key, f.problem) for f in report.failures] == [(key, "unreadable")]
    assert report.checked == 3, "the run went on to the other objects"
    (failed,) = entries(ctx, "integrity.failed")
    assert failed["problem"] == "unreadable"
    assert "could not be read back" in clip_row(ctx, clip_id).integrity_error


def test_a_rewritten_database_hash_is_caught_against_the_ledger(ctx: Context) -> None:
    """Someone swaps a proxy and rewrites its hash in the database to match: the bytes agree
    with the database, but no ledger entry vouches for that hash."""
    clip_id = add_clip(ctx, "proxy swapped")
    key = f"derived/{clip_id}/proxy"
    forged = b"a different proxy" * 50
    overwrite(local_file(ctx, key), forged)
    with ctx.db.write_session() as s:
        d = s.scalar(select(Derivative).where(Derivative.key == key))
        assert d is not None
        d.sha256 = hashlib.sha256(forged).hexdigest()
    report = scrub(ctx)
    assert [(f.key, f.problem) for f in report.failures] == [(key, "unvouched")]
    (failed,) = entries(ctx, "integrity.failed")
    assert (
        failed["problem"] == "unvouched"
        and failed["expected"] == hashlib.sha256(forged).hexdigest()
    )
    assert "no ledger entry vouches" in clip_row(ctx, clip_id).integrity_error


def test_scheduled_cursor_resumes_and_wraps(ctx: Context, fixed_clock) -> None:
    for n in range(5):
        add_clip(ctx, f"c{n}", derivatives=False)
    with ctx.db.session() as s:
        keys = sorted(original_key(c.sha256) for c in s.scalars(select(Clip)))

    def run() -> list[str]:
        before = len(entries(ctx, "scrub.batch"))
        scrub(ctx, cursor="scheduled", max_objects=2, batch_size=10)
        return [(b["first_key"], b["last_key"]) for b in entries(ctx, "scrub.batch")[before:]]

    def cursor() -> ScrubCursor:
        with ctx.db.session() as s:
            return s.get(ScrubCursor, "scheduled")

    assert run() == [(keys[0], keys[1])]
    assert cursor().last_key == keys[1] and cursor().pass_started_at == T0
    assert run() == [(keys[2], keys[3])]
    fixed_clock[0] = T0 + dt.timedelta(hours=1)
    # The end of the pass: the last object, then a new pass from the start.
    assert run() == [(keys[4], keys[4]), (keys[0], keys[0])]
    assert cursor().last_key == keys[0] and cursor().pass_started_at == T0 + dt.timedelta(hours=1)
    assert run() == [(keys[1], keys[2])]
    # A run bigger than the store checks each object once, wrapping round to where it began.
    scrub(ctx, cursor="scheduled", max_objects=100)
    last = entries(ctx, "scrub.batch")[-2:]
    assert [(b["first_key"], b["last_key"]) for b in last] == [
        (keys[3], keys[4]),
        (keys[0], keys[2]),
    ]


def test_throttle_arithmetic() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    t = Throttle(2 * MB, now=lambda: now[0], sleep=sleep)
    t.consume(1 * MB)  # 1 MB at 2 MB/s is due at +0.5 s
    assert slept == [pytest.approx(0.5)]
    now[0] += 0.25  # hashing took a quarter second: only the rest is slept
    t.consume(1 * MB)
    assert slept[-1] == pytest.approx(0.25)
    now[0] += 10  # a long pause is not banked as a burst...
    t.consume(1 * MB)
    assert len(slept) == 2
    t.consume(1 * MB)  # ...the window restarted after it
    assert slept[-1] == pytest.approx(0.5)
    assert t.wait_for(now[0]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        Throttle(0)


def test_sums_lines_are_sha256sum_format() -> None:
    from evidence.scrub.service import Checked, Target

    results = [
        Checked(Target("a/b", "0" * 64, "original"), "1" * 64, 3),
        Checked(Target("a/c", "2" * 64, "original"), None, 0),
    ]
    assert sums_lines(results) == f"{'1' * 64}  a/b\n"


def test_beat_schedules_the_scrub_and_the_task_uses_the_scheduled_cursor(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from evidence import queue
    from evidence.config import get_settings
    from workers import tasks
    from workers.app import make_celery

    ctx = Context(make_settings(tmp_path, sqlite_url))
    entry = make_celery(ctx.settings).conf.beat_schedule["scrub-objects"]
    assert entry["task"] == queue.SCRUB and entry["schedule"] == 3600.0
    assert entry["options"] == {"expires": 3600.0}
    for n in range(3):
        add_clip(ctx, f"task-{n}", derivatives=False)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("EVIDENCE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("EVIDENCE_SCRUB_OBJECTS_PER_RUN", "2")
    monkeypatch.setattr(tasks, "_ctx", None)
    get_settings.cache_clear()
    try:
        result = tasks.scrub.apply().get()
        assert tasks.scrub.name == queue.SCRUB
    finally:
        get_settings.cache_clear()
    assert result == {"checked": 2, "bytes": result["bytes"], "failures": 0}
    with ctx.db.session() as s:
        assert (
            s.get(ScrubCursor, "scheduled").last_key == entries(ctx, "scrub.batch")[-1]["last_key"]
        )


# --- on a real S3 server --------------------------------------------------------------------


@pytest.fixture
def s3_ctx(s3_server, s3_bucket: str, tmp_path: Path, sqlite_url: str) -> Context:
    return Context(s3_server.settings(s3_bucket, tmp_path / "var", database_url=sqlite_url))


def test_s3_clean_pass_then_missing_derivative(s3_ctx: Context) -> None:
    clip_id = add_clip(s3_ctx, f"s3-{uuid.uuid4()}")
    report = scrub(s3_ctx, batch_size=2)
    assert report.ok and report.checked == 3 and report.batches == 2
    key = f"derived/{clip_id}/thumbnail"
    s3_ctx.store.delete(key)
    report = scrub(s3_ctx)
    assert [(f.key, f.problem) for f in report.failures] == [(key, "missing")]
    assert clip_row(s3_ctx, clip_id).integrity == "failed"
