"""Ingest benchmark: dock-to-stored throughput, peak RSS of dock and worker, transcode overhead.

A benchmark, not a test: nothing here asserts a timing. Every figure is measured in the same
run as its baseline, so read the ratios, not the absolute numbers, on a noisy machine.

1. Throughput. A clip of random bytes named `.mp4` (hashing, uploading, verifying and
   promoting do not depend on content; it comes out *unplayable*, so no transcode runs) goes
   through `evidence dock` (a subprocess) to `evidence serve` (a subprocess, local object
   store, presigned part PUTs through the API), then through the worker's service
   `process_upload` (in this process, timed per phase) until the upload is `stored`.
   Baseline on the same file in the same run: `openssl dgst -sha256` plus `cp`. Part
   `throughput-s3` does the same on the S3 profile: a Ceph RADOS Gateway started for the run
   (the tests' `ceph_gateway`, deploy/dev/ceph-up.sh), the dock's parts going straight to it.
   Every step that writes GiBs starts after a short pause (`--settle`, see settle()): on this VM a
   user-space write into memory the guest has not just freed costs ~2 s/GiB, which the
   table shows next to the baseline (`dd bs=1M`, settled and right after a delete).
2. Peak RSS of the dock agent and of a Celery worker (`evidence worker --concurrency=1` on the
   embedded broker), for a large and a small clip, to show it is flat in clip size. The dock's
   peak is its rusage ru_maxrss from wait4() (what `/usr/bin/time -v` reports as "Maximum
   resident set size"); the worker's is broken down per process from /proc VmHWM (celery's
   main process and the pool process that runs the task) and summed as PSS (shared pages
   counted once), with wait4's figure as a cross-check.
3. Transcode: a real 1080p30 H.264/AAC clip (lavfi testsrc2 + sine, the test fixtures' recipe)
   through `transcode_proxy` (evidence/media/derivatives.py) against the bare ffmpeg command
   with the same arguments (`proxy_args`, bound as the derivative's recipe would be),
   alternated (bare first, then each pair reversed), both ffmpegs in this process's session
   (same scheduler group).

    .venv/bin/python bench/ingest.py --quick   # 64 MiB / 256+64 MiB / 10 s clip: smoke run
    .venv/bin/python bench/ingest.py           # 1 GiB / 2 GiB+256 MiB / 60 s clip: the figures

Prints a table, progress goes to stderr, and the raw figures go to
bench/results/ingest-<timestamp>.json (git-ignored). Temporary files and every process the
benchmark started are removed on exit, Ctrl-C and SIGTERM included. MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `evidence` and `tests.fixtures` without an install

import httpx

import evidence
from evidence import queue
from evidence.accounts.service import create_device
from evidence.clips.models import Clip
from evidence.config import Settings
from evidence.context import Context
from evidence.ingest import service as ingest_service
from evidence.ingest.models import Upload
from evidence.ingest.service import process_upload
from evidence.media import derivatives, runner
from evidence.media.derivatives import Recipe, proxy_args, transcode_proxy
from evidence.media.probe import probe
from evidence.media.runner import ffmpeg_binary, ffmpeg_version, sha256_file
from evidence.migrate import upgrade
from evidence.storage import original_key
from tests.fixtures.media import lavfi_inputs
from tests.fixtures.s3 import S3Server, ceph_gateway

MiB = 1024 * 1024
MB = 1_000_000
PY = sys.executable
RSS_TARGET_MB = 150
CLIP_NAME = "CAM1_20261126_0800.mp4"
T0 = time.perf_counter()
RUNNING: list[Proc] = []  # every child process still to be stopped on the way out


class BenchError(Exception):
    """Something the benchmark needs failed; the message says what."""


# -- small helpers ----------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    proc: Proc | None = None,
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.exited():
            raise BenchError(
                f"{what}: {proc.name} exited early (status {proc.returncode}){proc.tail()}"
            )
        time.sleep(interval)
    raise BenchError(f"{what}: not done after {timeout:.0f} s{proc.tail() if proc else ''}")


def mbps(size: int, seconds: float) -> float:
    return size / seconds / MB if seconds > 0 else float("inf")


def write_random(path: Path, size: int) -> float:
    """`size` random bytes (os.urandom, 4 MiB at a time); seconds taken."""
    t = time.perf_counter()
    with path.open("wb") as f:
        left = size
        while left:
            n = min(4 * MiB, left)
            f.write(os.urandom(n))
            left -= n
    return time.perf_counter() - t


def _libc_prctl() -> Any:
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _libc_prctl() if sys.platform.startswith("linux") else None
_PARENT = os.getpid()


def _child_setup() -> None:
    """Runs in each child between fork and exec: SIGTERM it if this benchmark dies, even by
    SIGKILL (PR_SET_PDEATHSIG), so no server outlives the run."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)
        if os.getppid() != _PARENT:
            os._exit(1)


# -- child processes, their rusage and their memory -----------------------------------------


class Proc:
    """A child process in its own process group, reaped with wait4() for its rusage.

    ru_maxrss is the peak RSS of the process or of the largest descendant it waited for,
    in KiB: the figure `/usr/bin/time -v` prints as "Maximum resident set size".
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        stdout: Any = subprocess.DEVNULL,
        stderr: Any = subprocess.DEVNULL,
        new_session: bool = True,
    ):
        self.name = name
        # A session (and process group) of its own, so that stopping it stops its children
        # too; never for a process timed against one started in ours (transcode_proxy's
        # ffmpeg): the scheduler's autogroups are per session.
        self.own_group = new_session
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=new_session,
            preexec_fn=_child_setup,  # noqa: PLW1509
        )
        self.pid = self.popen.pid
        self.returncode: int | None = None
        self.maxrss_kb: int | None = None
        self.cpu_s: float | None = None  # user + system, from wait4's rusage
        self.lines: list[tuple[float, str]] = []  # (perf_counter, line) when captured
        self.log_path: Path | None = None
        RUNNING.append(self)

    def _reap(self, block: bool) -> bool:
        if self.returncode is not None:
            return True
        try:
            pid, status, usage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.returncode = -1
            return True
        if pid == 0:
            return False
        self.returncode = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.returncode  # Popen must never wait for it again
        self.maxrss_kb = usage.ru_maxrss
        self.cpu_s = usage.ru_utime + usage.ru_stime
        if self in RUNNING:
            RUNNING.remove(self)
        return True

    def exited(self) -> bool:
        return self._reap(block=False)

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            return self._reap(block=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reap(block=False):
                return True
            time.sleep(0.05)
        return self._reap(block=False)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process (it stops its own children), then SIGKILL its group."""
        if self.exited():
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not self.wait(timeout):
            try:
                if self.own_group:
                    os.killpg(self.pid, signal.SIGKILL)  # the group we created for it
                else:
                    os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(10)

    def capture(
        self, stream: IO[bytes], echo: str | None = None, log_path: Path | None = None
    ) -> threading.Thread:
        """Read `stream` line by line in a thread, timestamping each line on arrival."""
        self.log_path = log_path

        def pump() -> None:
            out = log_path.open("w") if log_path else None
            try:
                for raw in stream:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    self.lines.append((time.perf_counter(), line))
                    if out:
                        out.write(line + "\n")
                        out.flush()
                    if echo:
                        log(f"  {echo} | {line}")
            finally:
                if out:
                    out.close()

        thread = threading.Thread(target=pump, name=f"{self.name}-output", daemon=True)
        thread.start()
        return thread

    def tail(self, n: int = 20) -> str:
        lines = [line for _, line in self.lines[-n:]]
        return ("\n    " + "\n    ".join(lines)) if lines else ""


def _ppid_children() -> dict[int, list[int]]:
    """pid -> child pids, from /proc/*/stat (this kernel has no /proc/PID/task/TID/children)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # state ppid ...
        children[int(fields[1])].append(int(entry.name))
    return children


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (a forked pool process shares most of its parent's)
    split between the processes sharing them, so that a sum over processes means something."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _status_kb(pid: int) -> tuple[str, int, int] | None:
    """(Name, VmRSS kB, VmHWM kB) of a live process; None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "VmRSS" not in values:
        return None
    kb = lambda k: int(values[k].split()[0])
    return values["Name"].strip(), kb("VmRSS"), kb("VmHWM")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a live process has used so far (its own threads)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:160]
    except OSError:
        return ""


class TreeSampler:
    """Samples a process tree: each process's VmHWM (the kernel's own peak RSS, so it misses
    nothing while the process lives) and the peak of the tree's summed PSS (sampled)."""

    def __init__(self, root: int, interval: float = 0.1):
        self.root = root
        self.interval = interval
        self.procs: dict[int, dict[str, Any]] = {}
        self.tree_pss_peak_kb = 0
        self.python_pss_peak_kb = 0  # the tree's Python processes only (no ffmpeg/ffprobe)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        children = _ppid_children()
        total = python = 0
        todo = [(self.root, 0)]
        with self._lock:
            while todo:
                pid, depth = todo.pop()
                status = _status_kb(pid)
                if status is None:
                    continue
                name, _rss, hwm = status
                pss = _pss_kb(pid)
                total += pss
                if not name.startswith(("ffmpeg", "ffprobe")):
                    python += pss
                rec = self.procs.setdefault(
                    pid,
                    {"pid": pid, "name": name, "depth": depth, "cmd": _cmdline(pid), "hwm_kb": 0},
                )
                rec["hwm_kb"] = max(rec["hwm_kb"], hwm)
                todo.extend((child, depth + 1) for child in children.get(pid, ()))
            self.tree_pss_peak_kb = max(self.tree_pss_peak_kb, total)
            self.python_pss_peak_kb = max(self.python_pss_peak_kb, python)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peaks(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted((dict(r) for r in self.procs.values()), key=lambda r: r["depth"])


# -- a store: database, object store, API server ----------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Store:
    """One store in `root`: SQLite, the local object store (or a bucket on `s3`, a Ceph RADOS
    Gateway), one dock device, and `evidence serve` as a subprocess."""

    def __init__(self, root: Path, name: str, s3: S3Server | None = None):
        self.name = name
        self.s3 = s3
        self.dir = root / name
        self.data_dir = self.dir / "var"
        self.data_dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_url = f"sqlite:///{self.data_dir}/evidence.db"
        upgrade(self.db_url)
        self.bucket = f"bench-{name}-{os.getpid()}"
        self.settings = (
            s3.settings(self.bucket, self.data_dir, database_url=self.db_url, public_url=self.url)
            if s3
            else Settings(
                data_dir=self.data_dir,
                database_url=self.db_url,
                storage_backend="local",
                public_url=self.url,
            )
        )
        self.ctx = Context(self.settings)
        self.key = create_device(self.ctx, None, f"bench-dock-{name}").key
        self.api: Proc | None = None

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(
            EVIDENCE_DATA_DIR=str(self.data_dir),
            EVIDENCE_DATABASE_URL=self.db_url,
            EVIDENCE_PUBLIC_URL=self.url,
            EVIDENCE_STORAGE_BACKEND="s3" if self.s3 else "local",
            **(
                {
                    "EVIDENCE_S3_ENDPOINT": self.s3.endpoint,
                    "EVIDENCE_S3_ACCESS_KEY": self.s3.access_key,
                    "EVIDENCE_S3_SECRET_KEY": self.s3.secret_key,
                    "EVIDENCE_S3_BUCKET": self.bucket,
                }
                if self.s3
                else {}
            ),
            **extra,
        )

    def start_api(self) -> None:
        log(f"{self.name}: starting `evidence serve` on {self.url}")
        self.api = Proc(
            "evidence serve",
            [PY, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.api.popen.stdout is not None
        self.api.capture(self.api.popen.stdout, log_path=self.dir / "api.log")

        def up() -> bool:
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "API server", self.api, interval=0.1)

    def api_peak_kb(self) -> int | None:
        status = _status_kb(self.api.pid) if self.api else None
        return status[2] if status else None

    def upload(self, upload_id: str) -> tuple[str, str | None, str | None]:
        """(upload state, clip state, clip media error)."""
        with self.ctx.db.session() as s:
            u = s.get(Upload, upload_id)
            c = s.get(Clip, u.clip_id) if u and u.clip_id else None
            return (
                u.state if u else "missing",
                c.state if c else None,
                c.media_error if c else None,
            )

    def close(self) -> None:
        if self.api:
            self.api.stop()
        self.ctx.db.dispose()


# -- the dock agent -----------------------------------------------------------------------


@dataclass
class DockRun:
    size: int
    wall_s: float
    startup_s: float  # launch -> "hashing" line: interpreter, imports, GET /healthz
    hash_declare_s: float  # "hashing" -> "uploading": SHA-256 of the file + the declaration
    upload_complete_s: float  # "uploading" -> "uploaded": part PUTs + complete
    complete_s: float | None  # of which: last part PUT answered -> complete answered (API log)
    exit_s: float  # "uploaded" -> process gone
    maxrss_kb: int
    cpu_s: float  # the agent's own CPU time (user + system)
    api_cpu_s: float | None  # the API server's CPU time while the agent ran
    parts: int
    upload_id: str
    clip_id: str | None  # known once the worker verified it, after the dock's run
    sha256: str
    summary: list[str] = field(default_factory=list)


# "sent": complete answered 202; the worker runs in this process afterwards (--wait 0).
_MARKS = {"hashing": ": hashing ", "uploading": ": uploading ", "uploaded": ": sent ("}


def run_dock(store: Store, clip_dir: Path, size: int) -> DockRun:
    """`evidence dock DIR --api URL` with the key in EVIDENCE_DEVICE_KEY, as docs advise."""
    state_dir = clip_dir.parent / f"{clip_dir.name}.dock-state"  # on the dock, not the camera
    shutil.rmtree(state_dir, ignore_errors=True)  # a fresh agent
    api_from = len(store.api.lines) if store.api else 0
    api_cpu0 = cpu_seconds(store.api.pid) if store.api else None
    t0 = time.perf_counter()
    proc = Proc(
        "evidence dock",
        [
            PY,
            "-m",
            "cli",
            "dock",
            str(clip_dir),
            "--api",
            store.url,
            "--wait",
            "0",
            "--state-dir",
            str(state_dir),
        ],
        env=store.env(EVIDENCE_DEVICE_KEY=store.key),
        stderr=subprocess.PIPE,
    )
    assert proc.popen.stderr is not None
    marks: dict[str, float] = {}
    lines = []
    for raw in proc.popen.stderr:  # the agent's stderr: one line per clip event
        now = time.perf_counter() - t0
        line = raw.decode("utf-8", "replace").rstrip()
        lines.append(line)
        proc.lines.append((now, line))
        log(f"  dock | {line}")
        for mark, needle in _MARKS.items():
            if needle in line and mark not in marks:
                marks[mark] = now
    proc.wait()
    wall = time.perf_counter() - t0
    api_cpu1 = cpu_seconds(store.api.pid) if store.api else None
    if proc.returncode != 0 or set(marks) != set(_MARKS):
        raise BenchError(f"evidence dock exited with status {proc.returncode}:{proc.tail()}")
    states = list(state_dir.glob("*/*.json"))
    state = json.loads(states[0].read_text())
    parts = re.search(r" in (\d+) parts?", next(x for x in lines if _MARKS["uploading"] in x))
    return DockRun(
        size=size,
        wall_s=wall,
        startup_s=marks["hashing"],
        hash_declare_s=marks["uploading"] - marks["hashing"],
        upload_complete_s=marks["uploaded"] - marks["uploading"],
        complete_s=_complete_seconds(store, api_from, state["upload_id"]),
        exit_s=wall - marks["uploaded"],
        maxrss_kb=proc.maxrss_kb or 0,
        cpu_s=proc.cpu_s or 0.0,
        api_cpu_s=api_cpu1 - api_cpu0 if api_cpu0 is not None and api_cpu1 is not None else None,
        parts=int(parts.group(1)) if parts else 0,
        upload_id=state["upload_id"],
        clip_id=state.get("clip_id"),
        sha256=state["sha256"],
        summary=[x for x in lines if x.startswith(("summary:", "sent "))],
    )


def _complete_seconds(store: Store, start: int, upload_id: str) -> float | None:
    """From the API's access log, timestamped as it arrived: last part PUT answered ->
    complete answered. The complete request joins the parts server-side (local store)."""
    if store.api is None:
        return None
    time.sleep(0.2)  # let the log pump catch up
    lines = store.api.lines[start:]
    puts = [t for t, line in lines if '"PUT /api/v1/objects/incoming/' in line]
    done = [t for t, line in lines if f"/api/v1/uploads/{upload_id}/complete" in line]
    return done[-1] - puts[-1] if puts and done else None


# -- 1. throughput --------------------------------------------------------------------------


def timed_run(argv: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return seconds, done.stdout


def settle(seconds: float) -> None:
    """Pause before a step that writes GiBs, so every such step starts from the same state.

    On this VM (Firecracker, virtio-balloon free page reporting) memory the guest frees goes
    back to the host within a second or two, and a user-space write into page cache that
    was not freed just before pays ~2 s/GiB of host page faults; a write right after a
    delete reuses the freed pages and does not. Without a pause, whichever step happens to
    follow a big delete (a finished run's temp files) looks fast.
    """
    if seconds > 0:
        time.sleep(seconds)


def baseline(clip: Path, tmp: Path, pause: float) -> dict[str, Any]:
    """openssl dgst -sha256 FILE, then cp FILE dst (and, apart, sync of dst: its fsync).

    Also, not part of the baseline: a user-space copy (dd bs=1M, read + write as the store's
    Python code does) from the settled state, and again right after deleting the first copy.
    """
    openssl_s, out = timed_run(["openssl", "dgst", "-sha256", str(clip)])
    dst = tmp / "copy.mp4"
    dd = ["dd", f"if={clip}", f"of={dst}", "bs=1M", "status=none"]
    try:
        settle(pause)
        cp_s, _ = timed_run(["cp", str(clip), str(dst)])
        sync_s, _ = timed_run(["sync", str(dst)])
        dst.unlink()
        settle(pause)
        dd_s, _ = timed_run(dd)
        dst.unlink()
        dd_again_s, _ = timed_run(dd)
    finally:
        dst.unlink(missing_ok=True)
    return {
        "openssl_s": openssl_s,
        "cp_s": cp_s,
        "sync_s": sync_s,
        "dd_s": dd_s,
        "dd_after_delete_s": dd_again_s,
        "sha256": out.strip().rsplit("= ", 1)[-1],
    }


def worker_in_process(store: Store, upload_id: str) -> dict[str, Any]:
    """`process_upload` as the worker task calls it, timed per phase by wrapping the two
    calls that split it (store.promote, the ingest service's probe); nothing else is changed."""
    ctx = store.ctx
    marks: dict[str, float] = {}
    real_promote, real_probe = ctx.store.promote, ingest_service.probe

    def timing(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks[f"{name}_start"] = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                marks[f"{name}_end"] = time.perf_counter()

        return wrapper

    ctx.store.promote = timing("promote", real_promote)  # type: ignore[method-assign]
    ingest_service.probe = timing("probe", real_probe)
    try:
        t0 = time.perf_counter()
        state = process_upload(ctx, upload_id)
        total = time.perf_counter() - t0
    finally:
        del ctx.store.promote
        ingest_service.probe = real_probe
    if state != "stored" or "promote_start" not in marks:
        raise BenchError(f"process_upload({upload_id}) ended {state!r} without promoting")
    copy = marks["promote_start"] - t0
    promote = marks["promote_end"] - marks["promote_start"]
    probe = marks["probe_end"] - marks["probe_start"]
    return {
        "total_s": total,
        "copy_hash_s": copy,
        "promote_s": promote,
        "probe_s": probe,
        "rest_s": total - copy - promote - probe,
        "state": state,
    }


def bench_throughput(
    args: argparse.Namespace, tmp: Path, s3: S3Server | None = None
) -> dict[str, Any]:
    size = args.size_mib * MiB
    store = Store(tmp, "throughput-s3" if s3 else "throughput", s3)
    try:
        store.start_api()
        clip_dir = tmp / f"camera-{store.name}"
        clip_dir.mkdir()
        clip = clip_dir / CLIP_NAME
        log(f"throughput: writing {args.size_mib} MiB of random bytes to {clip.name}")
        gen_s = write_random(clip, size)
        runs = []
        for r in range(args.repeats):
            # New first bytes each repeat: a new sha256, so the store never dedups the run.
            with clip.open("r+b") as f:
                f.write(os.urandom(32))
            log(f"throughput run {r + 1}/{args.repeats}: baseline (openssl dgst -sha256, cp)")
            base = baseline(clip, tmp, args.settle)
            log(f"throughput run {r + 1}/{args.repeats}: evidence dock -> API")
            settle(args.settle)
            dock = run_dock(store, clip_dir, size)
            if dock.sha256 != base["sha256"]:
                raise BenchError(f"the dock declared {dock.sha256}, openssl says {base['sha256']}")
            log(f"throughput run {r + 1}/{args.repeats}: process_upload (verify, promote, probe)")
            worker = worker_in_process(store, dock.upload_id)
            state, clip_state, error = store.upload(dock.upload_id)
            stored = store.ctx.store.stat(original_key(dock.sha256))
            if state != "stored" or stored.size != size:
                raise BenchError(f"upload {dock.upload_id} is {state}, original {stored}")
            runs.append(
                {
                    "baseline": base,
                    "dock": asdict(dock),
                    "worker": worker,
                    "clip_state": clip_state,
                    "media_error": (error or "").splitlines()[0] if error else None,
                }
            )
            log(
                f"  dock {dock.wall_s:.2f} s + worker {worker['total_s']:.2f} s; baseline "
                f"{base['openssl_s'] + base['cp_s']:.2f} s; clip is {clip_state}"
            )
        return {
            "backend": "s3" if s3 else "local",
            "size": size,
            "generate_s": gen_s,
            "runs": runs,
            "api_peak_rss_kb": store.api_peak_kb(),
        }
    finally:
        store.close()


# -- 2. peak RSS ----------------------------------------------------------------------------


FINAL_STATES = ("stored", "rejected", "failed")
_TASK_DONE = re.compile(rf"Task {re.escape(queue.PROCESS_UPLOAD)}\[[^\]]+\] succeeded in ([\d.]+)s")


def start_worker(store: Store, tag: str) -> tuple[Proc, TreeSampler]:
    proc = Proc(
        "evidence worker",
        [PY, "-m", "cli", "worker", "--concurrency=1", "--hostname", f"bench-{tag}@%h"],
        env=store.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.popen.stdout is not None
    proc.capture(proc.popen.stdout, log_path=store.dir / f"worker-{tag}.log")
    sampler = TreeSampler(proc.pid).start()
    wait_until(
        lambda: any(" ready." in line for _, line in proc.lines),
        90,
        "celery worker start",
        proc,
        interval=0.1,
    )
    return proc, sampler


def bench_rss(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    store = Store(tmp, "rss")
    out: dict[str, Any] = {"sizes": {}}
    try:
        store.start_api()
        for mib in (args.rss_small_mib, args.rss_size_mib):
            size = mib * MiB
            clip_dir = tmp / f"camera-rss-{mib}"
            clip_dir.mkdir()
            log(f"rss {mib} MiB: writing random bytes")
            write_random(clip_dir / CLIP_NAME, size)
            log(f"rss {mib} MiB: starting `evidence worker --concurrency=1` (embedded broker)")
            worker, sampler = start_worker(store, f"{mib}m")
            try:
                sampler.sample()
                idle = {p["pid"]: p["hwm_kb"] for p in sampler.peaks()}
                log(f"rss {mib} MiB: evidence dock -> API -> queue -> worker")
                settle(args.settle)
                t0 = time.perf_counter()
                dock = run_dock(store, clip_dir, size)
                wait_until(
                    lambda u=dock.upload_id: store.upload(u)[0] in FINAL_STATES,
                    600 + 60 * mib / 1024,
                    f"upload {dock.upload_id} stored",
                    worker,
                )
                stored_s = time.perf_counter() - t0
                sampler.sample()  # the task is done: every VmHWM now covers it
                peaks = sampler.peaks()
                state, clip_state, _ = store.upload(dock.upload_id)
                if state != "stored":
                    raise BenchError(f"upload {dock.upload_id} ended {state}")
                task = [
                    float(m.group(1)) for _, line in worker.lines if (m := _TASK_DONE.search(line))
                ]
            finally:
                sampler.stop()
                worker.stop()
            for p in peaks:
                p["idle_hwm_kb"] = idle.get(p["pid"])
            out["sizes"][str(mib)] = {
                "size": size,
                "dock": asdict(dock),
                "dock_to_stored_s": stored_s,
                "task_s": task[-1] if task else None,
                "clip_state": clip_state,
                "worker_processes": peaks,
                "worker_tree_pss_peak_kb": sampler.tree_pss_peak_kb,
                "worker_python_pss_peak_kb": sampler.python_pss_peak_kb,
                "worker_wait4_maxrss_kb": worker.maxrss_kb,
            }
            (clip_dir / CLIP_NAME).unlink()
            log(
                f"rss {mib} MiB: dock peak {fmb(dock.maxrss_kb)}, worker processes "
                + ", ".join(f"{_role(p)} {fmb(p['hwm_kb'])}" for p in peaks)
            )
        out["api_peak_rss_kb"] = store.api_peak_kb()
        return out
    finally:
        store.close()


def _role(p: dict[str, Any]) -> str:
    if p["depth"] == 0:
        return "celery main"
    if "python" in p["name"] or "celery" in p["name"] or "evidence" in p["cmd"]:
        return "celery pool (runs the task)" if p["depth"] == 1 else f"python depth {p['depth']}"
    return p["name"]


# -- 3. transcode ---------------------------------------------------------------------------


def make_source_clip(path: Path, seconds: int) -> float:
    """The fixtures' 1080p recipe (tests/fixtures/media.py clip_1080p), `seconds` long."""
    argv = [
        ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-y",
        *lavfi_inputs("1920x1080", "30", seconds),
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-g", "30",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-shortest", str(path),
    ]  # fmt: skip
    seconds_taken, _ = timed_run(argv)
    return seconds_taken


def run_bare(argv: list[str]) -> dict[str, Any]:
    """The bound recipe argv, run directly (stdout = -progress output, discarded)."""
    t = time.perf_counter()
    proc = Proc("ffmpeg", argv, stderr=subprocess.PIPE, new_session=False)
    assert proc.popen.stderr is not None
    err = proc.popen.stderr.read().decode("utf-8", "replace")
    proc.wait()
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise BenchError(f"bare ffmpeg failed ({proc.returncode}): {err[-2000:]}")
    return {"s": seconds, "maxrss_kb": proc.maxrss_kb}


def run_wrapped(src: Path, dst: Path, sha256: str) -> tuple[dict[str, Any], Recipe]:
    """transcode_proxy, with its two extra steps timed (probe, sha256 of the output)."""
    spent = {"probe": 0.0, "sha256_file": 0.0}
    # Where transcode_proxy looks each one up: the probe in derivatives, the hash in runner.
    owner = {"probe": derivatives, "sha256_file": runner}
    real = {name: getattr(owner[name], name) for name in spent}

    def timing(name: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return real[name](*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t

        return wrapper

    for name in spent:
        setattr(owner[name], name, timing(name))
    try:
        t = time.perf_counter()
        recipe = transcode_proxy(src, dst, input_sha256=sha256)
        seconds = time.perf_counter() - t
    finally:
        for name, fn in real.items():
            setattr(owner[name], name, fn)
    return {
        "s": seconds,
        "probe_s": spent["probe"],
        "output_sha256_s": spent["sha256_file"],
    }, recipe


def bench_transcode(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    work = tmp / "transcode"
    work.mkdir()
    src = work / "clip-1080p.mp4"
    log(
        f"transcode: encoding a {args.clip_seconds} s 1080p30 H.264/AAC clip "
        "(lavfi testsrc2 + sine, libx264 veryfast crf 26)"
    )
    encode_s = make_source_clip(src, args.clip_seconds)
    facts = probe(src, decode=False)
    if (facts.width, facts.height, facts.video_codec, facts.audio_codec) != (
        1920,
        1080,
        "h264",
        "aac",
    ):
        raise BenchError(f"the source clip is not 1080p H.264/AAC: {facts}")
    sha = sha256_file(src)
    version = ffmpeg_version()  # cached per process, as in a long-running worker
    args_template = proxy_args(has_audio=True)
    bare_dst, wrapped_dst = work / "bare.mp4", work / "proxy.mp4"
    bare_argv = Recipe(version, tuple(args_template), sha, "").argv(src, bare_dst)
    bare, wrapped, outputs = [], [], set()
    recipe = None
    for r in range(args.transcode_repeats):
        order = ("bare", "wrapped") if r % 2 == 0 else ("wrapped", "bare")
        for which in order:
            log(f"transcode run {r + 1}/{args.transcode_repeats}: {which}")
            if which == "bare":
                bare_dst.unlink(missing_ok=True)
                bare.append(run_bare(bare_argv))
                outputs.add(("bare", sha256_file(bare_dst)))
            else:
                wrapped_dst.unlink(missing_ok=True)
                run, recipe = run_wrapped(src, wrapped_dst, sha)
                wrapped.append(run)
                outputs.add(("wrapped", recipe.output_sha256))
            log(f"  {(bare if which == 'bare' else wrapped)[-1]['s']:.2f} s")
    assert recipe is not None
    proxy = probe(wrapped_dst, decode=False)
    return {
        "clip_seconds": args.clip_seconds,
        "source_bytes": src.stat().st_size,
        "source_encode_s": encode_s,
        "ffmpeg_version": version,
        "same_args": list(recipe.args) == args_template,
        "args": list(recipe.args),
        "bare": bare,
        "wrapped": wrapped,
        "outputs_identical": len({h for _, h in outputs}) == 1,
        "proxy": {
            "bytes": wrapped_dst.stat().st_size,
            "width": proxy.width,
            "height": proxy.height,
            "video_codec": proxy.video_codec,
            "audio_codec": proxy.audio_codec,
        },
    }


# -- report -----------------------------------------------------------------------------------


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join(
        [f"\n{title}", line(header), line(["-" * w for w in widths]), *map(line, rows)]
    )


def med(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return median(xs) if xs else None


def fs(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def fmb(kb: float | None) -> str:
    """KiB (what the kernel reports) as MB = 10^6 bytes, the target's unit."""
    return "n/a" if kb is None else f"{kb * 1024 / MB:.0f} MB"


def render_throughput(t: dict[str, Any]) -> str:
    size, runs = t["size"], t["runs"]
    b = lambda k: med([r["baseline"][k] for r in runs])
    d = lambda k: med([r["dock"][k] for r in runs])
    w = lambda k: med([r["worker"][k] for r in runs])
    base = med([r["baseline"]["openssl_s"] + r["baseline"]["cp_s"] for r in runs])
    total = med([r["dock"]["wall_s"] + r["worker"]["total_s"] for r in runs])
    parts = runs[0]["dock"]["parts"]

    def row(
        name: str, s: float | None, note: str = "", ratio: bool = False, rate: bool = True
    ) -> list[str]:
        r = f"{mbps(size, s):,.0f}" if s and rate else ""
        return [name, fs(s), r, f"{s / base:.1f}x" if ratio and s and base else "", note]

    cpu = (
        f"CPU: agent {d('cpu_s'):.1f} s, API server {d('api_cpu_s'):.1f} s"
        if d("api_cpu_s") is not None
        else ""
    )

    rows = [
        row("openssl dgst -sha256", b("openssl_s")),
        row("cp FILE dst (ext4, no fsync)", b("cp_s")),
        row("baseline: openssl + cp", base, ratio=True),
        row("  (sync dst after cp: the fsync)", b("sync_s"), note="not in the baseline"),
        row("  (dd bs=1M: user-space copy)", b("dd_s"), note="not in the baseline; settled"),
        row(
            "  (dd again, right after a delete)",
            b("dd_after_delete_s"),
            note="not in the baseline; recycled pages",
        ),
        row("evidence dock (subprocess wall)", d("wall_s"), ratio=True, note=cpu),
        row("  start-up + GET /healthz", d("startup_s"), rate=False),
        row("  hash (SHA-256) + declare", d("hash_declare_s")),
        row(f"  PUT {parts} parts + complete", d("upload_complete_s"), ratio=True),
        row(
            "    of which complete (installs / joins parts)",
            d("complete_s"),
            note="API log: last PUT -> complete",
        ),
        row("  summary + exit", d("exit_s"), rate=False),
        row("worker process_upload (in-process)", w("total_s"), ratio=True),
        row("  fetch: download + SHA-256 (S3 only)", w("copy_hash_s")),
        row("  promote (local: pin + SHA-256; S3: copy)", w("promote_s")),
        row("  probe (ffprobe: unplayable)", w("probe_s"), rate=False),
        row("  ledger + database", w("rest_s"), rate=False),
        row("dock-to-stored (dock + worker)", total, ratio=True),
    ]
    where = "S3 (Ceph RGW)" if t.get("backend") == "s3" else "local object store"
    title = (
        f"1. Dock-to-stored throughput, {where}, {size // MiB} MiB clip of random bytes named "
        f".mp4 (unplayable: probed, no transcode); median of {len(runs)} run(s)"
    )
    return table(title, ["measure", "time", "MB/s", "x baseline time", "note"], rows)


def render_rss(r: dict[str, Any], t: dict[str, Any] | None) -> str:
    sizes = list(r["sizes"])
    cols = [f"{int(s)} MiB clip" for s in sizes]

    def per(f: Callable[[dict[str, Any]], str]) -> list[str]:
        return [f(r["sizes"][s]) for s in sizes]

    def role_hwm(role: str) -> Callable[[dict[str, Any]], str]:
        def get(x: dict[str, Any]) -> str:
            found = [p for p in x["worker_processes"] if _role(p) == role]
            if not found:
                return "-"
            p = max(found, key=lambda p: p["hwm_kb"])
            idle = f" (idle {fmb(p['idle_hwm_kb'])})" if p.get("idle_hwm_kb") else ""
            return fmb(p["hwm_kb"]) + idle

        return get

    def children(x: dict[str, Any]) -> str:
        found = [
            p
            for p in x["worker_processes"]
            if p["depth"] >= 2 or (p["depth"] == 1 and _role(p) != "celery pool (runs the task)")
        ]
        return ", ".join(f"{p['name']} {fmb(p['hwm_kb'])}" for p in found) or "none seen"

    rows = [
        ["dock agent (ru_maxrss)", *per(lambda x: fmb(x["dock"]["maxrss_kb"]))],
        ["worker: celery main (VmHWM)", *per(role_hwm("celery main"))],
        [
            "worker: celery pool, runs the task (VmHWM)",
            *per(role_hwm("celery pool (runs the task)")),
        ],
        ["worker: ffprobe child (VmHWM, sampled: short-lived)", *per(children)],
        [
            "worker main + pool, summed PSS (sampled peak)",
            *per(lambda x: fmb(x["worker_python_pss_peak_kb"])),
        ],
        [
            "worker ru_maxrss (largest process in tree)",
            *per(lambda x: fmb(x["worker_wait4_maxrss_kb"])),
        ],
        [
            "dock-to-stored through Celery",
            *per(
                lambda x: (
                    f"{x['dock_to_stored_s']:.2f} s "
                    f"({mbps(x['size'], x['dock_to_stored_s']):,.0f} MB/s)"
                )
            ),
        ],
        [
            "  dock wall / task run (celery log)",
            *per(lambda x: f"{x['dock']['wall_s']:.2f} s / {fs(x['task_s'])}"),
        ],
    ]
    if t is not None:
        cols.append(f"{t['size'] // MiB} MiB (part 1)")
        dock_kb = med([run["dock"]["maxrss_kb"] for run in t["runs"]])
        for row in rows:
            row.append(fmb(int(dock_kb)) if row[0].startswith("dock agent") else "")
    title = (
        f"2. Peak RSS (target: under {RSS_TARGET_MB} MB each, flat in clip size); "
        "clips of random bytes, worker = `evidence worker --concurrency=1`"
    )
    out = table(title, ["process", *cols], rows)
    api = [x for x in (r.get("api_peak_rss_kb"), t and t.get("api_peak_rss_kb")) if x]
    if api:
        out += (
            f"\n(API server `evidence serve`, lifetime peak RSS: "
            f"{' / '.join(fmb(x) for x in api)} in part 2 / part 1; not a target)"
        )
    return out


def render_transcode(x: dict[str, Any]) -> str:
    bare = med([r["s"] for r in x["bare"]])
    wrapped = med([r["s"] for r in x["wrapped"]])
    secs = x["clip_seconds"]
    runs = lambda rs: ", ".join(f"{r['s']:.2f}" for r in rs)
    rows = [
        ["bare ffmpeg, proxy_args bound", fs(bare), f"{secs / bare:.1f}x", runs(x["bare"])],
        ["transcode_proxy", fs(wrapped), f"{secs / wrapped:.1f}x", runs(x["wrapped"])],
        [
            "  of which probe (ffprobe, decode=False)",
            fs(med([r["probe_s"] for r in x["wrapped"]])),
            "",
            "",
        ],
        [
            "  of which SHA-256 of the output",
            fs(med([r["output_sha256_s"] for r in x["wrapped"]])),
            "",
            "",
        ],
        ["ratio transcode_proxy / bare, medians", f"{wrapped / bare:.3f}", "", ""],
        [
            "ratio transcode_proxy / bare, fastest runs",
            f"{min(r['s'] for r in x['wrapped']) / min(r['s'] for r in x['bare']):.3f}",
            "",
            "(CPU-bound: the fastest run is the least disturbed)",
        ],
    ]
    p = x["proxy"]
    title = (
        f"3. Transcode, {secs} s 1080p30 H.264/AAC clip ({x['source_bytes'] / MB:.1f} MB, "
        f"encoded in {x['source_encode_s']:.1f} s) -> proxy {p['width']}x{p['height']} "
        f"{p['video_codec']}/{p['audio_codec']} ({p['bytes'] / MB:.1f} MB); median of "
        f"{len(x['bare'])} each, alternated (bare first, then each pair reversed)"
    )
    out = table(title, ["measure", "time", "x realtime", "runs (s)"], rows)
    out += (
        f"\nsame argv as the recipe: {x['same_args']}; bare and proxy outputs identical "
        f"(sha256): {x['outputs_identical']}; ffmpeg {x['ffmpeg_version']}, "
        f"ffmpeg peak RSS {fmb(med([r['maxrss_kb'] for r in x['bare']]))}"
    )
    return out


def render(res: dict[str, Any]) -> str:
    load = lambda x: "/".join(f"{v:.1f}" for v in x)
    parts = [
        (
            f"Ingest benchmark, {res['started']}, {res['machine']}, "
            f"wall time {res['wall_s']:.0f} s, load average {load(res['loadavg_start'])} "
            f"at start, {load(res['loadavg_end'])} at end"
        )
    ]
    if "throughput" in res:
        parts.append(render_throughput(res["throughput"]))
    if "throughput_s3" in res:
        parts.append(render_throughput(res["throughput_s3"]))
    if "rss" in res:
        parts.append(render_rss(res["rss"], res.get("throughput")))
    if "transcode" in res:
        parts.append(render_transcode(res["transcode"]))
    parts.append(
        "\nMB = 10^6 bytes. 'x baseline time': that step's time over openssl + cp of "
        "the same file in the same run. The clip files are in the page cache for "
        "every reader (baseline and pipeline alike)."
    )
    return "\n".join(parts)


# -- main -------------------------------------------------------------------------------------


def _code_version() -> dict[str, Any]:
    """Which code was measured: the checkout's commit and whether it had local changes."""

    def git(*argv: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(ROOT), *argv],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "root": str(ROOT),
        "evidence": evidence.__file__,
        "commit": git("rev-parse", "HEAD"),
        "local_changes": bool(status) if status is not None else None,
    }


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every cleanup below


PARTS = ("throughput", "throughput-s3", "rss", "transcode")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="throughput clip size")
    ap.add_argument("--rss-size-mib", type=int, default=2048, help="large clip for peak RSS")
    ap.add_argument("--rss-small-mib", type=int, default=256, help="small clip for peak RSS")
    ap.add_argument("--clip-seconds", type=int, default=60, help="transcode clip length")
    ap.add_argument("--repeats", type=int, default=3, help="throughput runs (median)")
    ap.add_argument(
        "--transcode-repeats",
        type=int,
        default=3,
        help="runs of each transcode, alternated ABBA (median)",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds to pause before each GiB-writing step (see settle())",
    )
    ap.add_argument(
        "--only",
        default=",".join(PARTS),
        help="comma-separated parts to run: " + ", ".join(PARTS),
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 64 MiB, RSS at 256 and 64 MiB, a 10 s clip"
    )
    args = ap.parse_args()
    if args.quick:
        args.size_mib, args.rss_size_mib, args.rss_small_mib = 64, 256, 64
        args.clip_seconds = 10
    for name in ("size_mib", "rss_size_mib", "rss_small_mib"):
        if getattr(args, name) < 64:  # the agent prints its "hashing" line from 64 MiB
            ap.error(f"--{name.replace('_', '-')} must be at least 64")
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    if not only <= set(PARTS):
        ap.error(f"--only: unknown part(s) {sorted(only - set(PARTS))}")
    dropped = sorted(k for k in os.environ if k.startswith("EVIDENCE_"))
    for k in dropped:  # this run's stores are its own; no production settings leak in
        del os.environ[k]
    if dropped:
        log(f"ignoring {', '.join(dropped)} for this run")

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = dt.datetime.now(dt.UTC)
    res: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "args": vars(args),
        "code": _code_version(),
        "loadavg_start": os.getloadavg(),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
    }
    with tempfile.TemporaryDirectory(prefix="ingest-bench-", ignore_cleanup_errors=True) as tmp_s:
        tmp = Path(tmp_s)
        try:
            if "throughput" in only:
                res["throughput"] = bench_throughput(args, tmp)
            if "throughput-s3" in only:
                log("throughput-s3: starting a Ceph RADOS Gateway (deploy/dev/ceph-up.sh)")
                with ceph_gateway() as s3:
                    res["throughput_s3"] = bench_throughput(args, tmp, s3)
            if "rss" in only:
                res["rss"] = bench_rss(args, tmp)
            if "transcode" in only:
                res["transcode"] = bench_transcode(args, tmp)
        finally:
            for proc in RUNNING[:]:  # normally none: each part stops what it started
                proc.stop(timeout=10)
    res["wall_s"] = time.perf_counter() - T0
    res["loadavg_end"] = os.getloadavg()
    print(render(res))
    out = ROOT / "bench" / "results" / f"ingest-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; temporary files removed and every process this run started stopped")
        sys.exit(130)
    except BenchError as exc:
        log(f"FAILED: {exc}")
        sys.exit(1)
