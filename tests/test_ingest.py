"""The ingest path: declare, upload through presigned URLs, complete, verify, promote,
probe and derive — every step in the ledger, nothing lost, nothing done twice."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from evidence import queue
from evidence.accounts.service import create_device
from evidence.clips.models import Clip, ClipState, Derivative
from evidence.context import Context
from evidence.ingest.models import Upload
from evidence.ingest.service import process_upload
from evidence.media.probe import probe
from evidence.storage import original_key
from tests.conftest import postgres_only, sqlite_only
from tests.fixtures.api import running_api
from tests.fixtures.ingest import Dock
from tests.fixtures.media import Clip as ClipFile

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md


@pytest.fixture
def station(ctx: Context):
    key = create_device(ctx, None, "dock-station-1").key
    with running_api(ctx.settings) as url:
        http = httpx.Client(base_url=url, timeout=30)
        ctx.settings = ctx.settings.model_copy(update={"public_url": url})
        yield Dock(http, key), ctx


def entries_about(ctx: Context, ref: str) -> list[dict]:
    return [json.loads(e) for _, e in ctx.ledger.entries_about(ref)]


def test_a_docked_clip_becomes_a_verified_original_with_proxy_and_thumbnail(
    station, clip_with_sidecar: ClipFile
) -> None:
    dock, ctx = station
    done = dock.dock(clip_with_sidecar)
    assert done["state"] == "processing" and done["clip_id"]
    assert process_upload(ctx, done["id"]) == "stored"

    with ctx.db.session() as s:
        clip = s.get(Clip, done["clip_id"])
        derivs = {
            d.kind: d for d in s.scalars(select(Derivative).where(Derivative.clip_id == clip.id))
        }
    assert clip.state == ClipState.ready and clip.sha256 == clip_with_sidecar.sha256
    assert (clip.width, clip.height, clip.video_codec, clip.frame_rate) == (
        1920,
        1080,
        "h264",
        "30/1",
    )
    assert clip.officer_id == "PC1234" and clip.camera_serial == "BWV-7781-0042"
    assert clip.recorded_at.isoformat().startswith("2024-07-03T21:45:00")
    assert ctx.store.stat(original_key(clip.sha256)).sha256 == clip.sha256
    assert not ctx.store.exists(f"incoming/{done['id']}"), "no clip is stored twice"
    assert set(derivs) == {"proxy", "thumbnail"}

    proxy_path = ctx.settings.data_dir / "proxy-check.mp4"
    with proxy_path.open("wb") as f:
        for chunk in ctx.store.open(derivs["proxy"].key):
            f.write(chunk)
    facts = probe(proxy_path)
    assert facts.playable and facts.video_codec == "h264" and facts.audio_codec == "aac"
    # H.264 High 4:2:0 1080p with AAC-LC plays in browsers as it is: the proxy is a remux, at
    # the original's size, without its tags.
    assert (facts.width, facts.height) == (1920, 1080) and "title" not in facts.tags
    assert derivs["proxy"].recipe["method"] == "remux" and "copy" in derivs["proxy"].recipe["args"]
    assert "method" not in derivs["thumbnail"].recipe

    types = [e["type"] for e in entries_about(ctx, f"clip:{clip.id}")]
    assert types == [
        "upload.completed",
        "clip.ingested",
        "retention.scheduled",
        "derivative.created",
        "derivative.created",
    ]
    ingested = entries_about(ctx, f"clip:{clip.id}")[1]
    assert ingested["sha256"] == clip.sha256 and ingested["media"]["playable"] is True
    for entry in entries_about(ctx, f"clip:{clip.id}")[3:]:
        recipe = entry["recipe"]
        assert recipe["input_sha256"] == clip.sha256 and recipe["output_sha256"] == entry["sha256"]
        assert recipe["ffmpeg_version"] and "{input}" in recipe["args"]
        assert entry["sha256"] == derivs[entry["kind"]].sha256


def test_processing_twice_records_each_step_once(station, clip_1080p: ClipFile) -> None:
    dock, ctx = station
    done = dock.dock(clip_1080p)
    process_upload(ctx, done["id"])
    process_upload(ctx, done["id"])
    types = [e["type"] for e in entries_about(ctx, f"clip:{done['clip_id']}")]
    assert types.count("clip.ingested") == 1 and types.count("derivative.created") == 2


def test_docking_the_same_bytes_again_is_one_clip_and_a_ledger_entry(
    station, clip_1080p: ClipFile
) -> None:
    dock, ctx = station
    first = dock.dock(clip_1080p)
    process_upload(ctx, first["id"])
    again = dock.declare(clip_1080p)
    assert again.status_code == 200
    assert again.json()["state"] == "exists" and "clip_id" not in again.json()
    types = [e["type"] for e in entries_about(ctx, f"upload:{again.json()['id']}")]
    assert types == ["upload.duplicate"]
    with ctx.db.session() as s:
        assert len(s.scalars(select(Clip)).all()) == 1


def test_bytes_that_do_not_match_the_declared_hash_are_rejected_and_recorded(
    station, clip_1080p: ClipFile, clip_mov: ClipFile
) -> None:
    dock, ctx = station
    # Declare the 1080p clip's hash and size but send other bytes of the same length.
    declared = dock.declare(clip_1080p).json()
    other = clip_mov.path.read_bytes()[: clip_1080p.size].ljust(clip_1080p.size, b"\0")
    for part in declared["parts"]:
        httpx.put(part["url"], content=other[part["offset"] : part["offset"] + part["size"]])
    done = dock.complete(declared["id"]).json()
    assert process_upload(ctx, done["id"]) == "rejected"
    (entry,) = [
        e for e in entries_about(ctx, f"upload:{done['id']}") if e["type"] == "upload.rejected"
    ]
    assert (
        entry["declared_sha256"] == clip_1080p.sha256
        and entry["actual_sha256"] != clip_1080p.sha256
    )
    assert not ctx.store.exists(original_key(clip_1080p.sha256))
    assert ctx.store.stat(f"quarantine/{done['id']}").size == clip_1080p.size, "loses nothing"
    status = dock.http.get(f"/api/v1/uploads/{done['id']}", headers=dock.headers).json()
    assert status["state"] == "rejected" and "hash to" in status["error"]
    # The genuine bytes docked later still become the clip.
    again = dock.dock(clip_1080p)
    assert process_upload(ctx, again["id"]) == "stored"


@pytest.mark.parametrize("name", ["truncated", "truncated-faststart", "corrupt", "empty", "text"])
def test_bad_input_is_kept_as_an_original_and_flagged(station, bad_clips, name: str) -> None:
    dock, ctx = station
    bad = bad_clips[name]
    done = dock.dock(bad)
    assert process_upload(ctx, done["id"]) == "stored"
    with ctx.db.session() as s:
        clip = s.get(Clip, done["clip_id"])
        kinds = s.scalars(select(Derivative.kind).where(Derivative.clip_id == clip.id)).all()
    assert clip.state == ClipState.unplayable and clip.media_error
    assert kinds == []
    assert ctx.store.stat(original_key(bad.sha256)).size == bad.size
    ingested = [e for e in entries_about(ctx, f"clip:{clip.id}") if e["type"] == "clip.ingested"]
    assert ingested[0]["media"]["playable"] is False and ingested[0]["media"]["error"]


def test_device_authentication_and_ownership(station, clip_1080p: ClipFile) -> None:
    dock, ctx = station
    http = dock.http
    body = {"sha256": clip_1080p.sha256, "size": clip_1080p.size, "filename": "a.mp4"}
    assert http.post("/api/v1/uploads", json=body).status_code == 401
    r = http.post("/api/v1/uploads", json=body, headers={"Authorization": "Device evd_wrong"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    declared = dock.declare(clip_1080p).json()
    other = Dock(http, create_device(ctx, None, "dock-station-2").key)
    assert other.complete(declared["id"]).status_code == 403
    assert http.get(f"/api/v1/uploads/{declared['id']}", headers=other.headers).status_code == 403
    bad = http.post("/api/v1/uploads", headers=dock.headers, json={**body, "sha256": "x" * 64})
    assert bad.status_code == 422 and "64 hex" in bad.json()["detail"]


def test_complete_names_the_missing_part(station, clip_1080p: ClipFile) -> None:
    dock, _ = station
    declared = dock.declare(clip_1080p).json()
    r = dock.complete(declared["id"])
    assert r.status_code == 409 and "part 1" in r.json()["detail"]


@sqlite_only
def test_a_worker_process_on_the_embedded_broker_processes_completed_uploads(
    station, clip_1080p: ClipFile
) -> None:
    dock, ctx = station
    env = {
        **os.environ,
        "EVIDENCE_DATA_DIR": str(ctx.settings.data_dir),
        "EVIDENCE_DATABASE_URL": ctx.db.url,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--concurrency=1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        done = dock.dock(clip_1080p)
        deadline = time.monotonic() + 120
        state = None
        while time.monotonic() < deadline:
            state = dock.http.get(f"/api/v1/uploads/{done['id']}", headers=dock.headers).json()[
                "state"
            ]
            if state == "stored":
                break
            time.sleep(0.5)
        assert state == "stored"
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=60)
    with ctx.db.session() as s:
        assert s.get(Clip, done["clip_id"]).state == ClipState.ready
    assert queue.PROCESS_UPLOAD.encode() in out


def _start_worker(ctx: Context, broker: str | None, name: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "EVIDENCE_DATA_DIR": str(ctx.settings.data_dir),
        "EVIDENCE_DATABASE_URL": ctx.db.url,
    }
    if broker:
        env["EVIDENCE_BROKER_URL"] = broker
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--concurrency=1", "--hostname", name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@postgres_only
def test_two_workers_on_redis_share_the_queue(ctx: Context, redis_url: str, good_clips) -> None:
    ctx.settings = ctx.settings.model_copy(update={"broker_url": redis_url})
    key = create_device(ctx, None, "dock-redis").key
    workers = [_start_worker(ctx, redis_url, f"w{i}@%h") for i in (1, 2)]
    try:
        with running_api(ctx.settings) as url:
            dock = Dock(httpx.Client(base_url=url, timeout=30), key)
            clips = [good_clips[n] for n in ("1080p", "mov", "tagged", "sidecar")]
            uploads = [dock.dock(c)["id"] for c in clips]
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                with ctx.db.session() as s:
                    states = [s.get(Upload, u).state for u in uploads]
                if all(st == "stored" for st in states):
                    break
                time.sleep(0.5)
            assert states == ["stored"] * 4
    finally:
        outs = []
        for w in workers:
            w.terminate()
            outs.append(w.communicate(timeout=60)[0])
    assert all(queue.PROCESS_UPLOAD.encode() in out for out in outs), "both workers took tasks"
    for u in uploads:
        with ctx.db.session() as s:
            clip_id = s.get(Upload, u).clip_id
        types = [e["type"] for e in entries_about(ctx, f"clip:{clip_id}")]
        assert types.count("derivative.created") == 2 and types.count("clip.ingested") == 1


def test_evidence_dock_on_a_folder_gives_verified_originals_and_proxies(
    station, clip_with_sidecar: ClipFile, clip_mov: ClipFile, clip_empty: ClipFile, tmp_path: Path
) -> None:
    """The issue's done-when: `evidence dock` on a camera folder, then the worker."""
    dock, ctx = station
    camera = tmp_path / "DCIM"
    camera.mkdir()
    for clip in (clip_with_sidecar, clip_mov, clip_empty):
        (camera / clip.path.name).write_bytes(clip.path.read_bytes())
    (camera / f"{clip_with_sidecar.path.stem}.json").write_text(
        json.dumps(clip_with_sidecar.sidecar)
    )
    # No worker runs yet: the dock does not wait for verdicts; the second run confirms them.
    args = [
        sys.executable,
        "-m",
        "cli",
        "dock",
        str(camera),
        "--api",
        str(dock.http.base_url),
        "--device-key",
        dock.headers["Authorization"].split()[1],
        "--wait",
        "0",
    ]
    run = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with ctx.db.session() as s:
        uploads = s.scalars(select(Upload).where(Upload.state == "processing")).all()
    assert len(uploads) == 3
    for u in uploads:
        process_upload(ctx, u.id)
    with ctx.db.session() as s:
        clips = {c.sha256: c for c in s.scalars(select(Clip))}
    assert clips[clip_with_sidecar.sha256].state == ClipState.ready
    assert clips[clip_with_sidecar.sha256].officer_id == "PC1234"
    assert clips[clip_mov.sha256].state == ClipState.ready
    assert clips[clip_empty.sha256].state == ClipState.unplayable
    assert "3 sent but not yet verified by the server" in run.stderr
    again = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0
    assert "3 uploaded" in again.stderr and "uploaded and verified" in again.stderr
    with ctx.db.session() as s:
        assert s.scalars(select(Upload).where(Upload.state == "processing")).all() == []


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """Long enough (20 s of 1080p) that a worker can be killed in the middle of its transcode."""
    from tests.fixtures.media import lavfi_inputs

    path = tmp_path_factory.mktemp("long") / "long.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-y",
            *lavfi_inputs("1920x1080", "30", 20),
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


@pytest.mark.fault
@postgres_only
def test_a_worker_killed_mid_transcode_leaves_nothing_half_done(
    ctx: Context, redis_url: str, long_clip: ClipFile
) -> None:
    """SIGKILL the whole worker during the proxy transcode: no derivative becomes visible,
    the task is delivered again and done within a minute of a worker being back, the ledger
    ends with exactly one entry per derivative, and the killed worker's work files go."""
    import signal

    from tests.fixtures.faults import RECOVERED_WITHIN, assert_nothing_lost

    broker = redis_url.rsplit("/", 1)[0] + "/3"  # a queue of its own
    ctx.settings = ctx.settings.model_copy(
        update={"broker_url": broker, "broker_visibility_timeout": 3}
    )
    env = {
        **os.environ,
        "EVIDENCE_DATA_DIR": str(ctx.settings.data_dir),
        "EVIDENCE_DATABASE_URL": ctx.db.url,
        "EVIDENCE_BROKER_URL": broker,
        "EVIDENCE_BROKER_VISIBILITY_TIMEOUT": "3",
    }
    argv = [sys.executable, "-m", "cli", "worker", "--concurrency=1"]
    key = create_device(ctx, None, "dock-kill").key
    with running_api(ctx.settings) as url:
        dock = Dock(httpx.Client(base_url=url, timeout=30), key)
        victim = subprocess.Popen(
            argv,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        done = dock.dock(long_clip)
        work = ctx.settings.data_dir / "work"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(work.rglob("*.partial")):
            time.sleep(0.05)
        assert list(work.rglob("*.partial")), "the transcode never started"
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)

        with ctx.db.session() as s:
            assert (
                s.scalars(select(Derivative).where(Derivative.clip_id == done["clip_id"])).all()
                == []
            )
        assert [o.key for o in ctx.store.list(f"derived/{done['clip_id']}/")] == []

        left = [p for p in work.iterdir() if p.is_dir()]
        assert left, "the killed worker left its work directory (the clip's copy)"
        rescuer = subprocess.Popen(
            argv,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + RECOVERED_WITHIN
            while time.monotonic() < deadline:
                with ctx.db.session() as s:
                    if s.get(Upload, done["id"]).state == "stored":
                        break
                time.sleep(0.5)
            assert time.monotonic() < deadline, "not stored within 60 s of a worker's return"
        finally:
            os.killpg(rescuer.pid, signal.SIGTERM)
            rescuer.wait(timeout=60)
    assert [p.name for p in work.iterdir() if p.is_dir()] == [], "leftover work files swept"
    assert_nothing_lost(ctx, [long_clip])
    types = [e["type"] for e in entries_about(ctx, f"clip:{done['clip_id']}")]
    assert types.count("clip.ingested") == 1
    assert types.count("derivative.created") == 2
    with ctx.db.session() as s:
        assert s.get(Clip, done["clip_id"]).state == ClipState.ready


def test_uploads_whose_task_was_lost_are_found_for_requeueing(
    station, clip_1080p: ClipFile
) -> None:
    """The embedded broker cannot redeliver after a crash; the scheduler finds such uploads."""
    import datetime as dt

    from evidence import clock
    from evidence.ingest.service import stalled_uploads

    dock, ctx = station
    done = dock.dock(clip_1080p)
    assert stalled_uploads(ctx, dt.timedelta(minutes=10)) == []
    later = clock.now() + dt.timedelta(minutes=11)
    clock.set_clock(lambda: later)
    assert stalled_uploads(ctx, dt.timedelta(minutes=10)) == [done["id"]]
    # A worker that is still at it (its heartbeat is recent) is not stalled.
    with ctx.db.write_session() as s:
        s.get(Upload, done["id"]).heartbeat_at = later
    assert stalled_uploads(ctx, dt.timedelta(minutes=10)) == []
    process_upload(ctx, done["id"])
    clock.set_clock(lambda: later + dt.timedelta(hours=1))
    assert stalled_uploads(ctx, dt.timedelta(minutes=10)) == []


def test_completing_again_hands_over_to_a_worker_only_once(station, clip_1080p: ClipFile) -> None:
    from evidence.accounts.models import Device
    from evidence.ingest.service import complete_upload

    dock, ctx = station
    declared = dock.declare(clip_1080p).json()
    dock.send(clip_1080p, declared)
    with ctx.db.session() as s:
        device = s.scalars(select(Device)).one()
    assert complete_upload(ctx, device, declared["id"]).newly is True
    again = complete_upload(ctx, device, declared["id"])
    assert again.newly is False and again.upload.state == "processing"
    process_upload(ctx, declared["id"])
    assert process_upload(ctx, declared["id"]) == "stored", "a stored upload returns at once"


def test_evidence_up_then_dock_a_folder(
    tmp_path: Path, clip_with_sidecar: ClipFile, clip_text: ClipFile, smtp
) -> None:
    """What a new user does: `make run` (evidence up) in one terminal, `evidence dock` in
    another. With an SMTP server configured, the share and the ready bundle are e-mailed."""
    import signal

    from tests.fixtures.services import free_port, wait_until

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env["EVIDENCE_DATA_DIR"] = str(tmp_path / "var")
    inbox, smtp_port = smtp
    env |= {
        "EVIDENCE_SMTP_HOST": "127.0.0.1",
        "EVIDENCE_SMTP_PORT": str(smtp_port),
        "EVIDENCE_SMTP_SECURITY": "none",
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--port", str(port)],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: _healthy(port), 60, "evidence up")
        made = subprocess.run(
            [sys.executable, "-m", "cli", "admin", "create-device", "dock-a"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = made.stdout.strip().splitlines()[-1]
        camera = tmp_path / "DCIM"
        camera.mkdir()
        for clip in (clip_with_sidecar, clip_text):
            (camera / clip.path.name).write_bytes(clip.path.read_bytes())
        docked = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "dock",
                str(camera),
                "--api",
                f"http://127.0.0.1:{port}",
                "--device-key",
                key,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert docked.returncode == 0, docked.stderr
        from evidence.config import Settings

        ctx = Context(Settings(data_dir=tmp_path / "var"))

        def all_processed() -> bool:
            with ctx.db.session() as s:
                states = sorted(c.state for c in s.scalars(select(Clip)))
            return states == ["ready", "unplayable"]

        wait_until(all_processed, 120, "the embedded worker")
        # The first account of an empty store is an admin with a password; every other
        # person chooses their own through the enrolment link the CLI prints.
        subprocess.run(
            [sys.executable, "-m", "cli", "admin", "create-user", "admin1", "--role", "admin"],
            env=env,
            input="an admin's password\n",
            capture_output=True,
            text=True,
            check=True,
        )
        token = _cli_user_token(env, f"http://127.0.0.1:{port}", "auditor1", "auditor")
        verify = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "verify",
                "ledger",
                "--api",
                f"http://127.0.0.1:{port}",
            ],
            env={**env, "EVIDENCE_TOKEN": token},
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stdout
        _cps_downloads_a_bundle_built_by_the_embedded_worker(env, port, ctx, tmp_path)
        # The embedded worker and scheduler send the notifications through the same broker.
        wait_until(lambda: len(inbox.messages) == 2, 60, "the share's and the bundle's e-mails")
        sent = sorted((to, msg["Subject"]) for to, msg in inbox.messages)
        assert [to for to, _ in sent] == [["cps1@cps.example"], ["eo1@force.example"]]
        assert "shared with you" in sent[0][1] and "bundle is ready" in sent[1][1]
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        out, _ = up.communicate(timeout=60)
    assert b"ledger verifier key:" in out
    assert f"EVIDENCE_PUBLIC_URL=http://127.0.0.1:{port}".encode() in out, (
        "links must not go to :8000"
    )


def _cps_downloads_a_bundle_built_by_the_embedded_worker(
    env: dict[str, str],
    port: int,
    ctx: Context,
    tmp_path: Path,
) -> None:
    """Issue 5's "done when": from `evidence up`, an evidence officer shares a case and asks
    for a bundle, the embedded worker builds it through the broker, the CPS user downloads
    it, and it verifies offline with our verifier and with sha256sum."""
    import zipfile

    from tests.fixtures.services import wait_until

    api = f"http://127.0.0.1:{port}"
    tokens = {}
    for name, role, email in (
        ("eo1", "evidence_officer", "eo1@force.example"),
        ("cps1", "cps", "cps1@cps.example"),
    ):
        tokens[name] = {"Authorization": "Bearer " + _cli_user_token(env, api, name, role)}
        subprocess.run(
            [sys.executable, "-m", "cli", "admin", "set-email", name, email], env=env, check=True
        )
    eo, cps = tokens["eo1"], tokens["cps1"]
    with ctx.db.session() as s:
        ready = s.scalar(select(Clip.id).where(Clip.state == "ready"))
    case = httpx.post(
        f"{api}/api/v1/cases", headers=eo, json={"title": "R v Doe", "reference": "URN 1"}
    ).json()
    assert (
        httpx.post(
            f"{api}/api/v1/cases/{case['id']}/items", headers=eo, json={"clip_ids": [ready]}
        ).status_code
        == 200
    )
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).isoformat()
    assert (
        httpx.post(
            f"{api}/api/v1/cases/{case['id']}/shares",
            headers=eo,
            json={
                "username": "cps1",
                "expires_at": until,
                "purpose": "charging decision",
                "legal_basis": "CPIA 1996",
            },
        ).status_code
        == 201
    )
    bundle = httpx.post(f"{api}/api/v1/cases/{case['id']}/bundles", headers=eo, json={}).json()
    wait_until(
        lambda: (
            httpx.get(f"{api}/api/v1/bundles/{bundle['id']}", headers=cps).json()["state"]
            == "ready"
        ),
        120,
        "the embedded worker building the bundle",
    )
    got = httpx.get(
        f"{api}/api/v1/bundles/{bundle['id']}/download",
        headers=cps,
        timeout=60,
        params={"reason": "court preparation"},
    )
    assert got.status_code == 200
    path = tmp_path / "bundle.zip"
    path.write_bytes(got.content)
    key = (tmp_path / "var" / "keys" / "ledger.pub").read_text().strip()
    checked = subprocess.run(
        [sys.executable, "-m", "cli", "verify", "bundle", str(path), "--key", key],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / "bundle")
    sums = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "bundle", capture_output=True, text=True
    )
    assert sums.returncode == 0, sums.stdout + sums.stderr


def _cli_user_token(env: dict[str, str], api: str, name: str, role: str) -> str:
    """What an operator and a new user do: `evidence admin create-user` prints an enrolment
    link, the user opens it to choose a password, then signs in."""
    invited = subprocess.run(
        [sys.executable, "-m", "cli", "admin", "create-user", name, "--role", role],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    link = invited.stdout.strip().splitlines()[-1]
    password = f"{name}'s own long password"
    enrolled = httpx.post(
        f"{api}/api/v1/auth/enrol",
        json={"token": link.rstrip("/").rsplit("/", 1)[-1], "password": password},
    )
    assert enrolled.status_code == 204, enrolled.text
    signed_in = httpx.post(
        f"{api}/api/v1/auth/token", data={"username": name, "password": password}
    )
    assert signed_in.status_code == 200, signed_in.text
    return signed_in.json()["access_token"]


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_production_profile_s3_and_postgres_with_multipart(
    s3_server, s3_bucket: str, postgres_server, tmp_path: Path, clip_1080p: ClipFile
) -> None:
    """Ceph RGW over HTTP and PostgreSQL: the dock sends a 20 MiB clip in parts straight
    to S3, the worker verifies and promotes it server-side."""
    from evidence.migrate import upgrade

    url = postgres_server.create_database()
    upgrade(url)
    settings = s3_server.settings(s3_bucket, tmp_path / "var", database_url=url)
    ctx = Context(settings)
    key = create_device(ctx, None, "dock-s3").key
    camera = tmp_path / "DCIM"
    camera.mkdir()
    big = camera / "BIG_0001.mp4"
    with big.open("wb") as f:
        for _ in range(20):
            f.write(os.urandom(1024 * 1024))
    (camera / clip_1080p.path.name).write_bytes(clip_1080p.path.read_bytes())
    with running_api(settings) as api_url:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "dock",
                str(camera),
                "--api",
                api_url,
                "--device-key",
                key,
                "--wait",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert run.returncode == 0, run.stderr
    assert "in 3 parts" in run.stderr
    with ctx.db.session() as s:
        uploads = s.scalars(select(Upload)).all()
    for u in uploads:
        assert process_upload(ctx, u.id) == "stored"
        assert not ctx.store.exists(f"incoming/{u.id}")
    import hashlib

    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    assert ctx.store.stat(original_key(digest)).size == 20 * 1024 * 1024
    with ctx.db.session() as s:
        clips = {c.sha256: c for c in s.scalars(select(Clip))}
        proxy = s.scalars(select(Derivative).where(Derivative.kind == "proxy")).one()
    assert clips[digest].state == ClipState.unplayable
    assert clips[clip_1080p.sha256].state == ClipState.ready
    assert ctx.store.stat(proxy.key).size == proxy.size
