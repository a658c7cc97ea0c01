"""`--watch ROOT`: dock each camera as it appears under ROOT, until SIGTERM or SIGINT.

A docking PC mounts each camera's storage under ROOT (deploy/dock/99-evidence-dock.rules
does it read-only under /media/bwv); a plain folder per camera works as well. Every `poll`
seconds the watcher lists the candidates: each mount point below ROOT (from
/proc/self/mountinfo) and each immediate, non-hidden subdirectory of ROOT that holds no such
mount. Why it waits and when it docks again:
- A camera still being mounted, or still copying its last clip, shows files that change: a
  candidate is docked only once its clips (names, sizes, mtimes) have not changed for
  `settle` seconds.
- A camera fully done (every clip verified by the server) is not docked again while it stays
  docked, unless new or changed clips appear; unmounted and docked again, it is new.
- A camera that failed (or whose clips the server has not verified yet) is tried again every
  `retry_every` seconds while it stays docked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from evidence_dock.agent import DockError, Outcome, RetryPolicy, Summary, find_clips, run
from evidence_dock.volumes import read_mounts, volume_at

Snapshot = frozenset[tuple[str, int, int]]  # (path relative to the camera, size, mtime_ns)


def snapshot(path: Path) -> Snapshot | None:
    """The clips under `path` as they are now; None if it cannot be read (going away)."""
    try:
        return frozenset(
            (p.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns)
            for p in find_clips(path)
            for st in (p.stat(),)
        )
    except OSError:
        return None


@dataclass
class Camera:
    """A candidate under ROOT, as the watcher last saw it."""

    path: Path
    device: str  # the device mounted at `path`; "" for a plain folder
    files: Snapshot | None
    changed_at: float  # when `files` last changed (monotonic)
    status: str = "new"  # new (dock when settled) | done | failed (retry at next_try)
    next_try: float = 0.0


def candidates(root: Path) -> dict[Path, str]:
    """Every camera under `root`: mount points below it (any depth) with their device, and
    its immediate subdirectories that are neither hidden nor hold such a mount point (those
    only contain cameras: docking them too would dock each camera twice)."""
    root = root.resolve()
    mounted = {m.mount_point: m.device for m in read_mounts() if root in m.mount_point.parents}
    found = dict(mounted)
    try:
        subdirs = [d for d in root.iterdir() if not d.name.startswith(".") and d.is_dir()]
    except OSError:
        subdirs = []
    for d in subdirs:
        if d not in found and not any(d in mp.parents for mp in mounted):
            found[d] = ""
    return found


def title(path: Path) -> str:
    """The report block's heading: the volume's label and UUID when it is one, else the
    folder."""
    volume = volume_at(path)
    if volume is None:
        return f"=== folder {path} ==="
    names = [
        f"label {volume.label}" if volume.label else "no label",
        f"uuid {volume.uuid}" if volume.uuid else "no uuid",
    ]
    ro = ", read-only" if volume.read_only else ""
    return f"=== camera {', '.join(names)} ({volume.device} at {path}{ro}) ==="


class Watcher:
    def __init__(
        self,
        root: Path,
        api: str,
        device_key: str,
        *,
        out: TextIO,
        stop: threading.Event,
        jobs: int = 2,
        retry: RetryPolicy = RetryPolicy(),
        state_dir: Path | None = None,
        clear_after_verified: bool = False,
        poll: float = 2.0,
        settle: float = 3.0,
        retry_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        dock: Callable[..., Summary] = run,
    ):
        self.root = root
        self.api = api
        self.device_key = device_key
        self.out = out
        self.stop = stop
        self.options: dict[str, Any] = {
            "jobs": jobs,
            "retry": retry,
            "state_dir": state_dir,
            "clear_after_verified": clear_after_verified,
        }
        self.poll = poll
        self.settle = settle
        self.retry_every = retry_every
        self.clock = clock
        self.dock = dock
        self.cameras: dict[Path, Camera] = {}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run(self) -> None:
        self.say(
            f"watching {self.root} for cameras (every {self.poll:g} s; docked once "
            f"unchanged for {self.settle:g} s; failures retried every "
            f"{self.retry_every:g} s)"
        )
        while not self.stop.is_set():
            self.tick()
            self.stop.wait(self.poll)
        self.say("stopped")

    def tick(self) -> None:
        found = candidates(self.root)
        for path in list(self.cameras):
            if found.get(path) != self.cameras[path].device:
                self.say(f"{path}: gone (unmounted or removed)")
                del self.cameras[path]
        for path, device in sorted(found.items()):
            if self.stop.is_set():
                return
            self._look(path, device)

    def _look(self, path: Path, device: str) -> None:
        now = self.clock()
        camera = self.cameras.get(path)
        files = snapshot(path)
        if camera is None:
            self.say(f"{path}: new camera storage; docking it once it has settled")
            camera = self.cameras[path] = Camera(path, device, files, now)
        elif files != camera.files:
            # Only clips added or changed make a finished camera worth docking again (clips
            # removed, by --clear-after-verified or by hand, leave nothing to send).
            grew = files is not None and (camera.files is None or not files <= camera.files)
            camera.files, camera.changed_at = files, now
            if camera.status == "done" and grew:
                camera.status = "new"
        settled = files is not None and now - camera.changed_at >= self.settle
        due = camera.status == "new" or (camera.status == "failed" and now >= camera.next_try)
        if settled and due:
            self._dock(camera)

    def _dock(self, camera: Camera) -> None:
        heading = title(camera.path)
        self.say(f"{camera.path}: docking")
        hint = (
            f"retried in {self.retry_every:g} s while the camera stays docked; "
            "each reason says what to fix if it keeps failing"
        )
        try:
            summary = self.dock(
                camera.path,
                self.api,
                self.device_key,
                out=self.out,
                title=heading,
                retry_hint=hint,
                cancelled=self.stop,
                **self.options,
            )
        except DockError as exc:
            self.say(heading)
            self.say(f"not docked: {exc}")
            self._failed(camera)
            return
        if summary.interrupted:
            self.say(f"{camera.path}: abandoned (stopping); the next start resumes it")
            return
        unfinished = summary.count(Outcome.WAITING) + summary.count(Outcome.HELD)
        if summary.ok and not unfinished:
            camera.status = "done"
            self.say(f"{camera.path}: done: every clip is verified by the server; safe to undock")
        else:
            self._failed(camera)
        camera.files, camera.changed_at = snapshot(camera.path), self.clock()

    def _failed(self, camera: Camera) -> None:
        camera.status = "failed"
        camera.next_try = self.clock() + self.retry_every
        self.say(
            f"{camera.path}: not finished: trying again in {self.retry_every:g} s; "
            "do not undock it yet"
        )
