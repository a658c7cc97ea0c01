"""The bundle-signing key: Ed25519, made on first use in the data dir's keys/, kept 0600.

Separate from the ledger key on purpose: the ledger key signs the log's checkpoints, this
one signs what we hand to a court. A force publishes the public half (keys/bundle.pub.pem)
so a court can pin it (`evidence verify bundle --bundle-key`).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.keyfiles import create_once, read_private

KEY_NAME = "bundle.key"


def load_or_create_bundle_key(keys_dir: Path) -> Ed25519PrivateKey:
    path = keys_dir / KEY_NAME
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        create_once(path, pem)
    key = serialization.load_pem_private_key(read_private(path, "bundle key"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    pub = keys_dir / "bundle.pub.pem"
    if not pub.exists():
        pub.write_bytes(public_pem(key.public_key()))
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM: what `openssl pkeyutl -pubin -inkey` reads."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
