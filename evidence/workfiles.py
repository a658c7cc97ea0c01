"""Work directories for workers (a clip copied for ffmpeg, its proxy being made), and the
sweep that removes the ones a killed worker left behind.

A killed worker cannot clean up, and a clip's work directory is as big as the clip. Each
directory is held with a shared flock(2) on the directory itself while it is in use; the
kernel drops the lock when its process dies however it dies, so a directory nobody holds
is a leftover. The sweep takes each one's lock exclusively without waiting: if it gets
it, the owner is gone and the directory goes. Newly made directories are spared for a
moment, since they are locked just after they are made.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "tmp"
GRACE_SECONDS = 60.0


@contextmanager
def work_dir(root: Path) -> Iterator[Path]:
    """A fresh directory under `root`, held while the block runs and removed after it."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=PREFIX) as tmp:
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield Path(tmp)
        finally:
            os.close(fd)  # releases the lock


def sweep(root: Path, *, grace: float = GRACE_SECONDS) -> int:
    """Remove work directories under `root` whose owner is gone; returns how many."""
    if not root.is_dir():
        return 0
    removed = 0
    now = time.time()
    for path in root.glob(f"{PREFIX}*"):
        try:
            if not path.is_dir() or path.is_symlink() or now - path.stat().st_mtime < grace:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # removed meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live task holds it
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d work directories left by stopped workers under %s", removed, root)
    return removed
