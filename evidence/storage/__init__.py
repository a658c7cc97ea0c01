"""The object store: one interface, two backends with the same semantics.

- `LocalStore` (evidence.storage.local): a directory that behaves like an S3 bucket with
  Object Lock, for the embedded profile.
- `S3Store` (evidence.storage.s3): MinIO, AWS S3 or Ceph RGW through the `minio` client, on a
  bucket with versioning and Object Lock.

Both stream in `CHUNK`-sized pieces and hash on the way, so memory stays flat for any clip size.
The conformance suite `tests/test_storage.py` runs every rule below against both backends.

Rules both backends follow:
- Keys are `/`-separated relative paths. Empty segments, `.`/`..`, segments starting with `.`,
  backslashes and control characters are refused (InvalidInput): keys become file paths in the
  local store, so this is what makes path traversal impossible. `tmp/` is reserved for the
  stores' own in-flight uploads.
- A put never leaves wrong bytes at its key: bytes are staged, hashed, checked, then installed.
- Write-once: the same bytes again are a no-op, different bytes raise WriteOnceViolation.
  A plain put over a write-once object is refused the same way.
- An object under retention or legal hold cannot be deleted or replaced (ObjectLocked);
  retention can be extended, never shortened. Retention dates have millisecond precision
  (S3's wire format), so both backends round them down to the millisecond.
- `delete` is permanent (every version on S3) and idempotent: deleting a missing key is a no-op.
- Multipart uploads (resumable, parts PUT straight to storage through presigned URLs): parts
  numbered 1..MAX_PARTS, a re-sent part replaces the previous one, `list_parts` reports what
  the storage really holds, `complete_multipart` joins parts 1..N without gaps, every part but
  the last at least MIN_PART_SIZE (`select_parts`, shared by both backends).
- `writing(key)` takes bytes as the caller produces them (a court bundle's ZIP) and installs
  them at `key` only when the block ends without an error; the key never shows half an
  object, and the writer hashes what passed through it on the way.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import itertools
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol, runtime_checkable

from evidence import clock
from evidence.errors import InvalidInput, RangeNotSatisfiable

if TYPE_CHECKING:
    from evidence.config import Settings

CHUNK = 1024 * 1024
"""Read/write/hash granularity everywhere: big enough for throughput, small enough for memory."""

TMP_PREFIX = "tmp/"
"""Reserved key prefix for in-flight uploads (S3 stages there; the local store in `.tmp/`)."""

ORIGINALS_PREFIX = "originals/"
"""Content-addressed, write-once originals: `originals/{sha256}`."""

MAX_PRESIGN_EXPIRY = dt.timedelta(days=7)
"""S3 SigV4 refuses longer; the local store keeps the same limit so both behave alike."""

MiB = 1024 * 1024

MIN_PART_SIZE = 5 * MiB
"""S3's minimum for every multipart part but the last; the local store enforces it too."""

MAX_PART_SIZE = 5 * 1024 * MiB
"""S3's maximum part size (5 GiB); the local store refuses bigger parts too."""

MAX_PARTS = 10_000
"""S3's highest part number, hence the most parts an upload can have."""

MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MiB
"""S3's largest object (5 TiB): `plan_parts` refuses to plan anything bigger."""

DEFAULT_PART_SIZE = 8 * MiB
"""Part size `plan_parts` starts from: a lost part costs little to re-send, and 8 MiB parts
still cover 78 GiB in 10,000 parts (bigger uploads get bigger parts)."""

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
MAX_KEY_BYTES = 1024  # S3's limit on key length


@dataclass(frozen=True)
class StoredObject:
    """What a write produced: the key and the bytes' SHA-256 and length."""

    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ObjectInfo:
    """An object's current state. `sha256` is None for bytes that arrived without our hashing
    (e.g. a presigned PUT straight to S3); re-hash them before trusting them."""

    key: str
    size: int
    sha256: str | None
    retain_until: dt.datetime | None
    retention_mode: str | None
    legal_hold: bool

    def locked(self, at: dt.datetime | None = None) -> bool:
        """True while retention or a legal hold forbids deleting or replacing the object."""
        at = at or clock.now()
        return self.legal_hold or (self.retain_until is not None and self.retain_until > at)


@dataclass(frozen=True)
class Fetched:
    """An object copied to a local file by `fetch`, hashed on the way: which version of it
    (S3's version id; None on the local store) and what those bytes hash to."""

    key: str
    sha256: str
    size: int
    version: str | None


@dataclass(frozen=True)
class PartInfo:
    """One part of a multipart upload as the storage holds it. `etag` is the part's MD5 in hex
    on both backends (S3's ETag for unencrypted parts), so a client can compare it with the
    MD5 of the bytes it meant to send."""

    number: int
    size: int
    etag: str


class PlannedPart(NamedTuple):
    """One part of an upload plan: part `number` is `length` bytes of the file from `offset`."""

    number: int
    offset: int
    length: int


@runtime_checkable
class ObjectStore(Protocol):
    """The object store every part of the evidence store talks to."""

    supports_object_lock: bool
    """True when the storage itself enforces retention (S3 Object Lock), so that not even a
    client bypassing this code can delete a locked object. The local store enforces the same
    rules, but only for callers that go through it: it reports False."""

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        expected_sha256: str | None = None,
        write_once: bool = False,
        retain_until: dt.datetime | None = None,
    ) -> StoredObject:
        """Stream `stream` to `key`, hashing on the way.

        expected_sha256: on mismatch raise HashMismatch and leave `key` as it was.
        write_once: the same bytes again are a no-op (retention may be extended), different
        bytes raise WriteOnceViolation. A locked object is never replaced (ObjectLocked).
        retain_until: Object Lock retention in the configured mode (GOVERNANCE/COMPLIANCE).
        """
        ...

    def put_original(
        self, stream: BinaryIO, sha256: str, *, retain_until: dt.datetime | None = None
    ) -> StoredObject:
        """`put("originals/{sha256}", expected_sha256=sha256, write_once=True)`."""
        ...

    def writing(self, key: str) -> AbstractContextManager[ObjectWriter]:
        """A forward-only writer whose bytes become the (plain, replaceable) object `key`
        when the `with` block ends without an error; on an error nothing appears at `key` and
        nothing staged is left behind. The bytes go to their final place as they are written
        (local: a staging file beside the objects, renamed in; S3: a multipart upload, one
        part in memory), so a producer such as the bundle builder never needs a copy of its
        own. After the block, the writer's `sha256`/`size` are what was stored.
        """
        ...

    def promote(
        self,
        src_key: str,
        sha256: str,
        *,
        retain_until: dt.datetime | None = None,
        fetched: Fetched | None = None,
    ) -> StoredObject:
        """Move `src_key` to `originals/{sha256}` server-side and remove the source.

        The source is pinned (S3 version id / local hard link) and re-hashed before the
        move: HashMismatch leaves everything in place. A no-op when the original exists,
        also when repeated after the source is gone. A locked source is refused.

        `fetched`: what this process's `fetch` of `src_key` read and hashed. On S3 that
        version (immutable, by id) is the one promoted, and the hash is not read again; the
        local store always hashes through its pin (it reads no more than fetch would have).
        """
        ...

    def fetch(self, key: str, dest: Path) -> Fetched:
        """Copy the object's current version to the new file `dest`, hashing on the way:
        one read serves both a worker's work copy and its verification."""
        ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Chunks of bytes `start..end` (inclusive, as HTTP Range; `end` past the object is
        clamped). Errors (ObjectNotFound, RangeNotSatisfiable, InvalidInput) are raised by
        the call itself, not on first iteration. Iterate to the end or close() it."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """The current object's size, recorded sha256, retention and hold, or ObjectNotFound."""
        ...

    def local_file(self, key: str) -> Path | None:
        """The file holding `key`'s bytes when the store is a directory on this machine (read
        it, never write it), else None (S3: the bytes must be fetched). ObjectNotFound if
        there is no such object. Lets a worker hash, probe and transcode an object in place
        instead of copying GiBs first."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object permanently (every S3 version); ObjectLocked while retention or
        a legal hold stands, leaving it intact. Deleting a missing key is a no-op."""
        ...

    def set_retention(self, key: str, until: dt.datetime) -> None:
        """Set or extend retention; shortening raises ObjectLocked, a past date InvalidInput."""
        ...

    def set_legal_hold(self, key: str, on: bool) -> None: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order."""
        ...

    def presign_put(self, key: str, expires: dt.timedelta) -> str:
        """A URL anyone may PUT bytes to until it expires (at most 7 days)."""
        ...

    def presign_get(self, key: str, expires: dt.timedelta) -> str:
        """A URL anyone may GET (with Range) until it expires (at most 7 days)."""
        ...

    # Multipart uploads: how a dock sends a big clip in parts straight to storage, and resumes
    # after being killed knowing only the key and the upload id.

    def create_multipart(self, key: str) -> str:
        """Start a multipart upload to `key` and return its upload id.

        Only for plain keys (e.g. `incoming/{id}`): a write-once key is refused with
        WriteOnceViolation, a locked one with ObjectLocked, `originals/` with InvalidInput
        (originals are only written verified, by put_original/promote). Nothing appears at
        `key` before `complete_multipart`.
        """
        ...

    def presign_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        expires: dt.timedelta,
        *,
        max_size: int | None = None,
        offset: int | None = None,
    ) -> str:
        """A URL to HTTP PUT the bytes of part `part_number` (1..MAX_PARTS) of the upload.

        Offline (no request to the storage). The signature covers key, upload id and part
        number: the URL works for that part of that upload only. PUT answers the part's ETag
        (MD5 hex, quoted) and refuses a `Content-MD5` header that does not match the body.
        Sending a part again replaces its earlier bytes. An unknown upload answers 404.

        `max_size`: the local store signs it into the URL and refuses a bigger body (413).
        An S3 presigned PUT cannot cap its body, so there the caller checks the sizes
        `list_parts` reports before completing (the ingest service does).

        `offset` (with `max_size`): the part's place in the object. The local store signs it
        and writes the part's bytes there, so completing installs them without a join copy;
        S3 joins server-side and ignores it.
        """
        ...

    # builtins.list: inside a store class, plain `list` is the store's own list() method.
    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """The parts the storage holds for the upload, by part number: what a resumed
        uploader may skip. UploadNotFound if the upload does not exist (never created,
        completed or aborted) or belongs to another key."""
        ...

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo] | None = None
    ) -> ObjectInfo:
        """Join the parts into the object at `key` and end the upload.

        `parts=None` joins every listed part; given parts must match what is held (number and
        ETag). The parts must run 1..N without a gap and all but the last must be at least
        MIN_PART_SIZE; otherwise InvalidInput names the missing or short part and the upload
        stays open (send the part, complete again). A key that became write-once or locked
        since the upload began is refused as a plain put would be (the upload stays open).

        Returns the new object's state. Its `sha256` is known on the local store when it
        joined the parts by copying (hashed on the way), None when their bytes were written
        in place (parts sent to URLs with an offset) and on S3 (the server joins the parts;
        knowing the digest would mean reading everything back): uploads go to `incoming/`,
        which is re-hashed anyway.
        """
        ...

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop the upload and every part it holds. Idempotent: an unknown upload is a no-op."""
        ...


def write_hashing(chunks: Iterable[bytes], dest: Path) -> tuple[str, int]:
    """Write `chunks` to the new file `dest`, hashing on the way: (sha256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    with dest.open("xb") as out:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


class ObjectWriter:
    """What `writing` hands out: write() bytes in order, hashed (SHA-256) and counted on the
    way; tell() is the count. No seek: a ZIP written here uses data descriptors instead of
    going back to patch headers, so every byte is final the moment it is written."""

    def __init__(self, out: Callable[[bytes], object]):
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        n = len(data)
        if n:
            self._hash.update(data)
            self._out(data)
            self.size += n
        return n

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class _Aborted(Exception):
    """The producer of a `writing` block failed: the upload must not complete."""


_END, _ABORT = object(), object()


class _ChunkPipe:
    """Chunks handed from a writing thread to a reading one (`StoreBase.writing`): a bounded
    queue, so memory holds a few chunks whatever the object's size. read() serves the reader
    (minio's uploader) as a file would; an abort makes it raise instead of ending, so a failed
    producer can never complete an upload that looks whole."""

    DEPTH = 4

    def __init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue(self.DEPTH)
        self._buf = memoryview(b"")
        self._done = False
        self.reader_gone = threading.Event()

    def send(self, data: bytes) -> None:
        self._put(bytes(data))

    def finish(self) -> None:
        self._put(_END)

    def abort(self) -> None:
        self._put(_ABORT)

    def _put(self, item: object) -> None:
        while True:
            if self.reader_gone.is_set():
                if item is _END or item is _ABORT:
                    return
                raise BrokenPipeError("the store stopped reading this object")
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        want = CHUNK if n is None or n < 0 else n
        out = bytearray()
        while len(out) < want:
            if not self._buf:
                if self._done:
                    break
                item = self._queue.get()
                if item is _ABORT:
                    raise _Aborted("the writer failed; the upload is abandoned")
                if item is _END:
                    self._done = True
                    break
                assert isinstance(item, bytes)
                self._buf = memoryview(item)
            take = self._buf[: want - len(out)]
            out += take
            self._buf = self._buf[len(take) :]
        return bytes(out)


class StoreBase:
    """What both backends share: `put_original`, `fetch` and `writing`, defined once in terms
    of `put` and `open` (the local store has its own `writing`)."""

    @contextmanager
    def writing(self, key: str) -> Iterator[ObjectWriter]:
        """`put` in a thread of its own, reading what the caller writes through a bounded
        pipe: the bytes are uploaded as they are produced, never spooled to a file."""
        validate_key(key)
        pipe = _ChunkPipe()
        outcome: dict[str, object] = {}

        def upload() -> None:
            try:
                outcome["stored"] = self.put(key, pipe)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the caller's thread below
                outcome["error"] = exc
            finally:
                pipe.reader_gone.set()

        thread = threading.Thread(target=upload, name=f"writing {key}", daemon=True)
        thread.start()
        writer = ObjectWriter(pipe.send)
        try:
            yield writer
        except BaseException:
            pipe.abort()
            thread.join()
            raise
        pipe.finish()
        thread.join()
        error = outcome.get("error")
        if isinstance(error, BaseException):
            raise error
        stored = outcome["stored"]
        assert isinstance(stored, StoredObject)
        if (stored.sha256, stored.size) != (writer.sha256, writer.size):
            raise RuntimeError(f"{key}: the store received other bytes than were written")

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        raise NotImplementedError

    def fetch(self, key: str, dest: Path) -> Fetched:
        sha256, size = write_hashing(self.open(key), dest)
        return Fetched(key, sha256, size, None)

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        expected_sha256: str | None = None,
        write_once: bool = False,
        retain_until: dt.datetime | None = None,
    ) -> StoredObject:
        raise NotImplementedError

    def put_original(
        self, stream: BinaryIO, sha256: str, *, retain_until: dt.datetime | None = None
    ) -> StoredObject:
        """Store bytes as `originals/{sha256}`: verified, write-once, idempotent."""
        sha256 = validate_sha256(sha256)
        return self.put(
            original_key(sha256),
            stream,
            expected_sha256=sha256,
            write_once=True,
            retain_until=retain_until,
        )


# --- multipart: the rules both backends share -----------------------------------------------


def plan_parts(size: int, part_size: int | None = None) -> list[PlannedPart]:
    """Split `size` bytes into upload parts: (number, offset, length), numbered from 1.

    Without `part_size`, parts are DEFAULT_PART_SIZE, grown (in whole MiB) so that there are
    at most MAX_PARTS. An empty file is one empty part (S3 needs at least one part).
    """
    if not isinstance(size, int) or size < 0:
        raise InvalidInput(f"cannot plan an upload of {size!r} bytes")
    if size > MAX_OBJECT_SIZE:
        raise InvalidInput(f"{size} bytes is more than S3's largest object ({MAX_OBJECT_SIZE})")
    if part_size is None:
        needed = -(-size // MAX_PARTS)  # ceiling division
        part_size = max(DEFAULT_PART_SIZE, -(-needed // MiB) * MiB)
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise InvalidInput(
            f"part size {part_size} is outside {MIN_PART_SIZE}..{MAX_PART_SIZE} bytes"
        )
    count = max(1, -(-size // part_size))
    if count > MAX_PARTS:
        raise InvalidInput(
            f"{size} bytes in parts of {part_size} would take {count} parts; "
            f"at most {MAX_PARTS} are allowed"
        )
    return [
        PlannedPart(n + 1, n * part_size, min(part_size, size - n * part_size))
        for n in range(count)
    ]


def select_parts(held: Sequence[PartInfo], wanted: Sequence[PartInfo] | None) -> list[PartInfo]:
    """The parts a completion joins, checked before the storage is asked to join them.

    `held` is what the storage holds (list_parts), `wanted` the caller's choice (None: all
    held parts). S3 itself would join parts 1 and 3 without a 2 (RGW does), so a missing
    middle part would silently truncate a clip: the parts must run 1..N without a gap.
    """
    by_number = {p.number: p for p in held}
    if wanted is None:
        chosen = sorted(held, key=lambda p: p.number)
    else:
        chosen = [_held_part(by_number, p) for p in sorted(wanted, key=lambda p: p.number)]
        for first, second in itertools.pairwise(chosen):
            if first.number == second.number:
                raise InvalidInput(f"part {first.number} is given more than once")
    if not chosen:
        raise InvalidInput("no parts have been uploaded: nothing to complete")
    for expected, part in enumerate(chosen, start=1):
        if part.number != expected:
            raise InvalidInput(
                f"part {expected} is missing (parts must be numbered 1..N without gaps; "
                f"got {_describe(chosen)}); upload it and complete again"
            )
    for part in chosen[:-1]:
        if part.size < MIN_PART_SIZE:
            raise InvalidInput(
                f"part {part.number} is {part.size} bytes; every part but the last must be "
                f"at least {MIN_PART_SIZE} bytes (5 MiB); re-send it and complete again"
            )
    return chosen


def _held_part(by_number: dict[int, PartInfo], wanted: PartInfo) -> PartInfo:
    have = by_number.get(wanted.number)
    if have is None:
        raise InvalidInput(f"part {wanted.number} has not been uploaded")
    if wanted.etag.strip('"') != have.etag:
        raise InvalidInput(
            f"part {wanted.number}: ETag {wanted.etag} is not the stored part's {have.etag} "
            "(sent again since it was listed?)"
        )
    return have


def _describe(parts: Sequence[PartInfo]) -> str:
    numbers = [p.number for p in parts]
    if len(numbers) > 10:
        return f"{len(numbers)} parts: {numbers[:5]}...{numbers[-3:]}"
    return f"parts {numbers}"


def validate_part_number(part_number: int) -> int:
    # bool is an int: refuse it explicitly rather than upload "part True".
    if isinstance(part_number, bool) or not isinstance(part_number, int):
        raise InvalidInput(f"a part number must be an integer, not {part_number!r}")
    if not 1 <= part_number <= MAX_PARTS:
        # RGW accepts 0 and 10001 (and loses part 0): the range is ours to enforce.
        raise InvalidInput(f"part number {part_number} is outside 1..{MAX_PARTS}")
    return part_number


_UPLOAD_ID_RE = re.compile(r"[\x21-\x7e]{1,1024}")


def validate_upload_id(upload_id: str) -> str:
    """Upload ids are opaque (RGW's look like `2~abc...`): printable ASCII, no spaces."""
    if not isinstance(upload_id, str) or not _UPLOAD_ID_RE.fullmatch(upload_id):
        raise InvalidInput(f"not an upload id: {upload_id!r}")
    return upload_id


def validate_multipart_key(key: str) -> str:
    """A key a multipart upload may target: a valid key outside `originals/`."""
    key = validate_key(key)
    if key.startswith(ORIGINALS_PREFIX):
        raise InvalidInput(
            f"{key}: originals are written only verified (put_original/promote), "
            "not by multipart upload; upload to incoming/ instead"
        )
    return key


# --- hashing ------------------------------------------------------------------------------


class HashingReader:
    """A file-like reader that hashes (SHA-256) and counts every byte passing through it.

    It lets a consumer that pulls bytes (minio's uploader, a file copy loop) compute the digest
    in the same single pass, instead of reading the stream twice.
    """

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        # read() without a size returns one CHUNK, not the rest of the stream: nothing in the
        # store may slurp a clip into memory, even by accident.
        data = self._raw.read(CHUNK if n is None or n < 0 else n)
        if data:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise InvalidInput("the stream must yield bytes")
            self._hash.update(data)
            self.size += len(data)
        return bytes(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """(hex SHA-256, size) of everything left in `stream`, read in CHUNK pieces."""
    h = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def sha256_chunks(chunks: Iterator[bytes]) -> tuple[str, int]:
    """(hex SHA-256, size) of an iterator of chunks, e.g. `store.open(key)`."""
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


# --- validation shared by both backends ---------------------------------------------------


def validate_key(key: str) -> str:
    """Return `key` if it is a safe object key, else raise InvalidInput."""
    if not isinstance(key, str) or not key:
        raise InvalidInput("an object key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidInput(f"object key longer than {MAX_KEY_BYTES} bytes")
    if _BAD_KEY_CHARS.search(key):
        raise InvalidInput(f"object key {key!r} contains a control character or backslash")
    if key.startswith("/"):
        raise InvalidInput(f"object key {key!r} must be relative, not absolute")
    for segment in key.split("/"):
        if not segment:
            raise InvalidInput(f"object key {key!r} has an empty path segment")
        if segment.startswith("."):
            # Covers "." and ".." (traversal) and keeps the local store's .meta/.tmp private.
            raise InvalidInput(f"object key {key!r} has a segment starting with '.'")
    if key.startswith(TMP_PREFIX):
        raise InvalidInput(f"object keys under {TMP_PREFIX!r} are reserved for the store")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key's beginning (which may end in '/' or mid-segment)."""
    if prefix == "":
        return prefix
    validate_key(prefix.rstrip("/") or "x/")  # "x/" makes a bare "/" fail as absolute
    if "//" in prefix:
        raise InvalidInput(f"prefix {prefix!r} has an empty path segment")
    return prefix


def validate_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise InvalidInput(f"not a lowercase hex SHA-256 digest: {sha256!r}")
    return sha256


def original_key(sha256: str) -> str:
    """Originals are content-addressed: the same bytes docked twice are one original."""
    return f"{ORIGINALS_PREFIX}{validate_sha256(sha256)}"


def to_ms(t: dt.datetime) -> dt.datetime:
    """UTC, rounded down to the millisecond: the precision S3 keeps retention dates in."""
    t = t.astimezone(dt.UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def validate_retain_until(until: dt.datetime | None) -> dt.datetime | None:
    """A retention date must be timezone-aware and in the future (S3 refuses past dates)."""
    if until is None:
        return None
    if not isinstance(until, dt.datetime) or until.tzinfo is None:
        raise InvalidInput("a retention date must be a timezone-aware datetime")
    until = to_ms(until)
    if until <= clock.now():
        raise InvalidInput(f"retention date {until.isoformat()} is not in the future")
    return until


def validate_expiry(expires: dt.timedelta) -> dt.timedelta:
    if not isinstance(expires, dt.timedelta) or not (
        dt.timedelta(seconds=1) <= expires <= MAX_PRESIGN_EXPIRY
    ):
        raise InvalidInput("a presigned URL must expire between 1 second and 7 days from now")
    return expires


def check_range_args(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise InvalidInput(f"bad byte range start={start} end={end}")


def clamp_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Resolve an inclusive (start, end) against `size` as HTTP Range does.

    `end` beyond the object is clamped. A range that starts at or after the end is
    unsatisfiable, except the whole-object read (0, None) of an empty object. Returns
    (start, end_exclusive).
    """
    check_range_args(start, end)
    if (start > 0 or end is not None) and start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, object has {size} bytes", size=size)
    stop = size if end is None else min(end + 1, size)
    return start, stop


def parse_range_header(header: str | None, size: int) -> tuple[int, int] | None:
    """An HTTP `Range` header against an object of `size` bytes -> inclusive (start, end).

    None means "send the whole object" (no header, or a unit other than bytes, which RFC 9110
    says to ignore). Like S3, only the first of several ranges is served. A malformed or
    unsatisfiable byte range raises RangeNotSatisfiable (RGW answers 416 for both). The
    header is the client's: error messages quote at most its start, and a position of any
    length is read without converting all its digits (Python refuses over 4,300).
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes":
        return None
    quoted = repr(header[:40] + ("..." if len(header) > 40 else ""))
    first = spec.split(",")[0].strip()
    m = re.fullmatch(r"([0-9]*)-([0-9]*)", first)
    if not m or (not m[1] and not m[2]):
        raise RangeNotSatisfiable(f"malformed range {quoted}", size=size)
    if not m[1]:  # suffix: the last N bytes
        n = _position(m[2])
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"range {quoted} selects no bytes", size=size)
        return max(0, size - n), size - 1
    start = _position(m[1])
    end = _position(m[2]) if m[2] else None
    if end is not None and end < start:
        raise RangeNotSatisfiable(f"range {quoted} ends before it starts", size=size)
    if start >= size:
        raise RangeNotSatisfiable(f"range {quoted} starts beyond {size} bytes", size=size)
    return start, size - 1 if end is None else min(end, size - 1)


_BEYOND_ANY_OBJECT = 10**19  # more than any object's size (S3's limit is 5 TiB)


def _position(digits: str) -> int:
    """A byte position; one of more than 19 digits is past the end of any object."""
    digits = digits.lstrip("0") or "0"
    return _BEYOND_ANY_OBJECT if len(digits) > 19 else int(digits)


def requested_range(
    header: str | None, if_range: str | None, etag: str | None, size: int
) -> tuple[int, int] | None:
    """The byte range a request gets (None: the whole object), after If-Range: the range
    applies only while the client's validator is still this object's strong ETag."""
    if header and if_range and etag and if_range.strip() != f'"{etag}"':
        return None
    return parse_range_header(header, size)


# --- the factory --------------------------------------------------------------------------


def open_store(settings: Settings) -> ObjectStore:
    """The store `settings` ask for. The S3 bucket is created (with Object Lock, hence
    versioning) if it does not exist yet."""
    backend = settings.storage_backend.lower()
    if backend == "local":
        from evidence.storage.local import LocalStore

        return LocalStore(settings)
    if backend == "s3":
        from evidence.storage.s3 import S3Store

        return S3Store(settings)
    raise InvalidInput(f"EVIDENCE_STORAGE_BACKEND must be 'local' or 's3', not {backend!r}")


__all__ = [
    "CHUNK",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "HashingReader",
    "ObjectInfo",
    "Fetched",
    "ObjectStore",
    "PartInfo",
    "PlannedPart",
    "StoreBase",
    "StoredObject",
    "open_store",
    "original_key",
    "parse_range_header",
    "requested_range",
    "plan_parts",
    "select_parts",
    "sha256_chunks",
    "sha256_stream",
    "validate_key",
]
