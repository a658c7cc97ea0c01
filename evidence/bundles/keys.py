"""The bundle-signing key: Ed25519, made on first use in the data dir's keys/, kept 0600.

Separate from the ledger key on purpose: the ledger key signs the log's checkpoints, this
one signs what we hand to a court. A force publishes the public half (keys/bundle.pub.pem,
GET /api/v1/bundles/key) so a court can pin it (`evidence verify bundle --bundle-key`).

Keys are rotated (`evidence admin rotate-key bundle`), and a bundle made before a rotation
must still verify years later, so every public key the force has signed with is kept in
keys/bundle-keys.json with its validity period (GET /api/v1/bundles/keys). The current key is
always the one entry whose `valid_until` is null.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence import clock
from evidence.keyfiles import create_once, read_private

KEY_NAME = "bundle.key"
PUBLIC_NAME = "bundle.pub.pem"
HISTORY_NAME = "bundle-keys.json"
RETIRED_DIR = "retired"


def load_or_create_bundle_key(keys_dir: Path) -> Ed25519PrivateKey:
    path = keys_dir / KEY_NAME
    if not path.exists():
        create_once(path, _private_pem(Ed25519PrivateKey.generate()))
    key = _read_key(path)
    pem = public_pem(key.public_key())
    pub = keys_dir / PUBLIC_NAME
    # Rewritten only when the key file still holds this key: a process that read the old key
    # just before a rotation must not put the old public half back.
    if (not pub.exists() or pub.read_bytes() != pem) and public_pem(
        _read_key(path).public_key()
    ) == pem:
        _write_atomically(pub, pem, mode=0o644)
    _record_current(keys_dir, pem, _made_at(path))
    return key


def _read_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(read_private(path, "bundle key"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM: what `openssl pkeyutl -pubin -inkey` reads."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(pem: bytes) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: the fingerprint a court compares
    (`openssl pkey -pubin -in KEY.pem -outform DER | sha256sum` gives the same)."""
    key = serialization.load_pem_public_key(pem)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def current_public_pem(keys_dir: Path) -> bytes:
    """The key bundles are signed with now (made if there is none yet, so what is published
    is what the next bundle will carry)."""
    return public_pem(load_or_create_bundle_key(keys_dir).public_key())


def published_keys(keys_dir: Path) -> list[dict[str, Any]]:
    """Every bundle key the force has used, oldest first: {key_id, public_pem, valid_from,
    valid_until (null for the current one)}."""
    load_or_create_bundle_key(keys_dir)
    return _read_history(keys_dir)


@dataclass(frozen=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    retired_private_key: Path
    at: str


def rotate_bundle_key(keys_dir: Path) -> Rotation:
    """Make a new bundle key, end the old one's validity now, keep its public half in the
    history and move its private half to keys/retired/ (never deleted here: the force decides,
    docs/bundles.md). The caller records the rotation in the ledger.

    Order matters. The new key is written beside the old one first; the old one is linked
    into retired/, then the new one atomically replaces it, so keys/bundle.key is never
    missing (a worker loading it meanwhile would otherwise make a key of its own). If the
    process stops half-way, whichever key is in place is recorded as current by the next
    `load_or_create_bundle_key`."""
    with _rotation_lock(keys_dir):
        return _rotate(keys_dir)


@contextlib.contextmanager
def _rotation_lock(keys_dir: Path) -> Iterator[None]:
    """One rotation at a time: two interleaved ones would share the staged file, and the
    key put in place could be the other one's."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(keys_dir / ".bundle-rotate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _rotate(keys_dir: Path) -> Rotation:
    old = load_or_create_bundle_key(keys_dir)
    old_pem = public_pem(old.public_key())
    new = Ed25519PrivateKey.generate()
    new_pem = public_pem(new.public_key())
    now = clock.now()
    at = clock.rfc3339(now)
    staged = keys_dir / f".{KEY_NAME}.next"
    staged.unlink(missing_ok=True)  # left by an earlier rotation that stopped half-way
    create_once(staged, _private_pem(new))
    # Dated `at` exactly, so a process that loads the new key before this one records it
    # writes the same validity period as the ledger entry will say.
    ns = calendar.timegm(now.utctimetuple()) * 10**9 + now.microsecond * 1000
    os.utime(staged, ns=(ns, ns))
    retired_dir = keys_dir / RETIRED_DIR
    retired_dir.mkdir(mode=0o700, exist_ok=True)
    retired = retired_dir / f"bundle-{key_id(old_pem)[:16]}-{at.replace(':', '')}.key"
    os.link(keys_dir / KEY_NAME, retired)
    os.replace(staged, keys_dir / KEY_NAME)
    _write_atomically(keys_dir / PUBLIC_NAME, new_pem, mode=0o644)
    _record_current(keys_dir, new_pem, at)
    return Rotation(key_id(old_pem), key_id(new_pem), retired, at)


# -- the history file ----------------------------------------------------------------------


def _read_history(keys_dir: Path) -> list[dict[str, Any]]:
    path = keys_dir / HISTORY_NAME
    if not path.exists():
        return []
    data = json.loads(path.read_bytes())
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        raise ValueError(f"{path} has no list of keys")
    return keys


def _record_current(keys_dir: Path, pem: bytes, valid_from: str) -> None:
    """Add `pem` as the history's one open entry, closing any other open one at `valid_from`.
    A no-op for a key already listed: every process that loads the key calls this, and one
    that read the old key just before a rotation must not reopen it."""
    keys = _read_history(keys_dir)
    kid = key_id(pem)
    if any(k["key_id"] == kid for k in keys):
        return
    for k in keys:
        if k["valid_until"] is None:
            k["valid_until"] = valid_from
    keys.append(
        {"key_id": kid, "public_pem": pem.decode(), "valid_from": valid_from, "valid_until": None}
    )
    body = json.dumps({"keys": keys}, indent=2, sort_keys=True).encode() + b"\n"
    _write_atomically(keys_dir / HISTORY_NAME, body, mode=0o644)


def _made_at(path: Path) -> str:
    """When a key first seen without a history entry came into use. Keys made before the
    history existed have no better record than their file's modification time."""
    ns = path.stat().st_mtime_ns  # integer nanoseconds: no float rounding of the microseconds
    made = dt.datetime.fromtimestamp(ns // 10**9, dt.timezone.utc)
    return clock.rfc3339(made.replace(microsecond=ns // 1000 % 10**6))


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Readers (the API, other workers) see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
