"""Private key files (the ledger, token, bundle and presigning keys): made once, 0600.

Every API and worker replica on a shared keys volume may start at the same instant, so a key
is created atomically: written to a temporary file, fsynced, then hard-linked into place.
The first process wins, the others read its key, and no reader ever sees a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def create_once(path: Path, data: bytes) -> bool:
    """Put `data` at `path` (mode 0600) unless a file is there already; True if we made it."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600 from the start
    try:
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False  # another process made it first: theirs is the key
        return True
    finally:
        os.unlink(tmp)


def read_private(path: Path, what: str) -> bytes:
    """The key file's bytes; refused if anyone but its owner can read it."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(
            f"{what} {path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
        )
    return path.read_bytes()
