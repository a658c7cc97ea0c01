"""The log's Ed25519 signing key: made on first run, kept 0600, never logged."""

from __future__ import annotations

from pathlib import Path

from evidence.keyfiles import create_once, read_private
from evidence.ledger.note import NoteSigner


def load_or_create_signer(path: Path, name: str) -> NoteSigner:
    """Load the signer key at `path`, or make one named `name` if there is none.

    The file holds the Go/x-mod style `PRIVATE+KEY+name+keyid+base64` string; the
    verifier key is written beside it (`.pub`) so operators can publish it.
    """
    if not path.exists():
        create_once(path, (NoteSigner.generate(name).to_skey() + "\n").encode())
    signer = NoteSigner.from_skey(read_private(path, "ledger key").decode().strip())
    pub = path.with_suffix(".pub")
    if not pub.exists() or pub.read_text().strip() != signer.verifier_key():
        pub.write_text(signer.verifier_key() + "\n")
    return signer
