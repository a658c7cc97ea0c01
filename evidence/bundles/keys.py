"""The bundle-signing key: Ed25519, made on first use in the data dir's keys/, kept 0600.

Separate from the ledger key on purpose: the ledger key signs the log's checkpoints, this
one signs what we hand to a court. A force publishes the public half (keys/bundle.pub.pem)
so a court can pin it (`evidence verify bundle --bundle-key`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_NAME = "bundle.key"


def load_or_create_bundle_key(keys_dir: Path) -> Ed25519PrivateKey:
    path = keys_dir / KEY_NAME
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(
                f"bundle key {path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return load_or_create_bundle_key(keys_dir)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    (keys_dir / "bundle.pub.pem").write_bytes(public_pem(key.public_key()))
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM: what `openssl pkeyutl -pubin -inkey` reads."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
