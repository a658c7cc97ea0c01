"""The dock agent against a small real HTTP server that speaks docs/ingest.md.

The fake server below implements the ingest contract faithfully enough to hold the agent to
it: device-key auth, declare/resume with `uploaded` flags, presigned part URLs it serves itself
(parts stored whole or not at all, as S3 does), and complete that checks every part. Hooks
let a test slow parts down, fail them, or refuse a completion.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from evidence import dock
from evidence.dock import Outcome, RetryPolicy, StateDir, find_clips, read_sidecar
from tests.fixtures.fake_ingest import (
    DEVICE_KEY,
    FAST,
    FakeIngest,
    FakeUpload,
    make_handler,
    problem,
    write_clip,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def camera(tmp_path: Path) -> dict[str, bytes]:
    """A docked camera's storage: clips in nested folders, one needing many parts, plus files
    the agent must leave alone."""
    root = tmp_path / "camera"
    files = {
        "DCIM/100BWV/A_BIG.MP4": write_clip(
            root / "DCIM/100BWV/A_BIG.MP4",
            300_000 + 123,
            {"camera_serial": "AXN-1", "officer_id": "4711"},
        ),
        "DCIM/100BWV/b.mov": write_clip(root / "DCIM/100BWV/b.mov", 50_000),
        "DCIM/101BWV/c.m2ts": write_clip(root / "DCIM/101BWV/c.m2ts", 64 * 1024),
        "d.mkv": write_clip(root / "d.mkv", 0),
    }
    write_clip(root / "DCIM/100BWV/notes.txt", 10)
    write_clip(root / ".Trashes/old.mp4", 10)
    write_clip(root / "DCIM/100BWV/._A_BIG.MP4", 10)
    return files


def run_dock(root: Path, fake: FakeIngest, **kwargs: Any) -> tuple[dock.Summary, str]:
    out = io.StringIO()
    kwargs.setdefault("retry", FAST)
    summary = dock.run(root, fake.base, DEVICE_KEY, out=out, **kwargs)
    return summary, out.getvalue()


def dock_cli(root: Path, api: str, *extra: str, key: str = DEVICE_KEY) -> subprocess.Popen[str]:
    env = {**os.environ, "EVIDENCE_DEVICE_KEY": key}
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "dock", str(root), "--api", api, *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def states(root: Path) -> dict[str, dock.ClipRecord]:
    """The agent's records of the clips under `root`, from its state directory on the dock
    (tests/conftest.py points XDG_STATE_HOME at a directory of the test session)."""
    result = {}
    for f in dock.state_dir_for(root).dir.glob("*.json"):
        state = dock.ClipRecord.from_json(f.read_bytes())
        result[state.path] = state
    return result


# --- tests -----------------------------------------------------------------------------------


def test_finds_clips_case_insensitively_and_skips_hidden(
    camera: dict[str, bytes], tmp_path: Path
) -> None:
    root = tmp_path / "camera"
    write_clip(root / ".evidence-dock" / "x.mp4", 1)  # where older agents kept their state
    for ext in ("MTS", "3gp", "M4V", "avi"):
        write_clip(root / f"more/clip.{ext}", 1)
    found = [p.relative_to(root).as_posix() for p in find_clips(root)]
    assert found == sorted(found)
    assert set(found) == set(camera) | {f"more/clip.{e}" for e in ("MTS", "3gp", "M4V", "avi")}


def test_folder_uploads_completely_and_byte_identical(
    camera: dict[str, bytes], server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "camera"
    summary, out = run_dock(root, server, jobs=3)
    assert summary.ok, out
    assert summary.count(Outcome.UPLOADED) == 4
    for rel, data in camera.items():
        assert server.object_bytes(Path(rel).name) == data, rel
        upload = server.upload_of(Path(rel).name)
        assert upload.sha256 == hashlib.sha256(data).hexdigest() and upload.size == len(data)
    assert server.parts_for("A_BIG.MP4") == [1, 2, 3, 4, 5]  # 300 kB in 64 KiB parts, once each
    assert server.auth_on_parts == 0, "the device key must never reach the object store"
    assert summary.sent == sum(len(d) for d in camera.values())
    assert "summary: 4 clips: 4 uploaded, 0 already stored, 0 done before, 0 failed" in out
    assert all(s.phase is dock.Phase.DONE and s.clip_id for s in states(root).values())
    assert len(states(root)) == 4


def test_sidecar_metadata_reaches_the_server(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    sidecar = {
        "camera_serial": "AXN-123456",
        "officer_id": "4711",
        "recorded_at": "2026-11-26T08:00:00Z",
        "firmware": "2.14.1",
        "gps": {"lat": "51.5007", "lon": "-0.1246"},
        "vendor_extra": [1, 2],
    }
    write_clip(root / "CAM1_0800.mp4", 1000, sidecar)
    write_clip(root / "bare.mp4", 1000)
    write_clip(root / "broken.mp4", 1000, '{"officer_id": "47')
    write_clip(root / "list.MOV", 1000, "[1, 2]")
    summary, out = run_dock(root, server)
    assert summary.ok, out
    assert server.upload_of("CAM1_0800.mp4").metadata == sidecar
    assert server.upload_of("bare.mp4").metadata == {}
    broken = server.upload_of("broken.mp4").metadata
    assert list(broken) == ["sidecar_error"] and "not valid JSON" in broken["sidecar_error"]
    assert "broken.mp4: warning: sidecar broken.json is not valid JSON" in out
    assert "holds a JSON list" in server.upload_of("list.MOV").metadata["sidecar_error"]
    assert summary.count(Outcome.UPLOADED) == 4  # a bad sidecar never holds the footage back


def test_unreadable_sidecar_is_reported_not_fatal(tmp_path: Path) -> None:
    clip = tmp_path / "x.mp4"
    write_clip(clip, 1, "\xff")
    clip.with_suffix(".json").write_bytes(b"\xff\xfe")
    assert read_sidecar(clip).metadata == {"sidecar_error": "x.json is not UTF-8 text"}
    assert read_sidecar(tmp_path / "none.mp4").metadata == {}


def test_rerun_of_finished_folder_sends_nothing_and_says_so(
    camera: dict[str, bytes], server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "camera"
    assert run_dock(root, server)[0].ok
    declares, puts = len(server.declares), len(server.part_puts)
    proc = dock_cli(root, server.base)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "nothing to send: all 4 clips were uploaded before" in err
    assert (len(server.declares), len(server.part_puts)) == (declares, puts)


def test_exists_answer_sends_no_parts(server: FakeIngest, tmp_path: Path) -> None:
    data = write_clip(tmp_path / "first/a.mp4", 200_000)
    write_clip(tmp_path / "second/same_bytes.mp4", 0)
    (tmp_path / "second/same_bytes.mp4").write_bytes(data)  # docked again from another camera
    assert run_dock(tmp_path / "first", server)[0].ok
    puts = len(server.part_puts)
    summary, out = run_dock(tmp_path / "second", server)
    assert summary.ok and summary.count(Outcome.EXISTS) == 1 and summary.sent == 0
    assert len(server.part_puts) == puts
    assert "already stored (a verified original)" in out
    (state,) = states(tmp_path / "second").values()
    assert state.phase is dock.Phase.DONE and state.answer == "exists"


def test_killed_mid_upload_resumes_with_only_missing_parts(
    camera: dict[str, bytes], server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "camera"
    # The first PART_STREAMS parts (sent at once) are stored, their answers never come:
    # kill then.
    server.part_delay = 30
    in_flight = dock.PART_STREAMS
    proc = dock_cli(root, server.base, "--jobs", "1")
    try:
        assert server.first_part.wait(30), "no part arrived"
        deadline = time.monotonic() + 30
        while len(server.part_puts) < in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert sorted(server.part_puts) == [("A_BIG.MP4", n) for n in range(1, in_flight + 1)]
    killed = states(root)
    assert set(killed) == {"DCIM/100BWV/A_BIG.MP4"}
    big = killed["DCIM/100BWV/A_BIG.MP4"]
    assert big.phase is dock.Phase.DECLARED  # not done: the server never confirmed

    server.part_delay = 0
    proc = dock_cli(root, server.base, "--jobs", "1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert server.parts_for("A_BIG.MP4") == [1, 2, 3, 4, 5]  # none sent twice
    assert f"resuming: {in_flight} of 5 parts already on the server, sending" in err
    assert server.object_bytes("A_BIG.MP4") == camera["DCIM/100BWV/A_BIG.MP4"]
    assert len([u for u in server.uploads.values() if u.filename == "A_BIG.MP4"]) == 1
    after = states(root)["DCIM/100BWV/A_BIG.MP4"]
    assert after.phase is dock.Phase.DONE
    assert after.hashed_at == big.hashed_at and after.sha256 == big.sha256  # not re-hashed


def test_hash_is_cached_for_unchanged_files(
    server: FakeIngest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "camera"
    write_clip(root / "a.mp4", 100_000)
    server.refuse_complete.add("a.mp4")  # leaves the clip hashed but not done
    assert not run_dock(root, server)[0].ok
    (first,) = states(root).values()

    hashed: list[Path] = []
    real = dock.sha256_file
    monkeypatch.setattr(dock, "sha256_file", lambda p, cb: hashed.append(p) or real(p, cb))
    assert not run_dock(root, server)[0].ok
    (second,) = states(root).values()
    assert hashed == [] and second.hashed_at == first.hashed_at

    os.utime(root / "a.mp4", ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))
    server.refuse_complete.clear()
    assert run_dock(root, server)[0].ok
    assert hashed == [root / "a.mp4"]  # a touched file is hashed again
    (third,) = states(root).values()
    assert third.phase is dock.Phase.DONE and third.mtime_ns == first.mtime_ns + 10**9


def test_part_failing_twice_with_500_is_retried(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    data = write_clip(root / "a.mp4", 200_000)
    server.fail_parts[("a.mp4", 2)] = 2
    summary, out = run_dock(root, server)
    assert summary.ok, out
    assert server.part_attempts[("a.mp4", 2)] == 3
    assert server.parts_for("a.mp4") == [1, 2, 3, 4]
    assert server.object_bytes("a.mp4") == data
    assert summary.sent == len(data)  # failed attempts are not counted as sent


def test_part_failing_every_time_fails_that_clip_clearly(
    server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "camera"
    write_clip(root / "a.mp4", 200_000)
    write_clip(root / "b.mp4", 1000)
    server.fail_parts[("a.mp4", 2)] = 100
    summary, out = run_dock(root, server)
    assert not summary.ok and summary.count(Outcome.UPLOADED) == 1
    (failed,) = summary.failed
    assert failed.error.startswith("part 2: the object store failed after 3 attempts: HTTP 500")
    assert states(root)["a.mp4"].phase is dock.Phase.DECLARED


def test_device_key_refused(camera: dict[str, bytes], server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    proc = dock_cli(root, server.base, key="not-a-key")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert dock.KEY_REFUSED in err
    assert "check --device-key or ask an admin to create the device" in err
    assert "4 failed" in err
    assert server.part_puts == [] and server.uploads == {}
    assert not any(s.phase is dock.Phase.DONE for s in states(root).values())


def test_api_unreachable(camera: dict[str, bytes], tmp_path: Path) -> None:
    from tests.fixtures.services import free_port

    root = tmp_path / "camera"
    api = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        app,
        ["dock", str(root), "--api", api, "--retries", "2", "--wait-for-api", "0.5"],
        env={"EVIDENCE_DEVICE_KEY": DEVICE_KEY},
    )
    assert result.exit_code == 1
    assert f"cannot reach {api}" in result.output
    assert "check --api and that the server is up" in result.output
    assert states(root) == {}  # it failed before hashing anything


def test_api_going_away_after_the_probe_stops_the_other_clips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures.services import free_port

    root = tmp_path / "camera"
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_clip(root / name, 1000)
    monkeypatch.setattr(dock.Api, "probe", lambda self: None)  # the API was up, then went away
    out = io.StringIO()
    api = f"http://127.0.0.1:{free_port()}"
    summary = dock.run(root, api, DEVICE_KEY, jobs=1, retry=FAST, out=out)
    assert not summary.ok and len(summary.failed) == 3
    first, *rest = summary.failed
    assert first.error.startswith(f"cannot reach {api}") and "check --api" in first.error
    assert all(r.error.startswith("not attempted: cannot reach") for r in rest)
    assert not any(s.phase is dock.Phase.DONE for s in states(root).values())


def test_one_bad_clip_among_good_ones(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    good = {n: write_clip(root / n, 70_000) for n in ("a.mp4", "c.mp4")}
    write_clip(root / "b.mp4", 70_000)
    server.refuse_complete.add("b.mp4")
    proc = dock_cli(root, server.base, "--jobs", "2")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    for name, data in good.items():
        assert server.object_bytes(name) == data
    assert "summary: 3 clips: 2 uploaded, 0 already stored, 0 done before, 1 failed" in err
    assert "b.mp4: the server still reports the upload incomplete: part 1 is missing" in err
    st = states(root)
    assert st["b.mp4"].phase is not dock.Phase.DONE
    assert st["a.mp4"].phase is dock.Phase.DONE and st["c.mp4"].phase is dock.Phase.DONE


def test_complete_409_resends_what_the_server_lacks(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    data = write_clip(root / "a.mp4", 200_000)
    real_complete = server.complete
    lost = []

    def lose_a_part_once(device: str, upload_id: str):  # type: ignore[no-untyped-def]
        if not lost:  # the store lost part 3 (or never had it): the agent must send it again
            server.part_path(upload_id, 3).unlink()
            lost.append(3)
        return real_complete(device, upload_id)

    server.complete = lose_a_part_once  # type: ignore[method-assign]
    summary, out = run_dock(root, server)
    assert summary.ok, out
    assert Counter(server.part_puts)[("a.mp4", 3)] == 2
    assert server.object_bytes("a.mp4") == data


def test_killed_after_complete_finishes_that_upload(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    write_clip(root / "a.mp4", 100_000)
    summary, _ = run_dock(root, server)
    (state,) = states(root).values()
    # As if killed after sending complete but before the 202 was written down.
    state.phase = dock.Phase.COMPLETING
    state.clip_id = state.answer = state.done_at = None
    dock.state_dir_for(root).save(state)
    declares = len(server.declares)
    summary, out = run_dock(root, server)
    assert summary.ok and summary.count(Outcome.UPLOADED) == 1, out
    assert len(server.declares) == declares  # completed the known upload, no new declaration
    (after,) = states(root).values()
    assert after.phase is dock.Phase.DONE and after.clip_id == server.upload_of("a.mp4").clip_id


def test_failing_repeat_completion_falls_back_to_declaring(
    server: FakeIngest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "camera"
    write_clip(root / "a.mp4", 100_000)
    assert run_dock(root, server)[0].ok
    (state,) = states(root).values()
    state.phase = dock.Phase.COMPLETING  # killed before the 202 was written down...
    dock.state_dir_for(root).save(state)
    monkeypatch.setattr(server, "complete", lambda device, upload_id: (500, problem(500, "x")))
    summary, out = run_dock(root, server)  # ...and completing again now fails on the server
    assert summary.ok and summary.count(Outcome.EXISTS) == 1, out
    (after,) = states(root).values()
    assert after.phase is dock.Phase.DONE and after.answer == "exists"


def test_upload_rejected_after_a_kill_is_sent_afresh(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    data = write_clip(root / "a.mp4", 100_000)
    assert run_dock(root, server)[0].ok
    first = server.upload_of("a.mp4")
    first.state = "rejected"  # the worker found other bytes than declared
    del server.stored[first.sha256]
    (state,) = states(root).values()
    state.phase = dock.Phase.COMPLETING  # killed before the 202 was written down
    dock.state_dir_for(root).save(state)
    summary, out = run_dock(root, server)
    assert summary.ok and summary.count(Outcome.UPLOADED) == 1, out
    (second,) = [u for u in server.uploads.values() if u is not first]
    assert second.clip_id and server.parts_for("a.mp4") == [1, 1, 2, 2]
    assert (server.root / "objects" / second.id).read_bytes() == data


def test_expired_part_url_is_refreshed(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    data = write_clip(root / "a.mp4", 200_000)
    real_describe = server.describe
    calls = []

    def stale_first(upload: FakeUpload) -> dict[str, Any]:
        body = real_describe(upload)
        calls.append(1)
        if len(calls) == 1:
            for p in body["parts"]:
                p["url"] = p["url"].replace("sig=", "sig=expired")
        return body

    server.describe = stale_first  # type: ignore[method-assign]
    summary, out = run_dock(root, server)
    assert summary.ok, out
    assert "asking the server for fresh URLs" in out
    assert server.object_bytes("a.mp4") == data


def test_state_files_are_written_atomically(tmp_path: Path) -> None:
    states_dir = StateDir(tmp_path / "state")
    states_dir.ensure()
    state = dock.ClipRecord(path="a/b.mp4", size=1, mtime_ns=2, sha256="0" * 64, hashed_at="t")
    states_dir.save(state)
    assert states_dir.load("a/b.mp4") == state
    assert [p.name for p in states_dir.dir.iterdir()] == [states_dir.file_for("a/b.mp4").name]
    states_dir.file_for("a/b.mp4").write_text("{torn")
    assert states_dir.load("a/b.mp4") is None  # unreadable state costs a re-hash, nothing else


def test_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["dock", str(tmp_path / "nope"), "--api", "http://x"], env={"EVIDENCE_DEVICE_KEY": "k"}
    )
    assert result.exit_code == 2 and "is not a directory" in result.output
    result = runner.invoke(
        app, ["dock", str(tmp_path), "--api", "localhost:8000"], env={"EVIDENCE_DEVICE_KEY": "k"}
    )
    assert result.exit_code == 2 and "is not an http(s) URL" in result.output
    result = runner.invoke(app, ["dock", str(tmp_path), "--api", "http://x"], env={})
    assert result.exit_code == 2 and "--device-key" in result.output


def test_progress_without_a_tty_is_plain_lines(
    camera: dict[str, bytes], server: FakeIngest, tmp_path: Path
) -> None:
    summary, out = run_dock(tmp_path / "camera", server, progress_interval=0.01)
    assert summary.ok
    assert "\r" not in out and "\x1b" not in out
    assert "DCIM/100BWV/A_BIG.MP4: uploading 300.1 kB in 5 parts" in out
    assert "DCIM/100BWV/A_BIG.MP4: verified by the server, clip " in out
    lines = out.splitlines()
    status = [line for line in lines if line.startswith("progress: ")]
    assert len(status) == len(set(status))  # only printed when something moved


# --- done means verified by the server ----------------------------------------------------------


def test_a_clip_is_done_only_once_the_server_verified_it(
    server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "camera"
    write_clip(root / "a.mp4", 100_000)
    server.verdict_after = 10**6  # the worker is busy: no verdict within the wait budget
    policy = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, outage=0.3, verify_wait=0.5)
    summary, out = run_dock(root, server, retry=policy)
    assert summary.ok and summary.count(Outcome.WAITING) == 1, out
    assert "1 sent but not yet verified by the server" in out
    (state,) = states(root).values()
    assert state.phase is dock.Phase.WAITING, "not done: the server has not vouched for it"

    server.verdict_after = 2  # the worker catches up
    declares, puts = len(server.declares), len(server.part_puts)
    summary, out = run_dock(root, server)
    assert summary.ok and summary.count(Outcome.UPLOADED) == 1, out
    assert (len(server.declares), len(server.part_puts)) == (declares, puts), "asked, not re-sent"
    (state,) = states(root).values()
    assert state.phase is dock.Phase.DONE and state.answer == "stored"


def test_a_rejected_upload_fails_and_the_next_run_hashes_the_file_again(
    server: FakeIngest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "camera"
    data = write_clip(root / "a.mp4", 100_000)
    real_complete = server.complete

    def damaged_in_storage(device: str, upload_id: str):  # type: ignore[no-untyped-def]
        answer = real_complete(device, upload_id)
        obj = server.root / "objects" / upload_id
        obj.write_bytes(b"\0" + obj.read_bytes()[1:])  # what the worker re-hashes is not the file
        return answer

    server.complete = damaged_in_storage  # type: ignore[method-assign]
    summary, out = run_dock(root, server)
    assert not summary.ok, out
    (failed,) = summary.failed
    assert "rejected" in failed.error and "hash and send it afresh" in failed.error
    assert states(root) == {}, "the refused hash is not kept"

    server.complete = real_complete  # type: ignore[method-assign]
    hashed: list[Path] = []
    real_hash = dock.sha256_file
    monkeypatch.setattr(dock, "sha256_file", lambda p, cb: hashed.append(p) or real_hash(p, cb))
    summary, out = run_dock(root, server)
    assert summary.ok and summary.count(Outcome.UPLOADED) == 1, out
    assert hashed == [root / "a.mp4"], "hashed again, not trusted from the cache"
    (stored,) = [u for u in server.uploads.values() if u.state == "stored"]
    assert (server.root / "objects" / stored.id).read_bytes() == data


def test_every_part_carries_its_content_md5(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    write_clip(root / "a.mp4", 200_000)
    assert run_dock(root, server)[0].ok
    assert server.md5_checked == len(server.parts_for("a.mp4")) == 4


@pytest.mark.parametrize("outage", [(503, "Service Unavailable"), (502, "Bad Gateway")])
def test_an_api_restart_is_waited_out(
    server: FakeIngest, tmp_path: Path, outage: tuple[int, str]
) -> None:
    root = tmp_path / "camera"
    data = write_clip(root / "a.mp4", 100_000)
    server.outage = outage
    server.unavailable_until = time.monotonic() + 2.5
    policy = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.5, outage=30, verify_wait=10)
    summary, out = run_dock(root, server, retry=policy)
    assert summary.ok and summary.count(Outcome.UPLOADED) == 1, out
    assert "the API is not answering" in out and "waiting for it" in out
    assert server.object_bytes("a.mp4") == data


def test_an_api_that_is_not_listening_yet_is_waited_out(tmp_path: Path) -> None:
    """Connection refused (the API process restarting): waited out, not failed in seconds."""
    from tests.fixtures.services import free_port

    root = tmp_path / "camera"
    data = write_clip(root / "a.mp4", 100_000)
    port = free_port()
    fake = FakeIngest(tmp_path / "server")
    fake.base = f"http://127.0.0.1:{port}"

    def start_later() -> None:
        time.sleep(2.0)
        httpd = ThreadingHTTPServer(("127.0.0.1", port), make_handler(fake))
        httpd.daemon_threads = True
        servers.append(httpd)
        httpd.serve_forever()

    servers: list[ThreadingHTTPServer] = []
    threading.Thread(target=start_later, daemon=True).start()
    try:
        policy = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.5, outage=30, verify_wait=10)
        summary, out = run_dock(root, fake, retry=policy)
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()
    assert summary.ok and summary.count(Outcome.UPLOADED) == 1, out
    assert "waiting for it" in out
    assert fake.object_bytes("a.mp4") == data


def test_a_full_disk_on_the_server_is_said_plainly_and_retried_later(
    server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "camera"
    write_clip(root / "a.mp4", 100_000)
    server.outage = (507, "insufficient storage: the object store has no space left")
    server.unavailable_until = time.monotonic() + 3600
    summary, out = run_dock(root, server)
    assert not summary.ok
    (failed,) = summary.failed
    assert "HTTP 507 (insufficient storage: the object store has no space left)" in failed.error
    assert "insufficient storage" in out and "waiting for it" in out
    assert not any(s.phase is dock.Phase.DONE for s in states(root).values())
    server.unavailable_until = 0  # space is back: the next run sends it
    summary, out = run_dock(root, server)
    assert summary.ok and summary.count(Outcome.UPLOADED) == 1, out
