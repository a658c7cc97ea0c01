"""The log's Ed25519 signing key: made on first run, kept 0600, never logged."""

from __future__ import annotations

import os
from pathlib import Path

from evidence.ledger.note import NoteSigner


def load_or_create_signer(path: Path, name: str) -> NoteSigner:
    """Load the signer key at `path`, or make one named `name` if there is none.

    The file holds the Go/x-mod style `PRIVATE+KEY+name+keyid+base64` string; the
    verifier key is written beside it (`.pub`) so operators can publish it.
    """
    if path.exists():
        _check_private(path)
        return NoteSigner.from_skey(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer = NoteSigner.generate(name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (signer.to_skey() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    path.with_suffix(".pub").write_text(signer.verifier_key() + "\n")
    return signer


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(
            f"ledger key {path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
        )
