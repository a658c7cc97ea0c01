"""Stopping `evidence up`: SIGTERM (a service manager) and SIGINT (Ctrl-C, `kill -INT`) stop
everything it started, the worker, its prefork children and scheduler, and any ffmpeg
they run: no process is left behind, reparented to PID 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.processes import WORKER_STOP_GRACE_SECONDS
from tests.fixtures.media import Clip as ClipFile
from tests.fixtures.media import lavfi_inputs
from tests.fixtures.services import free_port, wait_until

pytestmark = pytest.mark.fault

# Beyond the worker's grace period: time for the API to stop and the group to be killed.
STOPPED_WITHIN = WORKER_STOP_GRACE_SECONDS + 15


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, command name), from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        found[int(entry)] = (int(ppid), state, name)
    return found


def descendants(root: int) -> dict[int, str]:
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = procs[child][2]
            todo.append(child)
    return out


def alive(pids: set[int]) -> set[int]:
    procs = _processes()
    return {p for p in pids if p in procs and procs[p][1] != "Z"}  # a zombie has stopped


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def evidence_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int, dict[str, str]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env["EVIDENCE_DATA_DIR"] = str(tmp_path / "var")
    up = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _healthy(port), 60, "evidence up")
        yield up, port, env
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=10)
        for pid in alive(using_data_dir(env["EVIDENCE_DATA_DIR"])):  # what a failure left
            os.kill(pid, signal.SIGKILL)


def using_data_dir(data_dir: str) -> set[int]:
    """Processes started for this data directory, orphans included (found by environment)."""
    found = set()
    marker = f"EVIDENCE_DATA_DIR={data_dir}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found.add(int(entry))
            except OSError:
                continue
    return found


def _wait_for(pid: int, names: set[str], timeout: float) -> dict[int, str]:
    """Descendants of pid once processes with all `names` are among them."""
    found: dict[int, str] = {}

    def there() -> bool:
        nonlocal found
        found = descendants(pid)
        return names <= set(found.values())

    wait_until(there, timeout, f"processes {sorted(names)} under evidence up")
    return found


@pytest.fixture(scope="module")
def ten_second_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    path = tmp_path_factory.mktemp("stop") / "TEN_0001.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-y",
            *lavfi_inputs("1920x1080", "30", 10),
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


def _dock_one(env: dict[str, str], port: int, clip: ClipFile, camera: Path, device: str) -> None:
    """A new dock device docks a camera folder holding `clip` into the `evidence up` on `port`;
    the dock ends once the server has verified it (the review copies are still being made)."""
    made = subprocess.run(
        [sys.executable, "-m", "cli", "admin", "create-device", device],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    camera.mkdir()
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
        ],
        env={**env, "EVIDENCE_DEVICE_KEY": made.stdout.strip().splitlines()[-1]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert docked.returncode == 0, docked.stderr


def test_sigterm_stops_the_worker_its_children_and_a_running_ffmpeg(
    evidence_up, ten_second_clip: ClipFile, tmp_path: Path
) -> None:
    up, port, env = evidence_up
    _dock_one(env, port, ten_second_clip, tmp_path / "DCIM", "dock-t")
    started = _wait_for(up.pid, {"ffmpeg"}, 120)  # the worker is transcoding
    assert len(started) >= 3, started  # worker, its pool child, ffmpeg (and the scheduler)

    up.send_signal(signal.SIGTERM)
    up.wait(timeout=STOPPED_WITHIN)
    wait_until(lambda: not alive(set(started)), STOPPED_WITHIN, "every process up started to stop")


def test_sigint_stops_the_worker_and_scheduler(evidence_up) -> None:
    up, _port, _env = evidence_up
    # The worker's main process, its prefork child and the embedded scheduler, all Python.
    wait_until(lambda: len(descendants(up.pid)) >= 3, 60, "the worker's processes")
    started = descendants(up.pid)

    up.send_signal(signal.SIGINT)
    up.wait(timeout=STOPPED_WITHIN)
    assert up.returncode == 0
    wait_until(lambda: not alive(set(started)), STOPPED_WITHIN, "every process up started to stop")


def test_evidence_up_killed_mid_transcode_finishes_the_clip_when_started_again(
    tmp_path: Path, ten_second_clip: ClipFile
) -> None:
    """A crash of the whole embedded store (every process SIGKILLed) mid-transcode: the
    embedded broker cannot deliver the task again, so `evidence up` queues unfinished uploads
    when it starts; the clip is ready within a minute, with no dock rerun."""
    from evidence.config import Settings
    from evidence.context import Context
    from tests.fixtures.faults import RECOVERED_WITHIN, assert_nothing_lost, clips_ready, wait_for

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env["EVIDENCE_DATA_DIR"] = str(tmp_path / "var")
    argv = [sys.executable, "-m", "cli", "up", "--port", str(port)]
    started: set[int] = set()
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    again = None
    try:
        wait_until(lambda: _healthy(port), 60, "evidence up")
        _dock_one(env, port, ten_second_clip, tmp_path / "DCIM", "dock-k")
        started = set(_wait_for(first.pid, {"ffmpeg"}, 120)) | {first.pid}
        for pid in alive(started):  # everything at once, as a power cut would
            os.kill(pid, signal.SIGKILL)
        first.wait(timeout=10)
        wait_until(lambda: not alive(started), 10, "the killed processes to go")

        again = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: _healthy(port), 60, "evidence up, started again")
        ctx = Context(Settings(data_dir=tmp_path / "var"))
        took = wait_for(
            lambda: clips_ready(ctx, [ten_second_clip]),
            RECOVERED_WITHIN,
            "the clip killed mid-transcode, after evidence up started again",
        )
        print(f"ready {took:.1f} s after evidence up answered again")
        assert_nothing_lost(ctx, [ten_second_clip])
    finally:
        for proc in (first, again):
            if proc is not None and proc.poll() is None:
                started |= set(descendants(proc.pid))
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=STOPPED_WITHIN)
        for pid in alive(started | using_data_dir(env["EVIDENCE_DATA_DIR"])):
            os.kill(pid, signal.SIGKILL)
