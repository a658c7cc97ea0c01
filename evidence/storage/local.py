"""The embedded profile's object store: a directory that keeps S3's semantics.

Layout under the store root (`settings.resolved_storage_dir()`):

    {key}           the object's bytes; write-once objects are read-only (0444)
    .meta/{key}     a JSON record: sha256, size, write_once, retention, legal hold
    .tmp/           staging files (same filesystem, so installing is a rename or link)
    .multipart/{upload_id}/upload        a multipart upload: JSON {key, initiated}; flock'ed
                                         around every change to that upload
    .multipart/{upload_id}/{n:05d}       part n's record: JSON {size, etag, data}
    .multipart/{upload_id}/{n:05d}.{hex} part n's bytes (the file its record names)
    .lock           flock'ed around every change of state, across threads and processes

Keys never start a segment with '.', so they cannot reach `.meta`, `.tmp`, `.multipart` or
`.lock`.

Multipart parts are spooled to `.tmp`, renamed into the upload's directory under a fresh name,
and only then does the part's record (atomically replaced) point at them: a half-sent part
never counts, and a crash leaves at worst an unreferenced file, removed with the upload.
Completing joins the parts into a `.tmp` file (hashing on the way) and installs it like a
plain put; the upload's directory is renamed away before it is removed, so an upload is
always either whole or gone.

Crash safety: bytes are written to `.tmp`, fsync'ed, then renamed (plain put) or hard-linked
(write-once: `link` fails if the name exists, an atomic put-if-absent) into place, and the
directory is fsync'ed. The metadata record is always removed *before* new bytes are installed
and written after, so a crash can leave an object without a record (its sha256 then reads as
unknown and is recomputed when needed) but never a record that describes other bytes.

Retention and legal hold are enforced by this code, not by the filesystem: anyone with shell
access can still delete files, which is why `supports_object_lock` is False here.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import ctypes
import datetime as dt
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import stat as stat_mod
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from evidence import clock
from evidence.config import Settings
from evidence.errors import (
    AccessDenied,
    EvidenceError,
    HashMismatch,
    InvalidInput,
    ObjectLocked,
    ObjectNotFound,
    TooLarge,
    UploadNotFound,
    WriteOnceViolation,
)
from evidence.keyfiles import create_once, read_private
from evidence.storage import (
    CHUNK,
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    Fetched,
    HashingReader,
    ObjectInfo,
    ObjectWriter,
    PartInfo,
    StoreBase,
    StoredObject,
    clamp_range,
    original_key,
    select_parts,
    validate_expiry,
    validate_key,
    validate_multipart_key,
    validate_part_number,
    validate_prefix,
    validate_retain_until,
    validate_sha256,
    validate_upload_id,
)

PRESIGN_KEY_FILE = "presign.key"
OBJECTS_ROUTE = "/api/v1/objects/"  # served by api/routes/objects.py
_SIGNED_METHODS = ("GET", "PUT")
_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
_UPLOAD_RECORD = "upload"
_LOCAL_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")  # what create_multipart issues (uuid4 hex)
_PART_RECORD = re.compile(r"\d{5}")
_IN_PLACE = "object"  # parts sent with an offset are written here, the object-to-be
_WRITING = "writing"  # flock'ed shared by in-place part writers, exclusive by completion
_SEALED = "sealed"  # completion has begun: no part may be written any more
_PART_NUMBER_PARAM = re.compile(r"[1-9]\d{0,4}")  # canonical decimal, as presign_part writes it
_SIZE_PARAM = re.compile(r"0|[1-9]\d{0,10}")
_OFFSET_PARAM = re.compile(r"0|[1-9]\d{0,12}")  # below 5 TiB, S3's largest object


@dataclass
class _Meta:
    """The sidecar record of one object."""

    sha256: str | None
    size: int
    write_once: bool = False
    retain_until: dt.datetime | None = None
    retention_mode: str | None = None
    legal_hold: bool = False

    def locked(self) -> bool:
        return self.legal_hold or (
            self.retain_until is not None and self.retain_until > clock.now()
        )

    def to_json(self) -> bytes:
        d = asdict(self)
        d["retain_until"] = self.retain_until.isoformat() if self.retain_until else None
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> _Meta:
        d = json.loads(raw)
        until = d.get("retain_until")
        return cls(
            sha256=d.get("sha256"),
            size=int(d["size"]),
            write_once=bool(d.get("write_once")),
            retain_until=dt.datetime.fromisoformat(until) if until else None,
            retention_mode=d.get("retention_mode"),
            legal_hold=bool(d.get("legal_hold")),
        )


class LocalStore(StoreBase):
    supports_object_lock = False

    def __init__(self, settings: Settings):
        self.root = settings.resolved_storage_dir()
        self._meta_root = self.root / ".meta"
        self._tmp_root = self.root / ".tmp"
        self._uploads_root = self.root / ".multipart"
        self._lock_file = self.root / ".lock"
        # 0700: the footage is nobody else's business on a shared machine, whatever the
        # file modes inside (write-once objects are 0444).
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._meta_root.mkdir(exist_ok=True, mode=0o700)
        self._tmp_root.mkdir(exist_ok=True, mode=0o700)
        self._uploads_root.mkdir(exist_ok=True, mode=0o700)
        mode = settings.object_lock_mode.upper()
        if mode not in _LOCK_MODES:
            raise InvalidInput(f"EVIDENCE_OBJECT_LOCK_MODE must be one of {_LOCK_MODES}")
        self._lock_mode = mode
        self._public_url = settings.public_url.rstrip("/")
        self._secret = load_or_create_secret(settings.secrets_dir() / PRESIGN_KEY_FILE)

    # --- writing --------------------------------------------------------------------------

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        expected_sha256: str | None = None,
        write_once: bool = False,
        retain_until: dt.datetime | None = None,
        content_md5: str | None = None,
    ) -> StoredObject:
        """`content_md5`: a presigned PUT's Content-MD5 header (local store only): a body that
        does not match it is refused (HashMismatch) and leaves the key as it was."""
        key = validate_key(key)
        expected = validate_sha256(expected_sha256) if expected_sha256 is not None else None
        retain_until = validate_retain_until(retain_until)
        staged = self._staging_path()
        try:
            md5 = _Md5Reader(stream)
            sha, size = self._spool(md5, staged)  # type: ignore[arg-type]
            _check_content_md5(content_md5, md5.hexdigest())
            if expected is not None and sha != expected:
                raise HashMismatch(
                    f"{key}: received bytes hash to {sha}, expected {expected}",
                    expected=expected,
                    actual=sha,
                )
            return self._install(staged, key, sha, size, write_once, retain_until)
        finally:
            staged.unlink(missing_ok=True)

    @contextmanager
    def writing(self, key: str) -> Iterator[ObjectWriter]:
        """Bytes written straight into a staging file beside the objects (same filesystem),
        hashed on the way, then fsync'ed and renamed to `key`: one write of every byte, no
        copy. An error in the block removes the staging file and leaves `key` as it was."""
        key = validate_key(key)
        with self._locked():
            self._check_replaceable(key)  # refuse now, not after writing a GiB
        staged = self._staging_path()
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                writer = ObjectWriter(f.write)
                yield writer
                f.flush()
                os.fsync(f.fileno())
            self._install(staged, key, writer.sha256, writer.size, False, None)
        finally:
            staged.unlink(missing_ok=True)

    def promote(
        self,
        src_key: str,
        sha256: str,
        *,
        retain_until: dt.datetime | None = None,
        fetched: Fetched | None = None,  # not needed: the pin below is hashed in place
    ) -> StoredObject:
        """Move verified bytes (e.g. `incoming/{id}`) to `originals/{sha256}`.

        The source is pinned with a hard link and re-hashed through the pin, so what becomes
        the original is exactly what hashed to `sha256`, even if a new upload replaces the
        source meanwhile (that new upload is then left in place).
        """
        src = validate_key(src_key)
        sha = validate_sha256(sha256)
        key = original_key(sha)
        retain_until = validate_retain_until(retain_until)
        src_meta = self._load(src)
        if src_meta is None:
            return self._already_promoted(src, key, sha, retain_until)
        if src_meta.locked():
            raise ObjectLocked(f"{src} is under retention or legal hold; it cannot be moved")
        pin = self._staging_path()
        try:
            try:
                os.link(self._path(src), pin)
            except FileNotFoundError:  # removed since we looked: maybe a concurrent promote
                return self._already_promoted(src, key, sha, retain_until)
            actual, size = _hash_file(pin)
            if actual != sha:
                raise HashMismatch(
                    f"{src}: bytes hash to {actual}, expected {sha}; not promoted",
                    expected=sha,
                    actual=actual,
                )
            result = self._install(pin, key, sha, size, True, retain_until)
            self._remove_if_pinned(src, pin)
            return result
        finally:
            pin.unlink(missing_ok=True)

    def _already_promoted(
        self, src: str, key: str, sha: str, retain_until: dt.datetime | None
    ) -> StoredObject:
        """A repeated promote finds no source but the original: that is success."""
        with self._locked():
            meta = self._load(key, need_sha=True)
            if meta is None or meta.sha256 != sha:
                raise ObjectNotFound(f"{src} does not exist and {key} was not promoted")
            self._extend(key, meta, retain_until)
            return StoredObject(key, sha, meta.size)

    def _install(
        self,
        staged: Path,
        key: str,
        sha: str | None,
        size: int,
        write_once: bool,
        retain_until: dt.datetime | None,
    ) -> StoredObject:
        """Put verified staged bytes at `key`, honouring write-once and locks. `sha` None:
        bytes adopted unhashed (a multipart upload's in-place parts); never write-once."""
        path = self._path(key)
        with self._locked():
            current = self._load(key, need_sha=True)
            if current is not None:
                if write_once or current.write_once:
                    if current.sha256 != (sha or _hash_file(staged)[0]):
                        raise WriteOnceViolation(
                            f"{key} already holds different bytes (sha256 {current.sha256})"
                        )
                    self._extend(key, current, retain_until)
                    return StoredObject(key, sha, current.size)
                if current.locked():
                    raise ObjectLocked(f"{key} is under retention or legal hold")
            if path.is_dir():
                raise InvalidInput(f"{key}: objects exist below this key")
            self._make_parents(path)
            self._make_parents(self._meta_path(key))
            self._drop_meta(key)  # no old or orphaned record may describe the new bytes
            if write_once:
                os.chmod(staged, 0o444)
                _link_new(staged, path)
            else:
                os.chmod(staged, 0o640)
                _replace(staged, path)
            _fsync_dir(path.parent)
            meta = _Meta(
                sha256=sha,
                size=size,
                write_once=write_once,
                retain_until=retain_until,
                retention_mode=self._lock_mode if retain_until else None,
            )
            self._write_meta(key, meta)
        return StoredObject(key, sha or "", size)

    def _extend(self, key: str, meta: _Meta, until: dt.datetime | None) -> None:
        """Idempotent re-puts may lengthen retention (never shorten); also repairs a record
        lost in a crash. Caller holds the lock."""
        if until is not None and (meta.retain_until is None or until > meta.retain_until):
            meta.retain_until = until
            meta.retention_mode = meta.retention_mode or self._lock_mode
        self._write_meta(key, meta)

    def _remove_if_pinned(self, src: str, pin: Path) -> None:
        """Remove `src` only if it still is the file we verified (same inode as the pin)."""
        path = self._path(src)
        with self._locked():
            try:
                same = os.stat(path).st_ino == os.stat(pin).st_ino
            except FileNotFoundError:
                return
            meta = self._load(src)
            if not same or meta is None or meta.locked():
                return
            path.unlink()
            _fsync_dir(path.parent)
            self._drop_meta(src)
            self._prune(path.parent, self.root)

    # --- multipart uploads ----------------------------------------------------------------

    def create_multipart(self, key: str) -> str:
        key = validate_multipart_key(key)
        with self._locked():
            self._check_replaceable(key)
        upload_id = uuid.uuid4().hex
        # Built aside and renamed into place: an upload directory is never half made.
        building = self._staging_path()
        building.mkdir(mode=0o700)
        try:
            record = {"key": key, "initiated": clock.now().isoformat()}
            _write_new(building / _UPLOAD_RECORD, json.dumps(record).encode())
            _fsync_dir(building)
            os.rename(building, self._uploads_root / upload_id)
            _fsync_dir(self._uploads_root)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        return upload_id

    def put_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        stream: BinaryIO,
        *,
        content_md5: str | None = None,
        max_size: int = MAX_PART_SIZE,
        offset: int | None = None,
    ) -> PartInfo:
        """Store one part (the body of a presigned part PUT), replacing an earlier one.

        `content_md5` is the request's Content-MD5 header: a body that does not match it is
        refused (HashMismatch), as S3 refuses it (BadDigest). A body longer than `max_size`
        (the URL's signed size) is refused (TooLarge) as soon as it is, keeping nothing.
        `offset` (signed into the URL by presign_part): the part's place in the object; its
        bytes are then written there, into the file completing will install, not joined.
        """
        key = validate_multipart_key(key)
        number = validate_part_number(part_number)
        limit = min(max_size, MAX_PART_SIZE)
        if offset is not None:
            return self._put_part_in_place(
                key, upload_id, number, stream, offset, limit, content_md5
            )
        self._upload_dir(key, upload_id)  # fail before reading a body nobody will keep
        staged = self._staging_path()
        try:
            etag, size = _spool_part(stream, staged, limit)
            _check_content_md5(content_md5, etag)
            with self._upload_locked(key, upload_id) as updir:
                self._install_part(updir, number, staged, etag, size)
        finally:
            staged.unlink(missing_ok=True)
        return PartInfo(number, size, etag)

    def _install_part(self, updir: Path, number: int, staged: Path, etag: str, size: int) -> None:
        """Make `staged` part `number`: bytes in under a fresh name, then the record switched
        to them, then the previous bytes dropped. Caller holds the upload's lock."""
        name = f"{number:05d}"
        data = updir / f"{name}.{uuid.uuid4().hex}"
        os.rename(staged, data)
        previous = _read_part_record(updir / name)
        record = {"size": size, "etag": etag, "data": data.name}
        self._write_atomic(updir / name, json.dumps(record).encode())
        if previous is not None and previous[1] != data and previous[2] is None:
            previous[1].unlink(missing_ok=True)

    def _put_part_in_place(
        self,
        key: str,
        upload_id: str,
        number: int,
        stream: BinaryIO,
        offset: int,
        limit: int,
        content_md5: str | None,
    ) -> PartInfo:
        """Write part `number` straight into the upload's object file at `offset`: no join
        copy at completion (on ext4 that copy costs a second write of the whole clip).

        The part's record is dropped before its bytes are overwritten and written again only
        once they are all in, fsync'ed and match Content-MD5: a half-sent or refused part is
        simply missing, never counted. One writer per part at a time (its own flock), and
        every writer holds the upload's write lock shared, which completion takes exclusive
        after sealing the upload: nothing writes into an object once it is being installed.
        """
        updir = self._upload_dir(key, upload_id)
        name = f"{number:05d}"
        gone = UploadNotFound(f"no multipart upload {upload_id} for {key}")
        try:
            with _flocked(updir / _WRITING, fcntl.LOCK_SH), _flocked(updir / f"{name}.lock"):
                # Completed (or being completed) or aborted while this request waited.
                if (updir / _SEALED).exists() or not (updir / _UPLOAD_RECORD).exists():
                    raise gone
                return self._write_part(updir, name, number, stream, offset, limit, content_md5)
        except (FileNotFoundError, NotADirectoryError):
            raise gone from None  # aborted while the part was being written

    def _write_part(
        self,
        updir: Path,
        name: str,
        number: int,
        stream: BinaryIO,
        offset: int,
        limit: int,
        content_md5: str | None,
    ) -> PartInfo:
        """The body of _put_part_in_place; the caller holds the part's lock."""
        # Dropped before its bytes are overwritten: the record never vouches for a mix.
        previous = _read_part_record(updir / name)
        (updir / name).unlink(missing_ok=True)
        if previous is not None and previous[2] is None:
            previous[1].unlink(missing_ok=True)
        data = updir / _IN_PLACE
        if not data.exists():
            # Its name made durable before any record names bytes in it (records are).
            with contextlib.suppress(FileExistsError):  # another part's writer was first
                _write_new(data, b"")
            _fsync_dir(updir)
        etag, size = _write_at(stream, data, offset, limit)
        try:
            _check_content_md5(content_md5, etag)
        except HashMismatch:
            _discard(data, offset, size)
            raise
        record = {"size": size, "etag": etag, "data": _IN_PLACE, "offset": offset}
        self._write_atomic(updir / name, json.dumps(record).encode())
        return PartInfo(number, size, etag)

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        key = validate_multipart_key(key)
        with self._upload_locked(key, upload_id) as updir:
            return [part for part, _, _ in _held_parts(updir)]

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo] | None = None
    ) -> ObjectInfo:
        """Join the parts into `key` (streamed, hashed on the way) and drop the upload.

        The upload's lock is held throughout, so no part can change while it is joined (a
        part PUT meanwhile waits, then finds the upload gone: 404).
        """
        key = validate_multipart_key(key)
        with self._upload_locked(key, upload_id) as updir:
            # Sealed, then every in-place writer waited for: no byte changes from here on.
            (updir / _SEALED).touch()
            try:
                with _flocked(updir / _WRITING):
                    pass
                held = _held_parts(updir)
                chosen = select_parts([part for part, _, _ in held], parts)
                with self._locked():  # learn about a write-once/locked key before joining GiBs
                    self._check_replaceable(key)
                where = {part.number: (path, offset) for part, path, offset in held}
                sources = [(where[p.number][0], where[p.number][1], p.size) for p in chosen]
                sha, size = self._join_or_adopt(key, updir, sources)
            except BaseException:
                (updir / _SEALED).unlink(missing_ok=True)  # the upload stays open
                raise
            self._drop_upload(updir)
        return ObjectInfo(key, size, sha, retain_until=None, retention_mode=None, legal_hold=False)

    def _join_or_adopt(
        self, key: str, updir: Path, sources: builtins.list[tuple[Path, int | None, int]]
    ) -> tuple[str | None, int]:
        """Install the chosen parts at `key`: (sha256 or None, size).

        Parts written in place that tile the object from byte 0 are adopted: their file is
        installed as it is, unhashed (the worker's promote hashes it anyway). Anything else
        is joined into a new file, hashed on the way.
        """
        expected = 0
        for path, offset, length in sources:
            if path.name != _IN_PLACE or offset != expected:
                break
            expected += length
        else:
            data = updir / _IN_PLACE
            if not sources or not data.exists():
                data.touch()
            os.truncate(data, expected)  # a longer part sent earlier may have left a tail
            _fsync_file(data)
            self._install(data, key, None, expected, False, None)
            return None, expected
        staged = self._staging_path()
        try:
            sha, size = _join(sources, staged)
            self._install(staged, key, sha, size, False, None)
        finally:
            staged.unlink(missing_ok=True)
        return sha, size

    def abort_multipart(self, key: str, upload_id: str) -> None:
        key = validate_multipart_key(key)
        try:
            with self._upload_locked(key, upload_id) as updir:
                self._drop_upload(updir)
        except UploadNotFound:
            pass  # already gone: aborting is idempotent

    def _upload_dir(self, key: str, upload_id: str) -> Path:
        """The directory of `key`'s upload `upload_id`, or UploadNotFound."""
        upload_id = validate_upload_id(upload_id)
        missing = UploadNotFound(f"no multipart upload {upload_id} for {key}")
        if not _LOCAL_UPLOAD_ID.fullmatch(upload_id):  # also what keeps it a plain file name
            raise missing
        updir = self._uploads_root / upload_id
        try:
            record = json.loads((updir / _UPLOAD_RECORD).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            raise missing from None
        if record.get("key") != key:  # an upload id is only good with its own key (as S3)
            raise missing
        return updir

    @contextmanager
    def _upload_locked(self, key: str, upload_id: str) -> Iterator[Path]:
        """Hold the upload's own lock (not the store's: joining a big upload must not stall
        every other write). Yields the upload's directory."""
        updir = self._upload_dir(key, upload_id)
        try:
            fd = os.open(updir / _UPLOAD_RECORD, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(f"no multipart upload {upload_id} for {key}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Completed or aborted while we waited: the file we locked is no longer there.
            try:
                current = os.stat(updir / _UPLOAD_RECORD).st_ino
            except (FileNotFoundError, NotADirectoryError):
                current = None
            if current != os.fstat(fd).st_ino:
                raise UploadNotFound(f"no multipart upload {upload_id} for {key}")
            yield updir
        finally:
            os.close(fd)  # releases the lock

    def _drop_upload(self, updir: Path) -> None:
        """Remove an upload: renamed away first (atomic), so it is whole or gone, never a
        half-removed set of parts. Caller holds the upload's lock."""
        doomed = self._staging_path()
        os.rename(updir, doomed)
        _fsync_dir(self._uploads_root)
        shutil.rmtree(doomed, ignore_errors=True)

    def _check_replaceable(self, key: str) -> None:
        """Refuse a target a plain put could not replace. Caller holds the store lock."""
        meta = self._load(key)
        if meta is not None and meta.write_once:
            raise WriteOnceViolation(f"{key} is write-once; a multipart upload cannot replace it")
        if meta is not None and meta.locked():
            raise ObjectLocked(f"{key} is under retention or legal hold")
        path = self._path(key)
        if path.is_dir():
            raise InvalidInput(f"{key}: objects exist below this key")
        for parent in path.parents:
            if parent == self.root:
                break
            if parent.is_file():
                raise InvalidInput(
                    f"{key}: {parent.relative_to(self.root)} is already an object "
                    "(the local store cannot hold both 'a' and 'a/b')"
                )

    # --- reading --------------------------------------------------------------------------

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key}") from None
        try:
            begin, stop = clamp_range(start, end, os.fstat(f.fileno()).st_size)
            f.seek(begin)
        except BaseException:
            f.close()
            raise
        return _read_chunks(f, stop - begin)

    def object_path(self, key: str) -> Path:
        """The file holding `key`'s bytes, for a server that reads them itself (a viewing's
        Range requests, api/viewing.py, or nginx behind X-Accel-Redirect). Read only."""
        return self._path(key)

    def stat(self, key: str) -> ObjectInfo:
        key = validate_key(key)
        meta = self._load(key)
        if meta is None:
            raise ObjectNotFound(f"no object {key}")
        return _info(key, meta)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def local_file(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key}")
        return path

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order (as S3 lists them)."""
        prefix = validate_prefix(prefix)
        head = prefix.rpartition("/")[0]
        base = self.root.joinpath(*head.split("/")) if head else self.root
        yield from self._walk(base, f"{head}/" if head else "", prefix)

    def _walk(self, directory: Path, key_prefix: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = [e for e in os.scandir(directory) if not e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting a directory's names with "/" after subdirectories gives S3's key order.
        entries.sort(key=lambda e: e.name + ("/" if e.is_dir(follow_symlinks=False) else ""))
        for entry in entries:
            key = key_prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                sub = key + "/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    yield from self._walk(Path(entry.path), sub, prefix)
            elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                meta = self._load(key)
                if meta is not None:  # deleted while we walked
                    yield _info(key, meta)

    # --- deleting and locking -------------------------------------------------------------

    def delete(self, key: str) -> None:
        key = validate_key(key)
        path = self._path(key)
        with self._locked():
            meta = self._load(key)
            if meta is None:
                self._drop_meta(key)  # an orphaned record, if a crash left one
                return
            if meta.locked():
                raise ObjectLocked(f"{key} is under retention or legal hold; not deleted")
            path.unlink()
            _fsync_dir(path.parent)
            self._drop_meta(key)
            self._prune(path.parent, self.root)

    def set_retention(self, key: str, until: dt.datetime) -> None:
        key = validate_key(key)
        until = validate_retain_until(until)
        assert until is not None
        with self._locked():
            meta = self._load(key, need_sha=True)
            if meta is None:
                raise ObjectNotFound(f"no object {key}")
            if meta.retain_until is not None and until < meta.retain_until:
                raise ObjectLocked(
                    f"{key} is retained until {meta.retain_until.isoformat()}; "
                    "retention can be extended, never shortened"
                )
            meta.retain_until = until
            meta.retention_mode = meta.retention_mode or self._lock_mode
            self._write_meta(key, meta)

    def set_legal_hold(self, key: str, on: bool) -> None:
        key = validate_key(key)
        with self._locked():
            meta = self._load(key, need_sha=True)
            if meta is None:
                raise ObjectNotFound(f"no object {key}")
            meta.legal_hold = bool(on)
            self._write_meta(key, meta)

    # --- presigned URLs -------------------------------------------------------------------

    def presign_put(self, key: str, expires: dt.timedelta) -> str:
        return self._presign("PUT", key, expires)

    def presign_get(self, key: str, expires: dt.timedelta) -> str:
        return self._presign("GET", key, expires)

    def _presign(self, method: str, key: str, expires: dt.timedelta) -> str:
        key = validate_key(key)
        deadline = int((clock.now() + validate_expiry(expires)).timestamp())
        query = urlencode(
            {"method": method, "expires": deadline, "signature": self._sign(method, key, deadline)}
        )
        return f"{self._public_url}{OBJECTS_ROUTE}{quote(key, safe='/')}?{query}"

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
        key = validate_multipart_key(key)
        upload_id = validate_upload_id(upload_id)
        number = validate_part_number(part_number)
        deadline = int((clock.now() + validate_expiry(expires)).timestamp())
        size = None if max_size is None else str(_validate_max_size(max_size))
        if offset is not None and size is None:
            # Unbounded, a part written in place could run into the next part's bytes.
            raise InvalidInput("a part URL with an offset must also bound the part's size")
        at = None if offset is None else str(_validate_offset(offset))
        signature = self._sign_part(key, upload_id, str(number), deadline, size, at)
        params: dict[str, object] = {
            "method": "PUT",
            "uploadId": upload_id,
            "partNumber": number,
            "expires": deadline,
        }
        if size is not None:
            params["size"] = size
        if at is not None:
            params["offset"] = at
        params["signature"] = signature
        return f"{self._public_url}{OBJECTS_ROUTE}{quote(key, safe='/')}?{urlencode(params)}"

    def verify_presigned(self, key: str, method: str, expires: object, signature: object) -> None:
        """Accept a presigned request or raise AccessDenied (bad signature, or expired)."""
        if method not in _SIGNED_METHODS:
            raise AccessDenied("not a valid presigned URL")
        deadline = _deadline(expires)
        self._check_signature(self._sign(method, key, deadline), signature, deadline)

    def verify_presigned_part(
        self,
        key: str,
        upload_id: object,
        part_number: object,
        expires: object,
        signature: object,
        size: object = None,
        offset: object = None,
    ) -> tuple[str, int, int | None, int | None]:
        """Accept a presigned part PUT or raise AccessDenied; returns (upload id, part number,
        the most bytes the part may hold or None when the URL set no bound, the part's offset
        in the object or None when the URL gave none).

        Only the exact strings presign_part writes are accepted, so that the signed message
        (fields separated by newlines) can be read one way only.
        """
        if not (
            isinstance(upload_id, str)
            and _is_upload_id(upload_id)
            and isinstance(part_number, str)
            and _PART_NUMBER_PARAM.fullmatch(part_number)
            and (size is None or (isinstance(size, str) and _SIZE_PARAM.fullmatch(size)))
            and (offset is None or (size is not None and _is_offset(offset)))
        ):
            raise AccessDenied("not a valid presigned part URL")
        deadline = _deadline(expires)
        expected = self._sign_part(key, upload_id, part_number, deadline, size, offset)
        self._check_signature(expected, signature, deadline)
        return (
            upload_id,
            int(part_number),
            None if size is None else int(size),
            None if offset is None else int(offset),
        )

    @staticmethod
    def _check_signature(expected: str, signature: object, deadline: int) -> None:
        if not isinstance(signature, str):
            raise AccessDenied("not a valid presigned URL")
        # Constant-time comparison: the signature must not leak byte by byte.
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise AccessDenied("presigned URL signature does not match")
        if clock.now().timestamp() > deadline:
            raise AccessDenied("presigned URL has expired")

    def _sign(self, method: str, key: str, deadline: int) -> str:
        # Keys contain no control characters (validate_key), so "\n" separates unambiguously.
        msg = f"evidence-presign-v1\n{method}\n{key}\n{deadline}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def _sign_part(
        self,
        key: str,
        upload_id: str,
        part_number: str,
        deadline: int,
        size: str | None = None,
        offset: str | None = None,
    ) -> str:
        # Its own prefix: a plain PUT URL's signature can never pass as a part URL's (or the
        # reverse), and upload id and part number are covered: part 3's URL is not part 4's.
        # A bounded URL signs its size under another prefix, so dropping `size` from the
        # query cannot turn it into an unbounded one.
        msg = f"evidence-presign-part-v1\nPUT\n{key}\n{deadline}\n{upload_id}\n{part_number}"
        if size is not None:
            msg = (
                f"evidence-presign-part-v2\nPUT\n{key}\n{deadline}\n{upload_id}\n"
                f"{part_number}\n{size}"
            )
        if offset is not None:  # v3: where the part goes, so that dropping it is refused too
            msg = (
                f"evidence-presign-part-v3\nPUT\n{key}\n{deadline}\n{upload_id}\n"
                f"{part_number}\n{size}\n{offset}"
            )
        return hmac.new(self._secret, msg.encode(), hashlib.sha256).hexdigest()

    # --- internals ------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*validate_key(key).split("/"))
        # Belt and braces behind validate_key: the path must stay inside the root.
        if os.path.commonpath([self.root, path]) != str(self.root):
            raise InvalidInput(f"object key {key!r} escapes the store")
        return path

    def _meta_path(self, key: str) -> Path:
        return self._meta_root.joinpath(*key.split("/"))

    def _staging_path(self) -> Path:
        return self._tmp_root / uuid.uuid4().hex

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # A fresh open file description per use, so flock also serializes this process's
        # own threads, not just separate processes.
        with open(self._lock_file, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _spool(self, stream: BinaryIO, staged: Path) -> tuple[str, int]:
        """Copy `stream` to `staged` chunk by chunk, hashing on the way, and fsync it."""
        reader = HashingReader(stream)
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            while chunk := reader.read(CHUNK):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        return reader.hexdigest(), reader.size

    def _load(self, key: str, *, need_sha: bool = False) -> _Meta | None:
        """The object's record, or None if there is no object. A missing record (crash) is
        rebuilt from the file; its sha256 is recomputed only when `need_sha`."""
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        try:
            meta = _Meta.from_json(self._meta_path(key).read_bytes())
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError, KeyError):
            # Only write-once objects are ever made read-only, so the mode still tells.
            meta = _Meta(sha256=None, size=st.st_size, write_once=not st.st_mode & 0o222)
        meta.size = st.st_size
        if need_sha and meta.sha256 is None:
            meta.sha256, _ = _hash_file(path)
        return meta

    def _write_meta(self, key: str, meta: _Meta) -> None:
        target = self._meta_path(key)
        self._make_parents(target)
        self._write_atomic(target, meta.to_json())

    def _write_atomic(self, target: Path, payload: bytes) -> None:
        """Replace `target` with `payload`: readers see the old bytes or the new, never half."""
        staged = self._staging_path()
        try:
            _write_new(staged, payload)
            _replace(staged, target)
            _fsync_dir(target.parent)
        finally:
            staged.unlink(missing_ok=True)

    def _drop_meta(self, key: str) -> None:
        target = self._meta_path(key)
        try:
            target.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        _fsync_dir(target.parent)
        self._prune(target.parent, self._meta_root)

    def _make_parents(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidInput(
                f"{path.relative_to(self.root)}: a parent segment is already an object "
                "(the local store cannot hold both 'a' and 'a/b')"
            ) from None

    @staticmethod
    def _prune(directory: Path, stop: Path) -> None:
        """Remove directories left empty by a delete, up to (not including) `stop`."""
        while directory != stop and stop in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


def _info(key: str, meta: _Meta) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=meta.size,
        sha256=meta.sha256,
        retain_until=meta.retain_until,
        retention_mode=meta.retention_mode if meta.retain_until else None,
        legal_hold=meta.legal_hold,
    )


def _read_chunks(f: BinaryIO, remaining: int) -> Iterator[bytes]:
    with f:
        while remaining > 0:
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def _write_new(path: Path, payload: bytes) -> None:
    """Create `path` (it must not exist) holding `payload`, fsync'ed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def _validate_max_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_PART_SIZE:
        raise InvalidInput(f"a part's size bound must be 0..{MAX_PART_SIZE} bytes, not {size!r}")
    return size


def _is_offset(offset: object) -> bool:
    return isinstance(offset, str) and _OFFSET_PARAM.fullmatch(offset) is not None


def _validate_offset(offset: int) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < MAX_OBJECT_SIZE:
        raise InvalidInput(f"a part's offset must be 0..{MAX_OBJECT_SIZE - 1}, not {offset!r}")
    return offset


def _deadline(expires: object) -> int:
    try:
        return int(str(expires))
    except ValueError:
        raise AccessDenied("not a valid presigned URL") from None


def _is_upload_id(upload_id: str) -> bool:
    try:
        validate_upload_id(upload_id)
    except InvalidInput:
        return False
    return True


def _spool_part(stream: BinaryIO, staged: Path, limit: int) -> tuple[str, int]:
    """Copy a part's bytes to `staged` chunk by chunk; (MD5 hex = its ETag, size).

    MD5 because that is S3's part ETag, so a client can check either backend the same way.
    More than `limit` bytes is refused, as S3 refuses more than 5 GiB (EntityTooLarge).
    """
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"this part may hold at most {limit} bytes")
            md5.update(chunk)
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return md5.hexdigest(), size


class _Md5Reader:
    """Passes reads through, keeping the MD5 of everything read (for Content-MD5)."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._md5 = hashlib.md5(usedforsecurity=False)

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._md5.update(data)
        return data

    def hexdigest(self) -> str:
        return self._md5.hexdigest()


def _check_content_md5(header: str | None, md5_hex: str) -> None:
    """A part PUT's Content-MD5 (base64 of the 16-byte digest) must match its body."""
    if header is None:
        return
    try:
        claimed = base64.b64decode(header.strip(), validate=True)
    except binascii.Error:
        claimed = b""
    if len(claimed) != 16:
        raise InvalidInput(f"Content-MD5 {header!r} is not a base64 MD5 digest")
    if claimed.hex() != md5_hex:
        raise HashMismatch(
            f"the part's bytes hash to MD5 {md5_hex}, Content-MD5 said {claimed.hex()}",
            expected=claimed.hex(),
            actual=md5_hex,
        )


def _read_part_record(record: Path) -> tuple[PartInfo, Path, int | None] | None:
    """A part's record: (its PartInfo, the file holding its bytes, where in that file they
    start: None for a file of its own), or None if absent."""
    try:
        d = json.loads(record.read_bytes())
    except FileNotFoundError:
        return None
    number = int(record.name)
    part = PartInfo(number, int(d["size"]), str(d["etag"]))
    offset = d.get("offset")
    return part, record.with_name(d["data"]), None if offset is None else int(offset)


def _held_parts(updir: Path) -> list[tuple[PartInfo, Path, int | None]]:
    """Every part an upload holds, by number. Caller holds the upload's lock."""
    held = []
    for name in sorted(os.listdir(updir)):
        if _PART_RECORD.fullmatch(name):
            part = _read_part_record(updir / name)
            if part is not None:
                held.append(part)
    return held


def _join(sources: Sequence[tuple[Path, int | None, int]], staged: Path) -> tuple[str, int]:
    """Concatenate (file, offset, length) pieces into a new file `staged`, CHUNK by CHUNK;
    (SHA-256 hex, size)."""
    h = hashlib.sha256()
    size = 0
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        for path, offset, length in sources:
            with open(path, "rb") as part:
                part.seek(offset or 0)
                remaining = length
                while remaining > 0 and (chunk := part.read(min(CHUNK, remaining))):
                    remaining -= len(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest(), size


def _write_at(stream: BinaryIO, path: Path, offset: int, limit: int) -> tuple[str, int]:
    """Write a part's bytes into `path` from `offset`, CHUNK by CHUNK, and fdatasync them;
    (MD5 hex = its ETag, size). More than `limit` bytes is refused (TooLarge)."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        while chunk := stream.read(CHUNK):
            if size + len(chunk) > limit:
                raise TooLarge(f"this part may hold at most {limit} bytes")
            md5.update(chunk)
            view = memoryview(chunk)
            while view:
                written = os.pwrite(fd, view, offset + size)
                size += written
                view = view[written:]
        os.fdatasync(fd)
    except BaseException:
        _punch_hole(fd, offset, size)
        raise
    finally:
        os.close(fd)
    return md5.hexdigest(), size


def _discard(path: Path, offset: int, length: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        _punch_hole(fd, offset, length)
    finally:
        os.close(fd)


_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """Give back the disk space of a refused part's bytes (fallocate(2) PUNCH_HOLE): a part
    that met a full disk must not keep the disk full for everyone else (a worker recording
    another clip, say). Best effort: a filesystem without it keeps the bytes until the
    upload is completed or aborted."""
    if length <= 0:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fallocate(
            fd,
            _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE,
            ctypes.c_int64(offset),
            ctypes.c_int64(length),
        )
    except (OSError, AttributeError):
        pass


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _flocked(path: Path, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
    """Hold flock(2) `mode` on `path` (created if missing). A fresh open file description
    each time, so it also keeps this process's own threads apart."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except (FileNotFoundError, NotADirectoryError):  # the upload's directory is gone
        raise UploadNotFound(f"no multipart upload at {path.parent.name}") from None
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _link_new(src: Path, dst: Path) -> None:
    """Atomic put-if-absent."""
    try:
        os.link(src, dst)
    except FileExistsError:
        if dst.is_dir():
            raise InvalidInput(f"{dst.name}: objects exist below this key") from None
        # Only a writer bypassing the lock can get here; refuse rather than overwrite.
        raise WriteOnceViolation(f"{dst} appeared while it was being written") from None


def _replace(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except IsADirectoryError:
        raise InvalidInput(f"{dst.name}: objects exist below this key") from None
    except OSError as e:  # ENOTEMPTY/EISDIR variants
        if e.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
            raise InvalidInput(f"{dst.name}: objects exist below this key") from None
        raise


def _fsync_dir(directory: Path) -> None:
    """Make a rename/link/unlink in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_secret(path: Path) -> bytes:
    """The presigning key: generated once (32 random bytes, hex, mode 0600), then reused."""
    create_once(path, (secrets.token_hex(32) + "\n").encode())
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        secret = bytes.fromhex(read_private(path, "presigning key").decode().strip())
    except ValueError:
        secret = b""
    if len(secret) < 32:
        raise EvidenceError(
            f"{path} is not a presigning key (64 hex digits); remove it to regenerate"
        )
    return secret
