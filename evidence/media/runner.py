"""Running ffmpeg and ffprobe: which binaries, their version, a run with a time limit and
a bounded tail of stderr, writing an output atomically, and hashing what was written.

Commands are built with ffmpeg-python (by the modules beside this one) and run here with
`subprocess`, so that we control streaming (progress on stdout, a bounded tail of stderr),
time limits and clean-up.

* Binaries: `EVIDENCE_FFMPEG` / `EVIDENCE_FFPROBE` when set, else `ffmpeg` / `ffprobe` on
  PATH, else the ffmpeg that imageio-ffmpeg ships. That one has no ffprobe, so probing then
  parses the stream dump of `ffmpeg -i` (evidence/media/probe.py). Setting
  `EVIDENCE_FFPROBE=""` forces that fallback, which is how the tests cover it.
* Outputs are written to a temporary file beside the destination and renamed into place
  only when ffmpeg succeeded, so a killed worker never leaves a half-written derivative; a
  full disk (ENOSPC) is `DiskFull`, retried once space is freed, not a media problem.
  ffmpeg is asked (PR_SET_PDEATHSIG) to die with the process that started it.
* Argument lists carry `ffmpeg` for the binary and `{input}` / `{output}` for the paths
  (`INPUT`, `OUTPUT`); `_bind` puts the machine's real ones in.
"""

from __future__ import annotations

import collections
import ctypes
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from evidence.errors import DiskFull, MediaError, says_disk_full

ENV_FFMPEG = "EVIDENCE_FFMPEG"
ENV_FFPROBE = "EVIDENCE_FFPROBE"

INPUT = "{input}"
OUTPUT = "{output}"


CHUNK = 1024 * 1024
STDERR_TAIL_LINES = 40
ERROR_MAX_CHARS = 4000


VERSION_LIMIT = 15.0


# --- binaries --------------------------------------------------------------------------


def ffmpeg_binary() -> str:
    """The ffmpeg to run: $EVIDENCE_FFMPEG, else the system one, else imageio-ffmpeg's."""
    override = os.environ.get(ENV_FFMPEG)
    if override:
        return override
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # ImportError, or RuntimeError when it has no binary
        raise MediaError(
            "No ffmpeg found: none on PATH and imageio-ffmpeg has no binary",
            hint=f"install ffmpeg (apt-get install ffmpeg) or set {ENV_FFMPEG}",
        ) from exc


def ffprobe_binary() -> str | None:
    """The ffprobe to run, or None when there is none (probe then parses `ffmpeg -i`).

    $EVIDENCE_FFPROBE set to a path wins; set to the empty string it forces the fallback.
    """
    override = os.environ.get(ENV_FFPROBE)
    if override is not None:
        return override or None
    system = shutil.which("ffprobe")
    if system:
        return system
    # A custom ffmpeg build usually has its ffprobe beside it.
    sibling = Path(ffmpeg_binary()).with_name("ffprobe")
    return str(sibling) if sibling.is_file() and os.access(sibling, os.X_OK) else None


def ffmpeg_version() -> str:
    """The version token of `ffmpeg -version`'s first line, e.g. "5.1.9-0+deb12u1"."""
    return _version_of(ffmpeg_binary())


@lru_cache(maxsize=8)
def _version_of(binary: str) -> str:
    # Cached per binary path, so switching $EVIDENCE_FFMPEG (tests do) is honoured.
    try:
        out = subprocess.run(
            [binary, "-version"], check=False, capture_output=True, text=True, timeout=VERSION_LIMIT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MediaError(f"Could not run {binary} -version: {exc}", hint=_install_hint()) from exc
    first = out.stdout.splitlines()[0] if out.stdout else ""
    match = re.match(r"\S+ version (\S+)", first)
    if not match:
        raise MediaError(f"{binary} -version printed no version line", stderr=out.stderr[-500:])
    return match.group(1)


def _install_hint() -> str:
    return f"install ffmpeg (apt-get install ffmpeg) or point {ENV_FFMPEG} at a working binary"


def _write_atomically(
    src: Path,
    dst: Path,
    args: list[str],
    limit: float,
    what: str,
    *,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run ffmpeg into a temporary file beside dst; rename it over dst only on success."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_partials(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        result = _run(_bind(args, src, tmp, ffmpeg_binary()), limit=limit, on_line=on_line)
        stderr = _clean_error(result.stderr_lines, src, tmp)
        if result.timed_out:
            raise MediaError(
                f"ffmpeg timed out after {limit:.0f} s making the {what} of {src.name}",
                stderr=stderr,
                hint="retry when the machine is less busy; if it times out again the clip "
                "may be pathological: keep the original and make the derivative by hand",
            )
        if result.returncode != 0 and says_disk_full("\n".join(result.stderr_lines)):
            # Not a codec or media problem: retried with backoff once space is freed.
            raise DiskFull(f"ffmpeg could not write the {what} of {src.name}")
        if result.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise MediaError(
                f"ffmpeg could not make the {what} of {src.name} (exit status {result.returncode})",
                stderr=stderr,
                hint="probe the clip: if it is unplayable the original is kept and flagged; "
                "otherwise check the ffmpeg build has libx264 and aac",
            )
        _fsync(tmp)
        os.replace(tmp, dst)
        _fsync(dst.parent)
        return sha256_file(dst)
    finally:
        tmp.unlink(missing_ok=True)


def _sweep_stale_partials(dst: Path) -> None:
    """Remove temporary files of dst left by processes that died (their pid is gone)."""
    for stale in dst.parent.glob(f".{glob_escape(dst.name)}.*.partial"):
        try:
            pid = int(stale.name[len(dst.name) + 2 :].split(".")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue  # not ours, or a live process of another user


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks so memory stays flat."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- running ffmpeg ------------------------------------------------------------------------


def _file_url(path: Path) -> str:
    # "file:" so a name with a colon or a leading dash is never taken for a protocol/option.
    return "file:" + str(Path(path).resolve())


def _bind(args: list[str], src: Path, dst: Path | None, binary: str) -> list[str]:
    """Placeholders -> real argv. Only whole arguments are replaced, never substrings."""
    real = {INPUT: _file_url(src)}
    if dst is not None:
        real[OUTPUT] = _file_url(dst)
    return [binary, *(real.get(arg, arg) for arg in args[1:])]


def _limit(rule: tuple[float, float, float], size: int, duration_ms: int | None) -> float:
    base, per_media_second, per_gib = rule
    media_seconds = (duration_ms or 0) / 1000
    return base + per_media_second * media_seconds + per_gib * size / 2**30


class _ProgressReader:
    """Reads `-progress pipe:1` key=value lines; reports growing fractions below 1.0."""

    def __init__(
        self, duration_ms: int | None = None, callback: Callable[[float], None] | None = None
    ):
        self.duration_us = (duration_ms or 0) * 1000
        self.callback = callback
        self.out_time_us = 0
        self.reported = 0.0

    def feed(self, line: str) -> None:
        key, _, value = line.strip().partition("=")
        if key == "out_time_us":
            try:
                self.out_time_us = max(self.out_time_us, int(value))
            except ValueError:
                pass  # "N/A" before the first frame
        elif key == "progress" and self.callback and self.duration_us:
            # 1.0 is kept for "done and in place", which only the caller knows.
            fraction = min(self.out_time_us / self.duration_us, 0.99)
            if fraction > self.reported:
                self.reported = fraction
                self.callback(fraction)


@dataclass
class _Result:
    returncode: int
    stdout: str
    stderr_lines: list[str]
    timed_out: bool


def _run(
    argv: list[str],
    *,
    limit: float,
    capture_stdout: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> _Result:
    """Run a command with a time limit; stdout to a callback or captured, stderr's tail kept."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Only prctl runs between fork and exec, resolved beforehand: no locks taken.
            preexec_fn=_die_with_parent(),  # noqa: PLW1509
        )
    except OSError as exc:
        raise MediaError(f"Could not run {argv[0]}: {exc}", hint=_install_hint()) from exc
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES * 5)
    # stderr is drained by a thread so a chatty ffmpeg never blocks on a full pipe.
    drain = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    drain.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(limit, kill)
    timer.start()
    captured: list[bytes] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if capture_stdout:
                captured.append(raw)
            if on_line is not None:
                on_line(raw.decode("utf-8", "replace"))
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # the callback raised: do not leave ffmpeg running
            proc.kill()
            proc.wait()
        drain.join(timeout=5)
    return _Result(
        returncode=proc.returncode,
        stdout=b"".join(captured).decode("utf-8", "replace"),
        stderr_lines=list(tail),
        timed_out=timed_out.is_set(),
    )


def _drain(stream: Any, tail: collections.deque[str]) -> None:
    for raw in stream:
        tail.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
    stream.close()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGKILL ffmpeg when its parent dies (a killed worker)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = _libc_prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


@lru_cache(maxsize=1)
def _libc_prctl() -> Any:
    # Resolved once, in the parent, so the forked child only makes the call.
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_ADDRESS_RE = re.compile(r"\[([^\]@]+?) @ 0x[0-9a-fA-F]+\]")


def _clean_error(lines: Iterable[str], *paths: Path) -> str:
    """ffmpeg's error text, trimmed, without pointer addresses or this machine's paths."""
    replacements: list[tuple[str, str]] = []
    for path, placeholder in zip(paths, (INPUT, OUTPUT), strict=False):
        resolved = str(Path(path).resolve())
        replacements += [("file:" + resolved, placeholder), (resolved, placeholder)]
    cleaned: list[str] = []
    for line in lines:
        line = _ADDRESS_RE.sub(r"[\1]", line.strip())
        for real, placeholder in replacements:
            line = line.replace(real, placeholder)
        if line and (not cleaned or cleaned[-1] != line):  # repeated lines say nothing new
            cleaned.append(line)
    text = "\n".join(cleaned[-STDERR_TAIL_LINES:])
    return text[-ERROR_MAX_CHARS:]
