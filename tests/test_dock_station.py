"""The dock agent as a docking station runs it (docs/dock.md): state kept on the station and
never on the camera, cameras known by their volume, a real read-only ext4 camera image, watch
mode, clearing verified clips, byte-identical clips through the real server.

The ingest server is the fake of tests/test_dock.py (it holds the agent to docs/ingest.md)
except where the real one's behaviour is the subject (twins).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from evidence.accounts.service import create_device
from evidence.clips.models import Clip as ClipRow
from evidence.context import Context
from evidence.ingest.models import Upload
from evidence.ingest.service import process_upload
from evidence.ledger.models import LedgerEntry
from evidence_dock import agent as dock
from evidence_dock import volumes
from evidence_dock.agent import Outcome, RetryPolicy
from tests.conftest import sqlite_only
from tests.fixtures.api import running_api
from tests.fixtures.fake_ingest import DEVICE_KEY, FAST, FakeIngest, write_clip
from tests.fixtures.ingest import Dock
from tests.fixtures.media import Clip as ClipFile
from tests.fixtures.services import missing
from tests.fixtures.store_faults import make_clips

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

REPO = Path(__file__).resolve().parents[1]


def run_dock(root: Path, fake: FakeIngest, **kwargs: object) -> tuple[dock.Summary, str]:
    out = io.StringIO()
    kwargs.setdefault("retry", FAST)
    summary = dock.run(root, fake.base, DEVICE_KEY, out=out, **kwargs)  # type: ignore[arg-type]
    return summary, out.getvalue()


def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `root` with its size, mtime and mode: what 'untouched' compares."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = (Path(dirpath) / name).lstat()
            found[(Path(dirpath) / name).relative_to(root).as_posix()] = (
                st.st_size,
                st.st_mtime_ns,
                st.st_mode,
            )
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- volumes -----------------------------------------------------------------------------------


MOUNTINFO = r"""22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
30 22 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw,size=100k
41 22 7:3 / /media/bwv/BWC\0407788 ro,nosuid,nodev shared:30 - vfat /dev/loop3 ro,fmask=0022
42 22 7:4 / /media/bwv/other rw shared:31 master:2 - ext4 /dev/loop4 rw
bogus line
"""


def test_mountinfo_is_parsed_and_the_deepest_mount_wins(tmp_path: Path) -> None:
    mounts = volumes.parse_mountinfo(MOUNTINFO)
    assert [str(m.mount_point) for m in mounts] == [
        "/",
        "/tmp",
        "/media/bwv/BWC 7788",
        "/media/bwv/other",
    ]
    cam = volumes.mount_of(Path("/media/bwv/BWC 7788/DCIM"), mounts)
    assert cam is not None and cam.device == "/dev/loop3" and cam.read_only and cam.fstype == "vfat"
    other = volumes.mount_of(Path("/media/bwv/other"), mounts)
    assert other is not None and not other.read_only
    assert volumes.mount_of(Path("/media/bwv"), mounts).device == "/dev/sda2"  # type: ignore[union-attr]
    assert volumes.parse_blkid_export("DEVNAME=/dev/loop3\nLABEL=BWC\\ 7788\nUUID=1A2B-3C4D\n") == {
        "DEVNAME": "/dev/loop3",
        "LABEL": "BWC 7788",
        "UUID": "1A2B-3C4D",
    }


def test_an_unknown_volume_never_fails_the_dock(tmp_path: Path) -> None:
    assert volumes.volume_of(tmp_path, mountinfo=tmp_path / "missing") is None
    vol = volumes.identify(volumes.Mount(Path("/x"), "/dev/no-such-device", "ext4", False))
    assert (vol.label, vol.uuid) == (None, None)


def test_state_home_and_volume_keys(tmp_path: Path) -> None:
    env = {"EVIDENCE_DOCK_STATE_DIR": "/srv/dock", "XDG_STATE_HOME": "/x"}
    assert dock.default_state_home(env) == Path("/srv/dock")
    assert dock.default_state_home({"XDG_STATE_HOME": "/x"}) == Path("/x/evidence-dock")
    assert (
        dock.default_state_home({"XDG_STATE_HOME": "rel"})
        == Path.home() / ".local/state/evidence-dock"
    )
    cam = volumes.Volume(tmp_path, "/dev/sdb1", "vfat", False, "BWC/77", "1A2B-3C4D")
    assert dock.volume_key(tmp_path, cam) == "uuid:1A2B-3C4D"
    labelled = volumes.Volume(tmp_path, "/dev/sdb1", "vfat", False, "BWC/77", None)
    assert dock.volume_key(tmp_path, labelled) == "label:BWC/77"
    # A folder of a volume (not its root) is known by its path.
    assert dock.volume_key(tmp_path / "sub", cam) == f"path:{(tmp_path / 'sub').resolve()}"
    name = dock.safe_dirname("label:BWC/77")
    assert "/" not in name and name.startswith("label_BWC_77-")
    assert dock.safe_dirname("label:BWC/77") != dock.safe_dirname("label:BWC_77")


def test_the_declared_source_is_bounded_and_leaves_out_what_is_unknown(tmp_path: Path) -> None:
    long_path = "/".join(["DCIM"] * 300) + "/X6039A1B2_0001.MP4"
    odd = volumes.Volume(tmp_path, "/dev/sdb1", "vfat", True, "L" * 100, "U" * 100)
    source = dock.declared_source(long_path, odd)
    assert len(source["path"]) == 1024 and source["path"].endswith("/X6039A1B2_0001.MP4")
    assert (source["volume_label"], source["volume_uuid"]) == ("L" * 64, "U" * 64)
    unlabelled = volumes.Volume(tmp_path, "/dev/sdb1", "vfat", True, None, "1A2B-3C4D")
    assert dock.declared_source("a.mp4", unlabelled) == {
        "path": "a.mp4",
        "volume_uuid": "1A2B-3C4D",
    }
    assert dock.declared_source("a.mp4", None) == {"path": "a.mp4"}


# --- never writing to the camera -----------------------------------------------------------------


def test_nothing_is_written_under_the_docked_directory(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    write_clip(root / "DCIM/100BWV/a.mp4", 200_000, {"officer_id": "4711"})
    write_clip(root / "b.mp4", 1000)
    before = tree(root)
    state = tmp_path / "station-state"
    summary, out = run_dock(root, server, state_dir=state)
    assert summary.ok and summary.count(Outcome.UPLOADED) == 2, out
    assert tree(root) == before
    (volume_dir,) = state.iterdir()
    assert volume_dir.name.startswith("path_") and len(list(volume_dir.glob("*.json"))) == 2
    # The declaration says where the clip came from on the camera.
    assert server.upload_of("a.mp4").source == {"path": "DCIM/100BWV/a.mp4"}
    again, out = run_dock(root, server, state_dir=state)
    assert "nothing to send: all 2 clips were uploaded before" in out


def test_a_state_dir_on_the_camera_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "camera"
    write_clip(root / "a.mp4", 10)
    with pytest.raises(dock.UsageError, match="never writes to the camera"):
        dock.run(root, "http://127.0.0.1:1", DEVICE_KEY, state_dir=root / "state")
    assert not (root / "state").exists()


@pytest.fixture
def ro_camera(tmp_path: Path, clip_with_sidecar: ClipFile, clip_mov: ClipFile) -> Iterator[Path]:
    """A camera's storage as a docking PC sees it: an ext4 image labelled BWC-7788 holding
    real clips (and a sidecar), loop-mounted read-only at ROOT/BWC-7788. Yields ROOT."""
    src = tmp_path / "card"
    folder = src / "DCIM" / "100AXON"
    folder.mkdir(parents=True)
    shutil.copyfile(clip_with_sidecar.path, folder / "X6039A1B2_0001.MP4")
    (folder / "X6039A1B2_0001.json").write_text('{"officer_id": "PC1234"}')
    shutil.copyfile(clip_mov.path, folder / "X6039A1B2_0002.MOV")
    image = tmp_path / "bwc.img"
    made = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "BWC-7788", "-d", str(src), str(image), "32M"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    root = tmp_path / "bwv"
    mnt = root / "BWC-7788"
    mnt.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-o", "loop,ro", str(image), str(mnt)], capture_output=True, text=True, timeout=60
    )
    if mounted.returncode != 0:
        missing(
            f"cannot loop-mount an image here (needs root and loop devices): "
            f"{mounted.stderr.strip()}"
        )
    try:
        yield root
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=60)


def test_a_read_only_camera_image_is_docked_and_left_bit_for_bit_unchanged(
    ro_camera: Path, server: FakeIngest, tmp_path: Path
) -> None:
    image = tmp_path / "bwc.img"
    mnt = ro_camera / "BWC-7788"
    volume = volumes.volume_of(mnt)
    assert volume is not None and volume.read_only and volume.label == "BWC-7788"
    blkid = subprocess.run(
        ["blkid", "-c", "/dev/null", "-o", "value", "-s", "UUID", volume.device],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert volume.uuid == blkid
    assert volumes.volume_at(mnt) == volume and volumes.volume_at(mnt / "DCIM") is None
    before = sha256_of(image)
    state = tmp_path / "station-state"
    summary, out = run_dock(mnt, server, state_dir=state, clear_after_verified=True)
    assert summary.ok and summary.count(Outcome.UPLOADED) == 2, out
    assert f"not cleared: {mnt} is mounted read-only; the verified clips stay on it" in out
    assert sorted(p.name for p in (mnt / "DCIM/100AXON").iterdir()) == [
        "X6039A1B2_0001.MP4",
        "X6039A1B2_0001.json",
        "X6039A1B2_0002.MOV",
    ]
    upload = server.upload_of("X6039A1B2_0001.MP4")
    assert upload.source == {
        "path": "DCIM/100AXON/X6039A1B2_0001.MP4",
        "volume_label": "BWC-7788",
        "volume_uuid": blkid,
    }
    assert upload.metadata == {"officer_id": "PC1234"}
    (volume_dir,) = state.iterdir()
    assert volume_dir.name == dock.safe_dirname(f"uuid:{blkid}")
    subprocess.run(["umount", str(mnt)], check=True, timeout=60)
    assert sha256_of(image) == before, "docking changed the camera's image"


def test_watch_docks_a_mounted_camera_and_names_it_in_the_report(
    ro_camera: Path, server: FakeIngest, tmp_path: Path
) -> None:
    watch = Watch(ro_camera, server, tmp_path / "state", "--clear-after-verified")
    try:
        watch.wait_for("safe to undock", 60)
        text = watch.text()
        uuid = volumes.volume_of(ro_camera / "BWC-7788").uuid  # type: ignore[union-attr]
        assert f"=== camera label BWC-7788, uuid {uuid} (/dev/loop" in text
        assert "read-only) ===" in text
        assert "summary: 2 clips: 2 uploaded, 0 already stored, 0 done before, 0 failed" in text
        assert "is mounted read-only; the verified clips stay on it" in text
    finally:
        assert watch.stop() == 0, watch.text()


# --- clearing the camera --------------------------------------------------------------------------


def test_clear_after_verified_removes_only_what_the_server_vouches_for(
    server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "camera"
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_clip(root / name, 70_000, {"n": name})
    server.refuse_complete.add("b.mp4")
    server.verdict_after = 10**6  # no verdict for anything yet: sent is not verified
    policy = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, outage=0.3, verify_wait=0.3)
    summary, out = run_dock(root, server, retry=policy, clear_after_verified=True)
    assert summary.count(Outcome.WAITING) == 2 and len(summary.failed) == 1, out
    assert summary.removed == [] and sorted(p.name for p in root.glob("*.mp4")) == [
        "a.mp4",
        "b.mp4",
        "c.mp4",
    ], "nothing is deleted on upload alone"

    server.verdict_after = 0
    summary, out = run_dock(root, server, clear_after_verified=True)
    assert summary.removed == ["a.mp4", "c.mp4"], out
    assert "removed from the camera (2, each verified by the server first):" in out
    assert "  a.mp4" in out.splitlines() and "  c.mp4" in out.splitlines()
    assert sorted(p.name for p in root.iterdir()) == ["a.json", "b.json", "b.mp4", "c.json"]
    assert b"".join(server.object_bytes(n) for n in ("a.mp4", "c.mp4"))  # stored, then removed


def test_a_copy_whose_first_is_not_verified_yet_stays_held_until_the_next_run(
    server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "camera"
    data = write_clip(root / "a.mp4", 100_000)
    (root / "b.mp4").write_bytes(data)
    server.verdict_after = 10**6  # the worker is busy: no verdict within the run
    policy = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, outage=0.3, verify_wait=0.3)
    summary, out = run_dock(root, server, retry=policy, state_dir=tmp_path / "state")
    assert summary.ok and summary.count(Outcome.WAITING) == 1, out
    (held,) = [r for r in summary.results if r.outcome is Outcome.HELD]
    assert "1 held back: identical to another clip of this run" in out
    assert len(server.uploads) == 1, "the copy was not declared beside its first"

    server.verdict_after = 0
    summary, out = run_dock(root, server, state_dir=tmp_path / "state")
    assert summary.ok, out
    assert sorted(r.outcome.value for r in summary.results) == ["already stored", "uploaded"]
    assert len(server.part_puts) == 2, "the bytes were sent once"


# --- watch mode -----------------------------------------------------------------------------------


class Watch:
    """`evidence-dock --watch ROOT` as a subprocess, its stderr collected as it comes."""

    def __init__(
        self,
        root: Path,
        fake: FakeIngest,
        state: Path,
        *extra: str,
        command: tuple[str, ...] = ("-m", "evidence_dock"),
    ):
        env = {**os.environ, "EVIDENCE_DEVICE_KEY": DEVICE_KEY, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *command,
                "--watch",
                str(root),
                "--api",
                fake.base,
                "--state-dir",
                str(state),
                "--poll",
                "0.2",
                "--settle",
                "0.5",
                "--retry-every",
                "1",
                "--retries",
                "2",
                "--wait",
                "10",
                *extra,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def count(self, needle: str) -> int:
        return sum(needle in line for line in list(self.lines))

    def wait_for(self, needle: str, timeout: float, times: int = 1) -> None:
        self.wait_until(lambda: self.count(needle) >= times, timeout, repr(needle))

    def wait_until(self, ok: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout} s:\n{self.text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        finally:
            self.proc.kill()
        self.reader.join(5)
        return code


def test_watch_docks_each_camera_folder_retries_failures_and_stops_on_sigterm(
    server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "bwv"
    write_clip(root / "cam1/a.mp4", 70_000)
    write_clip(root / "cam1/b.mp4", 1000)
    write_clip(root / ".hidden/x.mp4", 10)
    server.refuse_complete.add("b.mp4")
    watch = Watch(root, server, tmp_path / "state")
    try:
        watch.wait_for("cam1: not finished: trying again in 1 s", 30)
        text = watch.text()
        assert f"=== folder {(root / 'cam1').resolve()} ===" in text
        assert "summary: 2 clips: 1 uploaded, 0 already stored, 0 done before, 1 failed" in text
        assert (
            "failed (retried in 1 s while the camera stays docked; each reason says what "
            "to fix if it keeps failing):" in text
        )
        assert "  b.mp4: the server still reports the upload incomplete: part 1 is missing" in text
        watch.wait_for("FAILED", 30, times=2)  # tried again while still docked

        server.refuse_complete.clear()
        watch.wait_for("cam1: done: every clip is verified by the server; safe to undock", 30)
        declares = len(server.declares)
        time.sleep(1.5)  # several polls and retry periods: a finished camera is left alone
        assert len(server.declares) == declares

        write_clip(root / "cam1/c.mp4", 1000)  # a new clip on a docked camera
        write_clip(root / "cam2/d.mp4", 1000)  # and a second camera
        watch.wait_until(
            lambda: (
                server.upload_of("c.mp4").clip_id is not None
                if "c.mp4" in server.declares
                else False
            ),
            30,
            "c.mp4 uploaded",
        )
        watch.wait_until(lambda: "d.mp4" in server.declares, 30, "d.mp4 declared")
        watch.wait_for("safe to undock", 30, times=3)
        assert "x.mp4" not in server.declares, "hidden folders are no camera"
    finally:
        code = watch.stop()
    assert code == 0, watch.text()
    assert watch.lines[-1] == "stopped"
    assert "Traceback" not in watch.text()


def test_watch_stopped_mid_file_exits_0_and_the_next_start_resumes(
    server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "bwv"
    data = write_clip(root / "cam1/big.mp4", 400_000)
    server.part_delay = 1.0
    watch = Watch(root, server, tmp_path / "state", "--jobs", "1", command=("-m", "cli", "dock"))
    assert server.first_part.wait(30), watch.text()
    assert watch.stop(signal.SIGINT) == 0, watch.text()
    assert "SIGINT: stopping after the current file" in watch.text()
    sent = len(server.part_puts)
    assert 1 <= sent < 7, "stopped before the whole clip was sent"
    server.part_delay = 0
    again = Watch(root, server, tmp_path / "state")
    try:
        again.wait_for("safe to undock", 30)
        assert f"resuming: {sent} of 7 parts already on the server" in again.text()
    finally:
        assert again.stop() == 0
    assert server.object_bytes("big.mp4") == data


def test_watch_waits_until_a_camera_has_stopped_writing(server: FakeIngest, tmp_path: Path) -> None:
    """A camera still writing its last clip is not docked until its files have been quiet
    for --settle seconds (here 0.5 s; the clip grows every 0.1 s for 2 s)."""
    root = tmp_path / "bwv"
    clip = root / "cam1" / "growing.mp4"
    chunks = [write_clip(clip, 5000)]  # the camera has begun writing when it is seen
    watch = Watch(root, server, tmp_path / "state")
    try:
        watch.wait_for("new camera storage", 30)
        for _ in range(20):
            chunk = os.urandom(5000)
            chunks.append(chunk)
            with clip.open("ab") as f:
                f.write(chunk)
            time.sleep(0.1)
            assert server.declares == [], "docked while the camera was still writing"
        watch.wait_for("safe to undock", 30)
        assert server.object_bytes("growing.mp4") == b"".join(chunks)
    finally:
        assert watch.stop() == 0, watch.text()


def test_watch_clearing_a_camera_lists_each_removal_and_leaves_it_done(
    server: FakeIngest, tmp_path: Path
) -> None:
    root = tmp_path / "bwv"
    data = write_clip(root / "cam1/DCIM/a.mp4", 70_000)
    watch = Watch(root, server, tmp_path / "state", "--clear-after-verified")
    try:
        watch.wait_for("safe to undock", 30)
        assert "removed from the camera (1, each verified by the server first):" in watch.text()
        assert "  DCIM/a.mp4" in watch.lines
        assert not (root / "cam1/DCIM/a.mp4").exists()
        assert server.object_bytes("a.mp4") == data
        time.sleep(1.5)  # a camera emptied by the agent has nothing new: not docked again
        docked = [line for line in watch.lines if line.endswith(": docking")]
        assert len(docked) == 1 and server.declares == ["a.mp4"]
    finally:
        assert watch.stop() == 0, watch.text()


# --- the CLIs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("-m", "evidence_dock"), ("-m", "cli", "dock")])
def test_bad_arguments_exit_2_with_a_message(command: tuple[str, ...], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EVIDENCE_DEVICE_KEY": "k"}
    env.pop("EVIDENCE_API_URL", None)
    cases = [
        ([str(tmp_path), "--api", "http://x", "--watch", str(tmp_path)], "either DIR"),
        ([str(tmp_path)], "--api"),
        ([str(tmp_path), "--api", "http://x", "--jobs", "0"], "--jobs"),
        (["--watch", str(tmp_path / "nope"), "--api", "http://x"], "not a directory"),
        ([str(tmp_path), "--api", "ftp://x"], "is not an http(s) URL"),
    ]
    for args, words in cases:
        done = subprocess.run(
            [sys.executable, *command, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_the_servers_own_words_not_a_traceback(server: FakeIngest, tmp_path: Path) -> None:
    root = tmp_path / "camera"
    write_clip(root / "a.mp4", 1000)
    server.outage = (507, "insufficient storage: the object store has no space left")
    server.unavailable_until = time.monotonic() + 3600
    env = {**os.environ, "PYTHONPATH": str(REPO), "EVIDENCE_DEVICE_KEY": DEVICE_KEY}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "evidence_dock",
            str(root),
            "--api",
            server.base,
            "--retries",
            "1",
            "--wait-for-api",
            "0.5",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "insufficient storage: the object store has no space left" in done.stderr
    assert "Traceback" not in done.stderr


# --- byte-identical clips, through the real server ----------------------------------------------


@contextlib.contextmanager
def inline_worker(ctx: Context) -> Iterator[None]:
    """The worker's processing (verify, promote, derive) run in a thread of this process on
    every completed upload, so a dock run gets its verdicts without a broker."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        while not stop.wait(0.1):
            with ctx.db.session() as s:
                ids = s.scalars(select(Upload.id).where(Upload.state == "processing")).all()
            for upload_id in ids:
                try:
                    process_upload(ctx, upload_id)
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors


@sqlite_only
def test_byte_identical_clips_in_one_run_are_stored_once_and_reported(
    ctx: Context, tmp_path: Path
) -> None:
    """Copies of one clip on one camera, docked with the default --jobs: the first is sent,
    the others wait for its verdict and are then answered `exists` (before, the second got
    the first's pending upload and failed with "HTTP 404: no multipart upload")."""
    key = create_device(ctx, None, "dock-twins").key
    # Over one 8 MiB part: the copies' part PUTs overlap the first's completion, as on a camera.
    twin, other = make_clips(
        tmp_path / "clips", 2, tag="twin", size="1280x720", seconds=12, lossless=True
    )
    assert twin.size > 9 * 1024 * 1024
    root = tmp_path / "camera"
    copies = ["DCIM/100BWV/A_0001.MP4", "DCIM/100BWV/A_0002.MP4", "DCIM/101BWV/COPY.MP4"]
    for rel in copies:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(twin.path, root / rel)
    shutil.copyfile(other.path, root / "DCIM/100BWV/B_0001.MP4")
    out = io.StringIO()
    with running_api(ctx.settings) as url, inline_worker(ctx):
        summary = dock.run(
            root,
            url,
            key,
            out=out,
            state_dir=tmp_path / "state",
            retry=RetryPolicy(attempts=3, base_delay=0.05, verify_wait=120),
        )
    text = out.getvalue()
    assert summary.ok, text
    assert summary.count(Outcome.UPLOADED) == 2 and summary.count(Outcome.EXISTS) == 2, text
    # Which copy goes first depends on which is hashed first; the others name it.
    (sent,) = [
        r.path for r in summary.results if r.path in copies and r.outcome is Outcome.UPLOADED
    ]
    for rel in set(copies) - {sent}:
        assert f"  {rel}: identical to {Path(sent).name}, stored once" in text
    assert "404" not in text
    with ctx.db.session() as s:
        assert s.scalars(select(ClipRow.sha256)).all().count(twin.sha256) == 1
        ingested = [
            json.loads(e)
            for e in s.scalars(select(LedgerEntry.entry).where(LedgerEntry.type == "clip.ingested"))
        ]
    assert sorted(e["sha256"] for e in ingested) == sorted([twin.sha256, other.sha256])


@sqlite_only
def test_completing_one_upload_twice_at_once_answers_its_state_both_times(
    ctx: Context, tmp_path: Path
) -> None:
    """Two completes of the same upload racing (a dock retrying a complete whose answer was
    lost, while the first is still joining the parts): both are answered with the upload's
    state, never a 404 for the multipart upload the other one has just joined. The race is
    narrow, so it is run for several uploads."""
    key = create_device(ctx, None, "dock-complete-twice").key
    clips = make_clips(
        tmp_path / "clips", 4, tag="race", size="1280x720", seconds=12, lossless=True
    )
    with running_api(ctx.settings) as url:
        dock_client = Dock(httpx.Client(base_url=url, timeout=60), key)
        for clip in clips:
            declared = dock_client.declare(clip).json()
            assert len(declared["parts"]) >= 2
            dock_client.send(clip, declared)
            answers = _racing(lambda: dock_client.complete(declared["id"]))
            assert [r.status_code for r in answers] == [202, 202], [r.text for r in answers]
            assert {r.json()["state"] for r in answers} == {"processing"}
            with ctx.db.session() as s:
                assert s.get(Upload, declared["id"]).state == "processing"
    with ctx.db.session() as s:
        completed = s.scalars(
            select(LedgerEntry.entry).where(LedgerEntry.type == "upload.completed")
        ).all()
    assert len(completed) == len(clips), "each upload was completed once"


def _racing(call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """`call` made twice at the same instant, from two threads."""
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(2)

    def one() -> None:
        barrier.wait()
        answers.append(call())

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return answers
