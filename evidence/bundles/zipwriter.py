"""Writing the bundle ZIP in chunks: memory stays flat whatever the clip sizes.

How it streams: the ZIP is written straight into its place in the object store
(`store.writing`), each media member copied from the store chunk by chunk (STORED, not
deflated: video does not compress and a court's tools read stored members fastest) and
hashed on the way, so every original and proxy is read once. The writer cannot seek, so
each member's CRC and sizes follow its data (a data descriptor, ZIP flag bit 3) instead of
being patched into its header afterwards: every byte is final once written, which is what
lets the ZIP's own SHA-256 be computed on the way and the bytes go to S3 as a multipart
upload without a local copy.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterator

from evidence.errors import EvidenceError

# Fixed member timestamp and permissions: the same inputs make the same ZIP bytes.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
CHUNK = 1024 * 1024


class MediaChanged(EvidenceError):
    """A stored object no longer hashes to what the ledger says: refuse to bundle it."""


def _info(name: str, compress: int, size: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = compress
    info.external_attr = 0o644 << 16
    info.create_system = 3  # unix, so the mode above means what it says
    if size is not None:
        info.file_size = size  # lets zipfile choose ZIP64 headers up front for big members
    return info


def add_bytes(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    zf.writestr(_info(name, zipfile.ZIP_DEFLATED), data)


def add_stream(
    zf: zipfile.ZipFile,
    name: str,
    chunks: Iterator[bytes],
    size: int,
    sha256: str,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Copy `chunks` into a STORED member, checking they hash to `sha256` on the way."""
    digest, n = hashlib.sha256(), 0
    with zf.open(
        _info(name, zipfile.ZIP_STORED, size), "w", force_zip64=size >= zipfile.ZIP64_LIMIT
    ) as out:
        try:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
                n += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
    if n != size or digest.hexdigest() != sha256:
        raise MediaChanged(
            f"{name}: stored object has {n} bytes hashing to {digest.hexdigest()}, "
            f"the ledger says {size} bytes {sha256}; run evidence scrub"
        )
