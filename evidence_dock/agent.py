"""The docking agent: uploads every clip on a docked camera's storage to the evidence store.

`evidence-dock DIR --api URL` (or `evidence dock ...`) runs on a docking station. For each
clip it hashes the file locally, declares it (`POST /api/v1/uploads`), PUTs the parts the
store does not hold yet straight to their presigned URLs, then completes the upload. The HTTP
contract is docs/ingest.md; the agent's own behaviour is its "Dock agent" section; running it
on a docking PC is docs/dock.md. Imports: the standard library and httpx, nothing else.

Why it is shaped like this:
- A clip is marked done locally only after the server confirmed its verified original: the
  upload's state `stored` (polled after complete's 202), or `exists` to the declaration (the
  server says so only for verified originals). Until then the clip is not done, whatever
  happened locally; a rejected upload makes the next attempt hash the file afresh.
- Progress lives on the docking station, never on the camera (the camera's storage is
  evidence and may be mounted read-only): one directory per volume under the state
  directory (`--state-dir`, docs/dock.md), one small JSON file per clip, written atomically
  (temp + fsync + rename + fsync dir), so a kill or a power cut at any instant leaves either
  the old or the new state, never a torn one.
- Resuming needs no local record of parts: re-declaring the same sha256 returns the pending
  upload with `uploaded` flags, so the server (which holds the bytes) is the truth.
- Everything streams in `CHUNK`s: hashing and part bodies read the file piece by piece, so
  memory is flat for any clip size.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import errno
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

import httpx

from evidence_dock.volumes import Volume, volume_at

CHUNK = 1024 * 1024
"""Read size for hashing and part bodies (the server's storage streams in the same size)."""

CLIP_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".mts", ".m2ts", ".3gp"})
STATE_VERSION = 1
MAX_SOURCE_PATH = 1024
MAX_SOURCE_NAME = 64
"""Bounds of the `source` strings declared with a clip (a path on the camera, a volume's
label or UUID): the server stores them, so an odd file system cannot make them huge."""
MAX_SIDECAR_BYTES = 1024 * 1024
"""A sidecar is a few hundred bytes; anything this large is not one and is not read whole."""

UPLOADS_PATH = "/api/v1/uploads"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 507})
OUTAGE_STATUS = frozenset({502, 503, 504, 507})
"""Answers of a server that is restarting, behind a proxy that is up, or out of disk: worth
waiting out for minutes (RetryPolicy.outage), not just a few attempts."""
KEY_REFUSED = "the device key was refused: check --device-key or ask an admin to create the device"

T = TypeVar("T")


# --- time ------------------------------------------------------------------------------------
# The agent depends on nothing of the server's, so it keeps its own clock; tests may replace
# `now` to move time instead of waiting.


def _system_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


now: Callable[[], dt.datetime] = _system_now


def rfc3339(t: dt.datetime) -> str:
    """UTC RFC 3339 with microseconds and a `Z`, as the server writes times."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- errors ----------------------------------------------------------------------------------


class DockError(Exception):
    """A clip could not be uploaded; the message says why and, where it can, what to do."""


class DockAbort(DockError):
    """A failure no other clip can get past (API unreachable, key refused): stop them all."""


class UsageError(DockError):
    """Bad arguments (missing directory, bad URL): nothing was attempted."""


class _Retryable(Exception):
    """One attempt failed in a way worth trying again (network error, 5xx, 429)."""

    def __init__(self, message: str, *, unreachable: bool = False, origin: str = ""):
        super().__init__(message)
        self.unreachable = unreachable
        self.origin = origin  # scheme://host:port that failed, never the signed query


# --- finding clips and their sidecars ---------------------------------------------------------


def find_clips(root: Path) -> list[Path]:
    """Every clip under `root`, in path order. Hidden directories are skipped: cameras and
    OSes keep their housekeeping in them (`.Trashes`, `.Spotlight-V100`)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue  # AppleDouble `._CLIP.MP4` files are metadata, not clips
            path = Path(dirpath) / name
            if path.suffix.lower() in CLIP_EXTENSIONS and path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


@dataclass(frozen=True)
class Sidecar:
    """The metadata declared with a clip, and a warning when its sidecar was unusable."""

    metadata: dict[str, Any]
    warning: str | None = None


def read_sidecar(clip: Path) -> Sidecar:
    """The JSON object next to `clip` (same stem, `.json`), sent as the upload's metadata.

    An unreadable sidecar never holds the clip back (the footage is the evidence, the sidecar
    only describes it): the clip uploads with `{"sidecar_error": why}` as its metadata, so the
    server records that a sidecar existed but could not be read and falls back to the
    container's own tags.
    """
    path = _sidecar_path(clip)
    if path is None:
        return Sidecar({})
    try:
        metadata = _parse_sidecar(path)
    except ValueError as exc:
        reason = f"{path.name} {exc}"
        warning = f"sidecar {reason}; uploading the clip without it"
        return Sidecar({"sidecar_error": reason}, warning)
    return Sidecar(metadata)


def _sidecar_path(clip: Path) -> Path | None:
    for suffix in (".json", ".JSON"):
        candidate = clip.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _parse_sidecar(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise ValueError(f"is larger than {MAX_SIDECAR_BYTES} bytes, not a sidecar")
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ValueError(f"is not valid JSON ({exc.msg} at {where})") from None
    if not isinstance(value, dict):
        raise ValueError(f"holds a JSON {type(value).__name__}, not an object")
    return value


# --- hashing ---------------------------------------------------------------------------------


def sha256_file(path: Path, on_bytes: Callable[[int], None] = lambda n: None) -> str:
    """SHA-256 of a file, read in CHUNKs into one reused buffer (memory flat for any size)."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])  # hashlib releases the GIL here, so --jobs hash in parallel
            on_bytes(n)
    return digest.hexdigest()


def read_range(
    path: Path, offset: int, size: int, on_bytes: Callable[[int], None]
) -> Iterator[bytes]:
    """Bytes `offset .. offset+size` of a file, CHUNK by CHUNK: one part's request body."""
    with path.open("rb") as f:
        f.seek(offset)
        remaining = size
        while remaining > 0:
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                # Sending fewer bytes than Content-Length would hang the request; say why.
                raise DockError(f"{path.name} got shorter while uploading (still being written?)")
            remaining -= len(chunk)
            on_bytes(len(chunk))
            yield chunk


# --- local state -----------------------------------------------------------------------------


class Phase(str, enum.Enum):
    HASHED = "hashed"  # sha256 known for this (size, mtime_ns)
    DECLARED = "declared"  # the server gave an upload id; parts may be partly sent
    COMPLETING = "completing"  # complete was sent; the answer may not have arrived
    WAITING = "waiting"  # the server has every byte and is verifying them
    DONE = "done"  # the server confirmed the verified original (or `exists`)


@dataclass
class ClipRecord:
    """What the agent remembers about one clip, valid only for the file's (size, mtime_ns)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    hashed_at: str
    phase: Phase = Phase.HASHED
    upload_id: str | None = None
    clip_id: str | None = None
    answer: str | None = None  # the server's final state: "stored" or "exists"
    done_at: str | None = None
    version: int = STATE_VERSION

    def matches(self, st: os.stat_result) -> bool:
        return self.size == st.st_size and self.mtime_ns == st.st_mtime_ns

    def to_json(self) -> bytes:
        data = dataclasses.asdict(self)
        data["phase"] = self.phase.value
        return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> ClipRecord:
        data = json.loads(raw)
        data["phase"] = Phase(data["phase"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def default_state_home(environ: dict[str, str] | None = None) -> Path:
    """Where the agent keeps its state when `--state-dir` is not given: EVIDENCE_DOCK_STATE_DIR,
    else $XDG_STATE_HOME/evidence-dock, else ~/.local/state/evidence-dock."""
    env = os.environ if environ is None else environ
    explicit = env.get("EVIDENCE_DOCK_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = env.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative one
        return Path(xdg) / "evidence-dock"
    return Path.home() / ".local" / "state" / "evidence-dock"


def camera_volume(root: Path, volume: Volume | None) -> Volume | None:
    """`volume` if `root` is the whole of it (a camera's storage, mounted), else None: a
    folder on the dock's own disk, or one folder of a volume, is known by its path."""
    if volume is not None and volume.mount_point == root.resolve():
        return volume
    return None


def volume_key(root: Path, volume: Volume | None) -> str:
    """What the agent's state for `root` is filed under: the volume's identity when `root` is
    a mounted volume (so it is found again wherever the volume is mounted next), else the
    absolute path."""
    camera = camera_volume(root, volume)
    if camera is not None and camera.uuid:
        return f"uuid:{camera.uuid}"
    if camera is not None and camera.label:
        return f"label:{camera.label}"
    return f"path:{root.resolve()}"


def safe_dirname(key: str) -> str:
    """A directory name for `key`: readable, and unique by a hash (labels and paths may hold
    `/` or characters a file system refuses, and two keys may clean up alike)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_.")[:100]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def state_dir_for(
    root: Path, state_home: Path | None = None, volume: Volume | None = None
) -> StateDir:
    """The state directory of docked directory `root` (its volume looked up if not given)."""
    home = state_home if state_home is not None else default_state_home()
    if volume is None:
        volume = volume_at(root)
    return StateDir(home / safe_dirname(volume_key(root, volume)))


class StateDir:
    """One directory of the docking station per docked volume: one JSON file per clip, named
    by a hash of its path relative to the docked directory (paths may hold characters a file
    name cannot)."""

    def __init__(self, directory: Path):
        self.dir = directory

    def ensure(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe = self.dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UsageError(
                f"cannot write the agent's state to {self.dir}: {exc.strerror or exc}; "
                "give a writable --state-dir (the dock needs it to resume uploads safely)"
            ) from None

    def file_for(self, rel: str) -> Path:
        return self.dir / (hashlib.sha256(rel.encode()).hexdigest()[:40] + ".json")

    def load(self, rel: str) -> ClipRecord | None:
        try:
            state = ClipRecord.from_json(self.file_for(rel).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable state only costs a re-hash; the server dedups the rest
        return state if state.path == rel and state.version == STATE_VERSION else None

    def save(self, state: ClipRecord) -> None:
        write_atomic(self.file_for(state.path), state.to_json())

    def forget(self, rel: str) -> None:
        """Drop what is known about a clip, its hash included: the next run starts afresh."""
        self.file_for(rel).unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old or the new file, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut
    finally:
        os.close(dir_fd)


# --- progress --------------------------------------------------------------------------------


class Progress:
    """Per-clip lines plus a running total on stderr.

    On a terminal the total is one status line redrawn in place; without one (a log file, a
    systemd journal) it is a plain line every `interval` seconds, and only when something moved.
    """

    def __init__(self, stream: TextIO, total_clips: int, interval: float | None = None):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.5 if self.tty else 10.0)
        self.total_clips = total_clips
        self.lock = threading.Lock()
        self.clips_finished = 0
        self.hashed = 0
        self.sent = 0
        self.to_send = 0
        self.started = time.monotonic()
        self._status_shown = False
        self._last_reported: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="dock-progress", daemon=True)

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        with self.lock:
            self._clear_status()

    def line(self, text: str) -> None:
        with self.lock:
            self._clear_status()
            print(text, file=self.stream, flush=True)

    def add_hashed(self, n: int) -> None:
        with self.lock:
            self.hashed += n

    def add_sent(self, n: int) -> None:
        with self.lock:
            self.sent += n

    def add_to_send(self, n: int) -> None:
        with self.lock:
            self.to_send += n

    def clip_finished(self) -> None:
        with self.lock:
            self.clips_finished += 1

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                now = (self.clips_finished, self.hashed, self.sent)
                if not self.tty and now == self._last_reported:
                    continue
                self._last_reported = now
                self._show(self._status())

    def _status(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        parts = [f"progress: {self.clips_finished}/{self.total_clips} clips"]
        if self.to_send:
            parts.append(
                f"sent {human_bytes(self.sent)} of {human_bytes(self.to_send)} "
                f"({self.sent / elapsed / 1e6:.1f} MB/s)"
            )
        parts.append(f"hashed {human_bytes(self.hashed)}")
        return ", ".join(parts)

    def _show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self._status_shown = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\x1b[K")
            self._status_shown = False


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns first


# --- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on one request: `attempts` tries, exponential
    backoff with jitter (docks reconnecting at once must not retry in lockstep).

    An outage (connection refused, 502/503/504, 507 out of storage) is waited out for up to
    `outage` seconds instead, however many attempts that takes: an API restart or a proxy
    in front of a restarting API takes longer than a few quick retries.
    `verify_wait`: how long to wait after complete for the server's verdict on the bytes.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 15.0
    outage: float = 120.0
    verify_wait: float = 600.0

    def delay(self, failed_attempts: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1))
        return ceiling * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class Part:
    number: int
    offset: int
    size: int
    url: str
    uploaded: bool


@dataclass(frozen=True)
class Declared:
    """The server's answer to a declaration."""

    upload_id: str
    state: str
    clip_id: str | None
    parts: tuple[Part, ...]


# Generous: joining a 100 GiB clip's parts takes minutes on a slow disk.
COMPLETE_TIMEOUT = 1800.0
PART_STREAMS = 3
"""Parts of one clip sent at once (each on its own connection)."""


class Api:
    """The few calls a dock makes. Only API calls carry the device key: part URLs point at
    the object store, which must never see it."""

    def __init__(
        self,
        base_url: str,
        device_key: str,
        client: httpx.Client,
        retry: RetryPolicy,
        cancelled: threading.Event,
    ):
        self.base = base_url.rstrip("/")
        self.auth = {"Authorization": f"Device {device_key}"}
        self.client = client
        self.retry = retry
        self.cancelled = cancelled
        self.notice: Callable[[str], None] = lambda text: None  # the run's progress lines

    # The calls ---------------------------------------------------------------------------

    def probe(self) -> None:
        """Fail fast, before hours of hashing, when the API cannot be reached at all. Any HTTP
        answer proves reachability; the key is checked by the first real call."""
        self._with_retries("connect", lambda: self.client.get(self.base + "/healthz"), api=True)

    def declare(
        self,
        sha256: str,
        size: int,
        filename: str,
        metadata: dict[str, Any],
        source: dict[str, str] | None = None,
    ) -> Declared:
        body: dict[str, Any] = {
            "sha256": sha256,
            "size": size,
            "filename": filename,
            "metadata": metadata,
        }
        if source:
            body["source"] = source
        response = self._api_call(
            "declare",
            lambda: self.client.post(self.base + UPLOADS_PATH, json=body, headers=self.auth),
        )
        if response.status_code not in (200, 201):
            raise DockError(
                f"the server refused the declaration (HTTP {response.status_code}): "
                f"{_problem(response)}"
            )
        return _parse_declared(response, self.base)

    def status(self, upload_id: str) -> dict[str, Any]:
        """The upload as the server sees it: {"state", "clip_id", "error"}."""
        response = self._api_call(
            "status",
            lambda: self.client.get(f"{self.base}{UPLOADS_PATH}/{upload_id}", headers=self.auth),
        )
        if response.status_code != 200:
            raise DockError(
                f"the server cannot say how upload {upload_id} is doing "
                f"(HTTP {response.status_code}: {_problem(response)})"
            )
        return _json_object(response)

    def complete(self, upload_id: str) -> httpx.Response:
        """The raw answer: the caller tells a 409 (parts missing) from other refusals."""
        # The server joins the parts inside this request (seconds per GiB): allow for it.
        return self._api_call(
            "complete",
            lambda: self.client.post(
                f"{self.base}{UPLOADS_PATH}/{upload_id}/complete",
                headers=self.auth,
                timeout=httpx.Timeout(COMPLETE_TIMEOUT, connect=10.0),
            ),
        )

    def put_part(self, path: Path, part: Part, on_bytes: Callable[[int], None]) -> httpx.Response:
        # A fresh body generator per attempt: a half-sent one cannot be replayed. An explicit
        # Content-Length makes httpx send a plain body instead of chunked encoding, which
        # presigned S3 PUTs do not accept.
        # S3 and the local store check it: a part damaged on the way is refused, not joined.
        md5 = _content_md5(path, part.offset, part.size)

        def attempt() -> httpx.Response:
            sent = 0

            def counted(n: int) -> None:
                nonlocal sent
                sent += n
                on_bytes(n)

            try:
                response = self.client.put(
                    part.url,
                    content=read_range(path, part.offset, part.size, counted),
                    headers={"Content-Length": str(part.size), "Content-MD5": md5},
                )
            except BaseException:
                on_bytes(-sent)  # count a part's bytes once, when the store has accepted them
                raise
            if not response.is_success:
                on_bytes(-sent)
            return response

        return self._with_retries(f"part {part.number}", attempt, api=False)

    # Plumbing ----------------------------------------------------------------------------

    def _api_call(self, what: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        response = self._with_retries(what, send, api=True)
        if response.status_code in (401, 403):
            raise DockAbort(f"{KEY_REFUSED} (HTTP {response.status_code}: {_problem(response)})")
        return response

    def _with_retries(
        self, what: str, send: Callable[[], httpx.Response], *, api: bool
    ) -> httpx.Response:
        attempt = 0
        outage_since: float | None = None
        last_notice = 0.0
        while True:
            attempt += 1
            outage = False
            try:
                response = send()
                if response.status_code not in RETRYABLE_STATUS:
                    return response
                outage = response.status_code in OUTAGE_STATUS
                failure = _Retryable(f"HTTP {response.status_code} ({_problem(response)})")
            except httpx.TransportError as exc:
                unreachable = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                outage = unreachable
                failure = _Retryable(
                    str(exc) or type(exc).__name__, origin=_origin(exc), unreachable=unreachable
                )
            now = time.monotonic()
            if outage:
                outage_since = outage_since if outage_since is not None else now
                waited = now - outage_since
                if waited >= self.retry.outage or self.cancelled.is_set():
                    raise self._give_up(what, failure, attempt, api)
                if now - last_notice >= 10.0:
                    last_notice = now
                    where = "the API" if api else "the object store"
                    self.notice(
                        f"{what}: {where} is not answering ({failure}); waiting for it "
                        f"({waited:.0f} s of at most {self.retry.outage:.0f} s)"
                    )
            elif attempt >= self.retry.attempts or self.cancelled.is_set():
                raise self._give_up(what, failure, attempt, api)
            if self.cancelled.wait(self.retry.delay(attempt)):
                raise self._give_up(what, failure, attempt, api)

    def _give_up(self, what: str, failure: _Retryable, attempts: int, api: bool) -> DockError:
        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        if failure.unreachable and api:
            return DockAbort(
                f"cannot reach {self.base}: {failure} ({tries}); "
                "check --api and that the server is up"
            )
        if failure.unreachable:
            return DockError(
                f"{what}: cannot reach the object store at {failure.origin}: {failure} "
                f"({tries}); the API's presigned URLs must be reachable from this dock"
            )
        where = "the API" if api else "the object store"
        return DockError(f"{what}: {where} failed {tries}: {failure}")


def _content_md5(path: Path, offset: int, size: int) -> str:
    """Base64 MD5 of a part, as the Content-MD5 header carries it."""
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in read_range(path, offset, size, lambda n: None):
        digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def _parse_declared(response: httpx.Response, base: str) -> Declared:
    try:
        data = response.json()
        parts = tuple(
            Part(
                number=int(p["number"]),
                offset=int(p["offset"]),
                size=int(p["size"]),
                url=_absolute(str(p["url"]), base),
                uploaded=bool(p.get("uploaded", False)),
            )
            for p in data.get("parts") or ()
        )
        return Declared(str(data["id"]), str(data["state"]), data.get("clip_id"), parts)
    except (ValueError, KeyError, TypeError) as exc:
        raise DockError(
            f"the server's answer to the declaration is not understood ({exc!r}); "
            "is --api an evidence store?"
        ) from None


def _absolute(url: str, base: str) -> str:
    # The local store's presigned URLs are absolute already; a relative one is on the API host.
    return url if urlsplit(url).scheme else base + "/" + url.lstrip("/")


def _problem(response: httpx.Response) -> str:
    """The human part of an error answer: an RFC 9457 problem's detail, else its text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        text = data.get("detail") or data.get("title")
        if isinstance(text, str) and text:
            return text
        if isinstance(text, (list, dict)):  # FastAPI's 422 validation details
            return json.dumps(text)[:300]
    text = response.text.strip()
    return text[:300] if text else (response.reason_phrase or "no detail")


def _origin(exc: httpx.TransportError) -> str:
    """Where a request went, without path or query: a presigned signature is a credential."""
    try:
        url = exc.request.url
    except RuntimeError:
        return "its URL"
    return f"{url.scheme}://{url.netloc.decode()}"


# --- one clip ----------------------------------------------------------------------------------


class Outcome(str, enum.Enum):
    UPLOADED = "uploaded"
    EXISTS = "already stored"
    SKIPPED = "done before"
    WAITING = "sent, not yet verified"  # the next run asks the server again
    HELD = "held back"  # its bytes are another clip's of this run, still in flight
    FAILED = "failed"


@dataclass(frozen=True)
class ClipResult:
    path: str
    outcome: Outcome
    sent: int = 0
    clip_id: str | None = None
    error: str | None = None
    upload_id: str | None = None  # for a clip waiting for the server's verdict
    twin_of: str | None = None  # another clip of this run with the same bytes


def declared_source(rel: str, volume: Volume | None) -> dict[str, str]:
    """Where a clip came from, for the server's attribution: its path on the camera and the
    camera volume's label and UUID; unknown keys are left out, every string is bounded."""
    source = {"path": rel[-MAX_SOURCE_PATH:]}  # the tail: the file name says the most
    if volume is not None and volume.label:
        source["volume_label"] = volume.label[:MAX_SOURCE_NAME]
    if volume is not None and volume.uuid:
        source["volume_uuid"] = volume.uuid[:MAX_SOURCE_NAME]
    return source


class Twins:
    """The first clip of this run seen with each sha256.

    Two byte-identical files declared at once get the same pending upload from the server,
    and the second then writes to (or completes) a multipart upload the first has already
    finished. So a clip whose bytes are already in flight is held back, and declared only
    once that one is verified: the server then answers `exists`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first: dict[str, str] = {}

    def claim(self, sha256: str, rel: str) -> str | None:
        """None if `rel` may go ahead, else the clip in flight with the same bytes."""
        with self._lock:
            first = self._first.setdefault(sha256, rel)
        return None if first == rel else first


class ClipUpload:
    """Takes one clip from wherever the last run left it to confirmed by the server."""

    def __init__(
        self,
        path: Path,
        rel: str,
        api: Api,
        states: StateDir,
        progress: Progress,
        cancelled: threading.Event,
        *,
        volume: Volume | None = None,
        twins: Twins | None = None,
    ):
        self.path = path
        self.volume = volume
        self.twins = twins
        self.rel = rel
        self.api = api
        self.states = states
        self.progress = progress
        self.cancelled = cancelled
        self.sent = 0
        self._sent_lock = threading.Lock()
        self._last_409 = ""  # the server's words naming the missing part

    def run(self) -> ClipResult:
        st = self.path.stat()
        state = self.states.load(self.rel)
        if state is not None and state.matches(st) and state.phase is Phase.DONE:
            return ClipResult(self.rel, Outcome.SKIPPED, clip_id=state.clip_id)
        sidecar = read_sidecar(self.path)
        if sidecar.warning:
            self.say(f"warning: {sidecar.warning}")
        if state is None or not state.matches(st):
            state = self._hash(st)
        twin = self.twins.claim(state.sha256, self.rel) if self.twins is not None else None
        if twin is not None:
            return ClipResult(self.rel, Outcome.HELD, twin_of=twin)
        if state.phase in (Phase.COMPLETING, Phase.WAITING) and state.upload_id:
            # Killed after sending complete, or the last run stopped waiting for the verdict:
            # finish that upload rather than start another. Only a shortcut: if it fails,
            # declaring again is always correct.
            try:
                done = self._try_complete(state, state.upload_id, quiet=True)
            except DockAbort:
                raise
            except _Rejected:
                state = self._hash(self.path.stat())  # never trust the hash that was refused
                done = None
            except DockError:
                done = None
            if done:
                return done
        return self._upload(state, sidecar.metadata)

    def say(self, text: str) -> None:
        self.progress.line(f"{self.rel}: {text}")

    def _hash(self, before: os.stat_result) -> ClipRecord:
        if before.st_size >= 64 * CHUNK:
            self.say(f"hashing {human_bytes(before.st_size)}")
        sha256 = sha256_file(self.path, self._hashed)
        after = self.path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise DockError(
                "the file changed while it was being hashed (still being written?); "
                "dock it again when the camera has finished"
            )
        state = ClipRecord(
            path=self.rel,
            size=before.st_size,
            mtime_ns=before.st_mtime_ns,
            sha256=sha256,
            hashed_at=rfc3339(now()),
        )
        self.states.save(state)
        return state

    def _upload(self, state: ClipRecord, metadata: dict[str, Any]) -> ClipResult:
        declared = self._declare(state, metadata)
        if isinstance(declared, ClipResult):
            return declared
        refreshed = healed = False
        while True:
            try:
                self._send_parts(declared)
            except _UrlRefused as refused:
                # Presigned URLs expire; declaring again gives fresh ones (once per clip).
                if refreshed:
                    raise DockError(str(refused)) from None
                refreshed = True
                self.say("part URL refused (expired?); asking the server for fresh URLs")
                declared = self._declare(state, metadata)
                if isinstance(declared, ClipResult):
                    return declared
                continue
            self._check_unchanged(state)
            done = self._try_complete(state, declared.upload_id, quiet=False)
            if done:
                return done
            if healed:
                raise DockError(f"the server still reports the upload incomplete: {self._last_409}")
            # 409: the server lacks a part we believed sent; ask it which, and send those again.
            healed = True
            self.say(f"server says: {self._last_409}; re-sending what it lacks")
            declared = self._declare(state, metadata)
            if isinstance(declared, ClipResult):
                return declared

    def _declare(self, state: ClipRecord, metadata: dict[str, Any]) -> Declared | ClipResult:
        declared = self.api.declare(
            state.sha256,
            state.size,
            self.path.name,
            metadata,
            declared_source(self.rel, self.volume),
        )
        if declared.state == "exists":  # said only of a verified original
            self._mark_done(state, declared.upload_id, declared.clip_id, "exists")
            return ClipResult(self.rel, Outcome.EXISTS, self.sent, declared.clip_id)
        if declared.state != "pending":
            raise DockError(
                f"the server answered the declaration with state {declared.state!r}, "
                "expected 'pending' or 'exists'"
            )
        _check_plan(declared.parts, state.size)
        state.phase, state.upload_id = Phase.DECLARED, declared.upload_id
        self.states.save(state)
        return declared

    def _send_parts(self, declared: Declared) -> None:
        todo = [p for p in declared.parts if not p.uploaded]
        have = len(declared.parts) - len(todo)
        total = sum(p.size for p in todo)
        self.progress.add_to_send(total)
        if have and not todo:
            self.say(f"all {have} parts already on the server")
        elif have:
            self.say(
                f"resuming: {have} of {len(declared.parts)} parts already on the server, "
                f"sending {len(todo)} ({human_bytes(total)})"
            )
        elif todo:
            plural = "s" if len(todo) != 1 else ""
            self.say(f"uploading {human_bytes(total)} in {len(todo)} part{plural}")
        # PART_STREAMS parts in flight at once: one stream leaves the server (and S3) idle
        # between a part's last byte and the next part's first. After a failure no further
        # part starts; the first failure, in part order, is the one reported.
        failed = threading.Event()

        def send(part: Part) -> None:
            if failed.is_set():
                return
            try:
                self._send_part(part)
            except BaseException:
                failed.set()
                raise

        with ThreadPoolExecutor(PART_STREAMS, thread_name_prefix="dock-part") as pool:
            for future in [pool.submit(send, part) for part in todo]:
                future.result()

    def _send_part(self, part: Part) -> None:
        if self.cancelled.is_set():
            raise DockError("interrupted; run again to resume")
        response = self.api.put_part(self.path, part, self._count)
        if response.status_code == 403:
            raise _UrlRefused(
                f"part {part.number}: the object store refused the presigned URL "
                f"(HTTP 403: {_problem(response)})"
            )
        if not 200 <= response.status_code < 300:
            raise DockError(
                f"part {part.number}: the object store answered HTTP "
                f"{response.status_code}: {_problem(response)}"
            )

    def _hashed(self, n: int) -> None:
        if self.cancelled.is_set():
            raise DockError("interrupted; run again to resume")  # a big hash can take minutes
        self.progress.add_hashed(n)

    def _count(self, n: int) -> None:
        if n > 0 and self.cancelled.is_set():
            raise DockError("interrupted; run again to resume")  # aborts this part's request
        with self._sent_lock:  # parts are sent from several threads (PART_STREAMS)
            self.sent += n
        self.progress.add_sent(n)

    def _check_unchanged(self, state: ClipRecord) -> None:
        st = self.path.stat()
        if not state.matches(st):
            raise DockError(
                "the file changed during the upload; run the dock again to send it afresh"
            )

    def _try_complete(self, state: ClipRecord, upload_id: str, *, quiet: bool) -> ClipResult | None:
        state.phase, state.upload_id = Phase.COMPLETING, upload_id
        self.states.save(state)
        response = self.api.complete(upload_id)
        if response.status_code in (200, 202):
            data = _json_object(response)
            answer = str(data.get("state") or "processing")
            if answer == "processing":
                # The verdict is awaited once every clip is sent (confirm), so one clip's
                # verification never holds up the next clip's upload.
                state.phase = Phase.WAITING
                self.states.save(state)
                return ClipResult(self.rel, Outcome.WAITING, self.sent, upload_id=upload_id)
            return self._verdict(state, upload_id, data)
        if quiet and response.status_code in (404, 409, 410):
            return None  # that upload is gone or incomplete: declare afresh
        if response.status_code == 409:
            self._last_409 = _problem(response)
            return None
        raise DockError(
            f"the server refused to complete the upload: HTTP {response.status_code}: "
            f"{_problem(response)}"
        )

    def confirm(self, upload_id: str, deadline: float) -> ClipResult:
        """Poll a completed upload until the server has verified (stored) or refused
        (rejected) its bytes. If `deadline` (monotonic) comes first the clip stays
        not done, in phase `waiting`: the next run asks again."""
        state = self.states.load(self.rel)
        if state is None or state.upload_id != upload_id:
            raise DockError("the agent's record of this clip changed meanwhile; run again")
        started = last_said = time.monotonic()
        delay = 0.25
        while True:
            data = self.api.status(upload_id)
            if _is_verified(data) or data.get("state") != "processing":
                return self._verdict(state, upload_id, data)
            now = time.monotonic()
            if now >= deadline:
                return ClipResult(self.rel, Outcome.WAITING, self.sent, upload_id=upload_id)
            if now - last_said >= 15.0:
                last_said = now
                self.say(f"waiting for the server to verify it ({now - started:.0f} s)")
            if self.cancelled.wait(min(delay, max(0.0, deadline - now))):
                raise DockError("interrupted; run again to resume")
            delay = min(delay * 2, 5.0)

    def _verdict(self, state: ClipRecord, upload_id: str, data: dict[str, Any]) -> ClipResult:
        answer = str(data.get("state"))
        if answer in ("rejected", "failed"):
            self._rejected(upload_id, answer, data)
        if _is_verified(data):
            self._mark_done(state, upload_id, data.get("clip_id"), "stored")
            return ClipResult(self.rel, Outcome.UPLOADED, self.sent, data.get("clip_id"))
        raise DockError(
            f"the server reports upload {upload_id} as {answer[:40]!r}, expected "
            "'processing', 'stored' or 'rejected'; run the dock again"
        )

    def _rejected(self, upload_id: str, answer: str, data: dict[str, Any]) -> None:
        """What arrived was not this file (changed, or damaged on the way): the hash is
        forgotten, so the next attempt reads the file afresh rather than trusting it."""
        self.states.forget(self.rel)
        why = data.get("error")
        raise _Rejected(
            f"the server {answer} upload {upload_id}"
            + (f" ({str(why)[:200]})" if why else "")
            + ": the bytes it received were not this file; run the dock again to "
            "hash and send it afresh"
        )

    def _mark_done(self, state: ClipRecord, upload_id: str, clip_id: Any, answer: str) -> None:
        state.phase, state.upload_id, state.answer = Phase.DONE, upload_id, answer
        state.clip_id = None if clip_id is None else str(clip_id)
        state.done_at = rfc3339(now())
        self.states.save(state)


class _UrlRefused(DockError):
    """The object store answered 403 to a part PUT: the presigned URL expired or is wrong."""


class _Rejected(DockError):
    """The server judged the bytes it received and refused them."""


def _is_verified(data: dict[str, Any]) -> bool:
    """The server vouches for the original: stored, or verified while its review copies
    are still being made."""
    return data.get("state") == "stored" or data.get("verified") is True


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _check_plan(parts: tuple[Part, ...], size: int) -> None:
    """The server's parts must tile the file exactly, or the stored object would be wrong."""
    at = 0
    for part in sorted(parts, key=lambda p: p.offset):
        if part.offset != at or part.size < 0:
            raise DockError(
                f"the server's part plan does not cover the file (part {part.number} "
                f"at offset {part.offset}, expected {at})"
            )
        at += part.size
    if at != size:
        raise DockError(f"the server's part plan covers {at} bytes, the file has {size}")


# --- the run ---------------------------------------------------------------------------------

VERIFIED = frozenset({Outcome.UPLOADED, Outcome.EXISTS, Outcome.SKIPPED})
"""Outcomes that mean the server vouches for the clip's original (now or in an earlier run)."""

RETRY_HINT = "run the dock again to retry them"


@dataclass
class Summary:
    results: list[ClipResult] = field(default_factory=list)
    elapsed: float = 0.0
    interrupted: bool = False
    removed: list[str] = field(default_factory=list)  # cleared from the camera (verified)
    kept: list[tuple[str, str]] = field(default_factory=list)  # verified, not cleared: why
    clear_refused: str | None = None  # why nothing could be cleared (a read-only mount)
    retry_hint: str = RETRY_HINT

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def failed(self) -> list[ClipResult]:
        return [r for r in self.results if r.outcome is Outcome.FAILED]

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.results)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def lines(self) -> list[str]:
        return self._outcome_lines() + self._clearing_lines()

    def _outcome_lines(self) -> list[str]:
        n = len(self.results)
        if n == 0:
            return ["no clips found"]
        if n == self.count(Outcome.SKIPPED):
            what = f"all {n} clips were" if n != 1 else "the 1 clip was"
            return [f"nothing to send: {what} uploaded before"]
        rate = self.sent / self.elapsed / 1e6 if self.elapsed > 0 else 0.0
        out = [
            f"summary: {n} clips: {self.count(Outcome.UPLOADED)} uploaded, "
            f"{self.count(Outcome.EXISTS)} already stored, "
            f"{self.count(Outcome.SKIPPED)} done before, "
            f"{len(self.failed)} failed",
            f"sent {human_bytes(self.sent)} in {self.elapsed:.1f} s ({rate:.1f} MB/s)",
        ]
        waiting = self.count(Outcome.WAITING)
        if waiting:
            out.insert(
                1,
                f"{waiting} sent but not yet verified by the server: they are not "
                "marked done; run the dock again later to confirm them",
            )
        held = self.count(Outcome.HELD)
        if held:
            out.insert(
                1,
                f"{held} held back: identical to another clip of this run that the "
                "server has not verified yet; the next run declares them",
            )
        out.extend(
            f"  {r.path}: identical to {Path(r.twin_of).name}, stored once"
            for r in self.results
            if r.twin_of and r.outcome is Outcome.EXISTS
        )
        if self.failed:
            out.append(f"failed ({self.retry_hint}):")
            out.extend(f"  {r.path}: {r.error}" for r in self.failed)
        if self.interrupted:
            out.append("interrupted: run the dock again to resume")
        return out

    def _clearing_lines(self) -> list[str]:
        out: list[str] = []
        if self.clear_refused:
            out.append(f"not cleared: {self.clear_refused}; the verified clips stay on it")
        if self.removed:
            out.append(
                f"removed from the camera ({len(self.removed)}, each verified by the server first):"
            )
            out.extend(f"  {path}" for path in self.removed)
        if self.kept:
            out.append(f"verified but not removed ({len(self.kept)}):")
            out.extend(f"  {path}: {why}" for path, why in self.kept)
        return out


def run(
    directory: Path,
    api_url: str,
    device_key: str,
    *,
    jobs: int = 2,
    retry: RetryPolicy = RetryPolicy(),
    out: TextIO | None = None,
    progress_interval: float | None = None,
    state_dir: Path | None = None,
    clear_after_verified: bool = False,
    title: str | None = None,
    retry_hint: str = RETRY_HINT,
    cancelled: threading.Event | None = None,
) -> Summary:
    """Upload every clip under `directory`; return what happened to each.

    Nothing under `directory` is created, written or renamed: the agent's state is kept in
    `state_dir` (default_state_home() if None), one subdirectory per docked volume. With
    `clear_after_verified`, clips the server vouches for are then deleted from `directory`.
    Setting `cancelled` (a signal handler does) abandons the run cleanly: it can resume.

    Raises UsageError for bad arguments and DockAbort when the API cannot be reached at all;
    every per-clip failure is in the summary instead, so one bad clip never stops the others.
    """
    out = out if out is not None else sys.stderr
    base = check_args(directory, api_url, device_key, jobs)
    home = state_dir if state_dir is not None else default_state_home()
    if _is_within(home, directory):
        raise UsageError(
            f"the state directory {home} is inside {directory}: the agent never "
            "writes to the camera's storage; give a --state-dir on the dock"
        )
    camera = volume_at(directory)
    states = StateDir(home / safe_dirname(volume_key(directory, camera)))
    states.ensure()
    clips = find_clips(directory)
    if _cleartext(base):
        print(
            f"warning: {base} is plain http: the device key and the footage cross the network "
            "unencrypted; use https outside this machine",
            file=out,
            flush=True,
        )
    summary = Summary(retry_hint=retry_hint)
    started = time.monotonic()
    cancelled = cancelled if cancelled is not None else threading.Event()
    timeout = httpx.Timeout(60.0, connect=10.0)
    connections = jobs * PART_STREAMS + 2
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    with httpx.Client(timeout=timeout, limits=limits, follow_redirects=False) as client:
        api = Api(base, device_key, client, retry, cancelled)
        api.notice = lambda text: print(text, file=out, flush=True)
        if clips:
            api.probe()
        progress = Progress(out, len(clips), progress_interval)
        api.notice = progress.line
        progress.start()
        batch = Batch(directory, api, states, progress, jobs, cancelled, camera)
        try:
            summary.results = batch.run_all(clips)
        except KeyboardInterrupt:
            cancelled.set()
            summary.interrupted = True
        finally:
            progress.stop()
    summary.interrupted = summary.interrupted or cancelled.is_set()
    if clear_after_verified and not summary.interrupted:
        clear_verified(summary, directory, states)
    summary.elapsed = time.monotonic() - started
    if title:
        print(title, file=out, flush=True)
    for text in summary.lines():
        print(text, file=out, flush=True)
    return summary


def _is_within(path: Path, directory: Path) -> bool:
    p, d = path.resolve(), directory.resolve()
    return p == d or d in p.parents


def check_args(directory: Path, api_url: str, device_key: str, jobs: int) -> str:
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"--api {api_url!r} is not an http(s) URL, e.g. https://evidence.example:8000"
        )
    if not device_key.strip():
        raise UsageError("no device key: give --device-key or set EVIDENCE_DEVICE_KEY")
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return api_url.rstrip("/")


def _cleartext(base: str) -> bool:
    parts = urlsplit(base)
    return parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1")


# --- clearing the camera -----------------------------------------------------------------------


def clear_verified(summary: Summary, root: Path, states: StateDir) -> None:
    """Delete from the camera each clip the server vouches for, and only those: the agent's
    record must say DONE (the server answered `stored` or `exists`, never just "uploaded")
    for the file as it is now (same size and mtime)."""
    verified = [r for r in summary.results if r.outcome in VERIFIED]
    if verified and _read_only(root):
        summary.clear_refused = f"{root} is mounted read-only"
        return
    for result in verified:
        why = _remove_if_verified(root / result.path, result.path, states)
        if why is None:
            summary.removed.append(result.path)
        else:
            summary.kept.append((result.path, why))


def _read_only(root: Path) -> bool:
    try:
        return bool(os.statvfs(root).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _remove_if_verified(path: Path, rel: str, states: StateDir) -> str | None:
    """None once `path` is deleted, else why it was left."""
    state = states.load(rel)
    if state is None or state.phase is not Phase.DONE:
        return "no record of the server's verification"
    try:
        if not state.matches(path.stat()):
            return "changed since the server verified it"
        path.unlink()
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return "the camera's storage is read-only"
        return f"cannot delete it: {exc.strerror or exc}"
    states.forget(rel)  # the file is gone; a new one of that name is a new clip
    return None


# --- the clips of one run ------------------------------------------------------------------------


class Batch:
    """Every clip of one run: uploaded `jobs` at a time, then confirmed, then the clips held
    back as byte-identical to another one declared."""

    def __init__(
        self,
        root: Path,
        api: Api,
        states: StateDir,
        progress: Progress,
        jobs: int,
        cancelled: threading.Event,
        volume: Volume | None,
    ):
        self.root = root
        self.api = api
        self.states = states
        self.progress = progress
        self.jobs = jobs
        self.cancelled = cancelled
        self.volume = volume
        self.abort: list[str] = []  # the first DockAbort's message; the other clips stop early

    def run_all(self, clips: list[Path]) -> list[ClipResult]:
        twins = Twins()
        for path in clips:
            self._claim_if_under_way(path, twins)
        results = self._upload_all(clips, twins)
        results = self._confirm_all(results)
        return self._release_twins(results)

    def _claim_if_under_way(self, path: Path, twins: Twins) -> None:
        """A clip whose upload an earlier run began goes first among its copies: they wait
        for its verdict instead of starting another upload of the same bytes."""
        rel = path.relative_to(self.root).as_posix()
        state = self.states.load(rel)
        if state is None or state.phase not in (Phase.DECLARED, Phase.COMPLETING, Phase.WAITING):
            return
        try:
            if state.matches(path.stat()):
                twins.claim(state.sha256, rel)
        except OSError:
            pass  # unreadable now: its own run says so

    def _clip(self, path: Path, twins: Twins | None = None) -> ClipUpload:
        rel = path.relative_to(self.root).as_posix()
        return ClipUpload(
            path,
            rel,
            self.api,
            self.states,
            self.progress,
            self.cancelled,
            volume=self.volume,
            twins=twins,
        )

    def _one(self, path: Path, twins: Twins | None) -> ClipResult:
        upload = self._clip(path, twins)
        if self.abort:
            return ClipResult(upload.rel, Outcome.FAILED, error=f"not attempted: {self.abort[0]}")
        try:
            result = upload.run()
        except DockAbort as exc:
            self.abort.append(str(exc))
            result = ClipResult(upload.rel, Outcome.FAILED, upload.sent, error=str(exc))
        except DockError as exc:
            result = ClipResult(upload.rel, Outcome.FAILED, upload.sent, error=str(exc))
        except OSError as exc:
            result = ClipResult(
                upload.rel,
                Outcome.FAILED,
                upload.sent,
                error=f"cannot read the file: {exc.strerror or exc}",
            )
        if result.outcome is not Outcome.HELD:
            self.progress.clip_finished()
        _say_result(upload, result)
        return result

    def _upload_all(self, clips: list[Path], twins: Twins | None) -> list[ClipResult]:
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="dock") as pool:
            futures = [pool.submit(self._one, path, twins) for path in clips]
            try:
                return [f.result() for f in futures]
            except KeyboardInterrupt:
                self.cancelled.set()
                for f in futures:
                    f.cancel()
                raise

    def _confirm_all(self, results: list[ClipResult]) -> list[ClipResult]:
        """Every clip sent is done only once the server vouches for its original: wait for the
        verdicts, within one budget for the run (RetryPolicy.verify_wait)."""
        waiting = [r for r in results if r.outcome is Outcome.WAITING and r.upload_id]
        if not waiting:
            return results
        self.progress.line(
            f"waiting for the server to verify {len(waiting)} clip"
            f"{'s' if len(waiting) != 1 else ''} "
            f"(at most {self.api.retry.verify_wait:.0f} s)"
        )
        deadline = time.monotonic() + self.api.retry.verify_wait
        verdicts: dict[str, ClipResult] = {}
        for r in waiting:
            upload = self._clip(self.root / r.path)
            upload.sent = r.sent
            try:
                verdict = upload.confirm(r.upload_id or "", deadline)
            except DockError as exc:
                verdict = ClipResult(r.path, Outcome.FAILED, r.sent, error=str(exc))
            if verdict.outcome is Outcome.UPLOADED:
                upload.say(f"verified by the server, clip {verdict.clip_id}")
            elif verdict.outcome is Outcome.FAILED:
                upload.say(f"FAILED: {verdict.error}")
            else:
                upload.say("not verified yet: not marked done; the next run asks the server again")
            verdicts[r.path] = verdict
        return [verdicts.get(r.path, r) for r in results]

    def _release_twins(self, results: list[ClipResult]) -> list[ClipResult]:
        """Declare each held-back clip now that its twin has its verdict. A twin verified
        makes the server answer `exists`; a twin that failed (for a reason of its own file,
        say) lets this copy try on its own; a twin still unverified keeps it held."""
        by_path = {r.path: r for r in results}
        ready = [
            r
            for r in results
            if r.outcome is Outcome.HELD
            and r.twin_of
            and by_path[r.twin_of].outcome in (*VERIFIED, Outcome.FAILED)
        ]
        if not ready or self.cancelled.is_set():
            return results
        again = self._upload_all([self.root / r.path for r in ready], None)
        again = self._confirm_all(again)
        released = {
            new.path: dataclasses.replace(new, twin_of=old.twin_of)
            for old, new in zip(ready, again)
        }
        return [released.get(r.path, r) for r in results]


def _say_result(upload: ClipUpload, result: ClipResult) -> None:
    if result.outcome is Outcome.FAILED:
        upload.say(f"FAILED: {result.error}")
    elif result.outcome is Outcome.UPLOADED:
        upload.say(
            f"uploaded and verified, clip {result.clip_id} ({human_bytes(result.sent)} sent)"
        )
    elif result.outcome is Outcome.EXISTS:
        upload.say("already stored (a verified original); nothing more to send")
    elif result.outcome is Outcome.WAITING:
        upload.say(f"sent ({human_bytes(result.sent)}); the server is verifying it")
    elif result.outcome is Outcome.HELD:
        upload.say(
            f"identical to {result.twin_of}, which is in flight: declared once the "
            "server has verified that one"
        )
