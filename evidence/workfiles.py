"""Work directories for workers (a clip copied for ffmpeg, its proxy being made), and the
sweep that removes the ones a killed worker left behind.

A killed worker cannot clean up, and a clip's work directory is as big as the clip. Each
directory is held with a shared flock(2) on the directory itself while it is in use; the
kernel drops the lock when its process dies however it dies, so a directory nobody holds
is a leftover. The sweep takes each one's lock exclusively without waiting: if it gets
it, the owner is gone and the directory goes. A directory is made under a staging name the
sweep leaves alone, locked, then renamed, so no live directory is ever seen unlocked.
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
STAGING = ".new-"
STAGING_GRACE_SECONDS = 3600.0  # a staging directory is empty; one this old was abandoned


@contextmanager
def work_dir(root: Path) -> Iterator[Path]:
    """A fresh directory under `root`, held while the block runs and removed after it."""
    root.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(dir=root, prefix=STAGING)
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # the lock is the inode's: it survives the rename
        path = root / (PREFIX + Path(staging).name[len(STAGING) :])
        os.rename(staging, path)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)  # releases the lock
        if os.path.isdir(staging):
            os.rmdir(staging)


def sweep(root: Path) -> int:
    """Remove work directories under `root` whose owner is gone; returns how many."""
    if not root.is_dir():
        return 0
    removed = 0
    now = time.time()
    for path in root.glob(f"{STAGING}*"):
        try:
            if now - path.stat().st_mtime > STAGING_GRACE_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
    for path in root.glob(f"{PREFIX}*"):
        try:
            if not path.is_dir() or path.is_symlink():
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
