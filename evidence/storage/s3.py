"""The production object store: an S3 bucket with versioning and Object Lock, via `minio`.

Checked against Ceph RGW 16 (see deploy/dev/ceph-up.sh and tests/test_storage.py), which
differs from AWS in ways this module works around:

- `x-amz-checksum-sha256` is ignored, so we compute SHA-256 ourselves while uploading and keep
  it as user metadata (`x-amz-meta-sha256`). Transport integrity per request is still checked
  by the server: over HTTP minio signs each part's SHA-256 (`x-amz-content-sha256`, which RGW
  verifies), over HTTPS it sends Content-MD5.
- `x-amz-copy-source-if-match` is ignored by CopyObject, so a copy is pinned to the source's
  *version id* instead (versions are immutable).
- CopyObject does not return `x-amz-version-id`, so every installed copy carries a random
  `x-amz-meta-put-id` by which we find the version we created.
- minio's `get_object_retention` cannot parse RGW's nanosecond dates; HEAD already returns
  `x-amz-object-lock-*` headers, which we parse ourselves.
- Multipart: RGW joins parts 1 and 3 without a 2 and accepts part numbers 0 and 10001, so the
  part rules are checked here before completing (`select_parts`); ListParts on an unknown
  upload answers NoSuchKey rather than NoSuchUpload.

Write path: bytes go to `tmp/{uuid}` (multipart, hashed on the way), are checked against the
expected digest, then server-side copied to the final key with their metadata; the staging
object is then removed (every version). So a key never shows unverified bytes. Write-once
cannot use a conditional PUT (RGW 16 has none), so a racing writer is detected afterwards: of
the versions written since the key last had none, the oldest wins and a loser removes its own
version (retention is applied only after that, so the loser's version is still removable).
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.datatypes import Object, Part
from minio.error import S3Error
from minio.helpers import DictType
from minio.retention import Retention
from urllib3.exceptions import HTTPError as TransportError

from evidence import clock
from evidence.config import Settings
from evidence.errors import (
    EvidenceError,
    HashMismatch,
    InvalidInput,
    ObjectLocked,
    ObjectNotFound,
    RangeNotSatisfiable,
    StorageUnreachable,
    UploadNotFound,
    WriteOnceViolation,
)
from evidence.storage import (
    CHUNK,
    TMP_PREFIX,
    Fetched,
    HashingReader,
    ObjectInfo,
    PartInfo,
    StoreBase,
    StoredObject,
    check_range_args,
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
    write_hashing,
)

PART_SIZE = 16 * 1024 * 1024
"""Multipart part size: the upload's memory high-water mark (about two parts). 16 MiB parts
allow objects up to 156 GiB within S3's 10,000-part limit."""

META_SHA256 = "x-amz-meta-sha256"
META_WRITE_ONCE = "x-amz-meta-write-once"
META_PUT_ID = "x-amz-meta-put-id"
_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "NoSuchObject", "ResourceNotFound"}
# RGW answers ListParts for an unknown (completed, aborted, other key's) upload with NoSuchKey.
_NO_UPLOAD = {"NoSuchUpload", "NoSuchKey"}
# Refusals of a completion whose parts changed after select_parts checked them.
_BAD_PARTS = {"InvalidPart", "InvalidPartOrder", "EntityTooSmall"}
_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


class S3Store(StoreBase):
    supports_object_lock = True

    def __init__(self, settings: Settings, *, part_size: int = PART_SIZE):
        self.bucket = settings.s3_bucket
        mode = settings.object_lock_mode.upper()
        if mode not in _LOCK_MODES:
            raise InvalidInput(f"EVIDENCE_OBJECT_LOCK_MODE must be one of {_LOCK_MODES}")
        self._lock_mode = mode
        self._part_size = part_size
        self.client = _client(settings.s3_endpoint, settings)
        # Presigned URLs are signed for the host the dock will call, which may differ from
        # the address the servers use (e.g. a load balancer name).
        self._presigner = _client(settings.s3_public_endpoint or settings.s3_endpoint, settings)
        self._multipart = _MultipartCalls(self.client, self.bucket)
        self._ensure_bucket(settings.s3_region)

    def _ensure_bucket(self, region: str) -> None:
        """Create the bucket with Object Lock (which enables versioning) if it is missing, and
        refuse a bucket without it: originals must be WORM in production."""
        if not self.client.bucket_exists(self.bucket):
            try:
                self.client.make_bucket(self.bucket, location=region, object_lock=True)
            except S3Error as e:
                if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        try:
            self.client.get_object_lock_config(self.bucket)
        except S3Error as e:
            if e.code == "ObjectLockConfigurationNotFoundError":
                raise EvidenceError(
                    f"bucket {self.bucket!r} exists without Object Lock; originals could be "
                    "overwritten or deleted. Create the bucket with Object Lock enabled."
                ) from None
            raise

    # --- writing --------------------------------------------------------------------------

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        expected_sha256: str | None = None,
        write_once: bool = False,
        retain_until: dt.datetime | None = None,
    ) -> StoredObject:
        key = validate_key(key)
        expected = validate_sha256(expected_sha256) if expected_sha256 is not None else None
        retain_until = validate_retain_until(retain_until)
        staged = f"{TMP_PREFIX}{uuid.uuid4().hex}"
        reader = HashingReader(stream)
        try:
            # One part in flight at a time keeps memory at about one part, whatever the size.
            result = self.client.put_object(
                self.bucket,
                staged,
                reader,  # type: ignore[arg-type]
                length=-1,
                part_size=self._part_size,
                num_parallel_uploads=1,
            )
            sha, size = reader.hexdigest(), reader.size
            if expected is not None and sha != expected:
                raise HashMismatch(
                    f"{key}: received bytes hash to {sha}, expected {expected}",
                    expected=expected,
                    actual=sha,
                )
            return self._install(
                staged, result.version_id, key, sha, size, write_once, retain_until
            )
        finally:
            self._purge(staged)

    def promote(
        self,
        src_key: str,
        sha256: str,
        *,
        retain_until: dt.datetime | None = None,
        fetched: Fetched | None = None,
    ) -> StoredObject:
        """Move verified bytes (e.g. `incoming/{id}`) to `originals/{sha256}`.

        The source's current version is pinned by id, re-hashed, and exactly that version is
        copied: a newer upload to the same key after the check can neither slip in (RGW
        ignores copy-source-if-match, version ids are immutable) nor be deleted.
        """
        src = validate_key(src_key)
        sha = validate_sha256(sha256)
        key = original_key(sha)
        retain_until = validate_retain_until(retain_until)
        head = self._head(src)
        if head is None:
            return self._already_promoted(src, key, sha, retain_until)
        if _info(src, head).locked():
            raise ObjectLocked(f"{src} is under retention or legal hold; it cannot be moved")
        if fetched is not None and fetched.key == src and fetched.version is not None:
            # This process read and hashed exactly that version (ids are immutable): the
            # worker's one download is the verification; no second read of GiBs.
            version, actual, size = fetched.version, fetched.sha256, fetched.size
        else:
            version = head.version_id
            actual, size = self._hash_version(src, version)
        if actual != sha:
            raise HashMismatch(
                f"{src}: bytes hash to {actual}, expected {sha}; not promoted",
                expected=sha,
                actual=actual,
            )
        result = self._install(src, version, key, sha, size, True, retain_until)
        self._remove_through(src, version)
        return result

    def _already_promoted(
        self, src: str, key: str, sha: str, retain_until: dt.datetime | None
    ) -> StoredObject:
        head = self._head(key)
        if head is None or self._sha_of(key, head) != sha:
            raise ObjectNotFound(f"{src} does not exist and {key} was not promoted")
        self._extend(key, head, retain_until)
        return StoredObject(key, sha, int(head.size or 0))

    def _install(
        self,
        src: str,
        src_version: str | None,
        key: str,
        sha: str,
        size: int,
        write_once: bool,
        retain_until: dt.datetime | None,
    ) -> StoredObject:
        """Server-side copy verified bytes (`src` at `src_version`) to `key`."""
        current = self._head(key)
        if current is not None:
            if write_once or _is_write_once(current):
                if self._sha_of(key, current) != sha:
                    raise WriteOnceViolation(f"{key} already holds different bytes")
                self._extend(key, current, retain_until)
                return StoredObject(key, sha, int(current.size or 0))
            if _info(key, current).locked():
                raise ObjectLocked(f"{key} is under retention or legal hold")
        put_id = uuid.uuid4().hex
        metadata = {
            "Content-Type": "application/octet-stream",
            META_SHA256: sha,
            META_PUT_ID: put_id,
        }
        if write_once:
            metadata[META_WRITE_ONCE] = "true"
        with _mapped(key):
            # minio switches to a multipart server-side copy above 5 GiB by itself.
            self.client.copy_object(
                self.bucket,
                key,
                CopySource(self.bucket, src, version_id=src_version),
                metadata=metadata,
                metadata_directive=REPLACE,
            )
        version = self._find_version(key, put_id)
        copied = self.client.stat_object(self.bucket, key, version_id=version)
        if copied.size != size:  # the pinned version cannot change; this is a sanity check
            self._remove_version(key, version)
            raise EvidenceError(f"{key}: copy has {copied.size} bytes, expected {size}")
        if write_once:
            winner = self._settle_write_once(key, version)
            if winner != version:
                self._remove_version(key, version)
                head = self._head(key)
                if head is None or self._sha_of(key, head) != sha:
                    raise WriteOnceViolation(f"{key} was written concurrently with other bytes")
                self._extend(key, head, retain_until)
                return StoredObject(key, sha, size)
        if retain_until is not None:
            self._put_retention(key, version, self._lock_mode, retain_until)
        return StoredObject(key, sha, size)

    def _settle_write_once(self, key: str, ours: str | None) -> str | None:
        """The version that won a write-once race: the oldest one written since the key
        last had no live version (i.e. after the newest delete marker)."""
        lineage: list[str | None] = []
        for v in self._versions(key):  # newest first
            if v.is_delete_marker:
                break
            lineage.append(v.version_id)
        return lineage[-1] if lineage else ours

    def _extend(self, key: str, head: Object, until: dt.datetime | None) -> None:
        """On an idempotent re-put, lengthen retention if asked (never shorten)."""
        info = _info(key, head)
        if until is None or (info.retain_until is not None and info.retain_until >= until):
            return
        self._put_retention(key, head.version_id, info.retention_mode or self._lock_mode, until)

    # --- multipart uploads ----------------------------------------------------------------

    def create_multipart(self, key: str) -> str:
        key = validate_multipart_key(key)
        self._check_replaceable(key)
        return self._multipart.create(key)

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        return self._multipart.parts(validate_multipart_key(key), validate_upload_id(upload_id))

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo] | None = None
    ) -> ObjectInfo:
        """Have the server join the parts. The digest is not known (see the Protocol)."""
        key = validate_multipart_key(key)
        upload_id = validate_upload_id(upload_id)
        chosen = select_parts(self._multipart.parts(key, upload_id), parts)
        # Check-then-complete, as put's install is: RGW has no conditional writes.
        self._check_replaceable(key)
        version = self._multipart.complete(key, upload_id, chosen)
        head = self._head(key, version)
        expected = sum(part.size for part in chosen)
        # A completion can fail inside a 200 response (S3 allows it): check what is there.
        if head is None or int(head.size or 0) != expected:
            raise EvidenceError(f"{key}: completed upload {upload_id} is not the joined parts")
        return _info(key, head)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self._multipart.abort(validate_multipart_key(key), validate_upload_id(upload_id))
        except UploadNotFound:
            pass  # already gone: aborting is idempotent

    def _check_replaceable(self, key: str) -> None:
        """Refuse a target a plain put could not replace (write-once or locked)."""
        head = self._head(key)
        if head is None:
            return
        if _is_write_once(head):
            raise WriteOnceViolation(f"{key} is write-once; a multipart upload cannot replace it")
        if _info(key, head).locked():
            raise ObjectLocked(f"{key} is under retention or legal hold")

    # --- reading --------------------------------------------------------------------------

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        key = validate_key(key)
        check_range_args(start, end)
        length = 0 if end is None else end - start + 1
        with _mapped(key):
            # No Range header for a whole-object read, so an empty object reads as b"".
            resp = self.client.get_object(self.bucket, key, offset=start, length=length)
        return _stream(resp)

    def stat(self, key: str) -> ObjectInfo:
        key = validate_key(key)
        head = self._head(key)
        if head is None:
            raise ObjectNotFound(f"no object {key}")
        return _info(key, head)

    def exists(self, key: str) -> bool:
        return self._head(validate_key(key)) is not None

    def fetch(self, key: str, dest: Path) -> Fetched:
        """The current version, pinned by id before it is read: what `promote(fetched=)`
        then copies is exactly the bytes hashed here."""
        key = validate_key(key)
        head = self._head(key)
        if head is None:
            raise ObjectNotFound(f"no object {key}")
        with _mapped(key):
            resp = self.client.get_object(self.bucket, key, version_id=head.version_id)
        sha256, size = write_hashing(_stream(resp), dest)
        return Fetched(key, sha256, size, head.version_id)

    def local_file(self, key: str) -> None:
        """S3 objects are not files here: a worker fetches them (and hashes on the way)."""
        return None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            name = obj.object_name or ""
            if obj.is_dir or name.startswith(TMP_PREFIX):
                continue
            # Listings carry no metadata (RGW has no include-user-metadata), so HEAD each.
            head = self._head(name)
            if head is not None:  # deleted while we listed
                yield _info(name, head)

    # --- deleting and locking -------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove every version and delete marker of `key`, or nothing if any is locked."""
        key = validate_key(key)
        versions = list(self._versions(key))
        for v in versions:
            if v.is_delete_marker:
                continue
            head = self._head(key, v.version_id)
            if head is not None and _info(key, head).locked():
                raise ObjectLocked(f"{key} is under retention or legal hold; not deleted")
        # Oldest first: if the server still refuses one (a lock set meanwhile), the current
        # version is the last to go, so the object stays readable.
        for v in reversed(versions):
            self._remove_version(key, v.version_id)

    def set_retention(self, key: str, until: dt.datetime) -> None:
        key = validate_key(key)
        until = validate_retain_until(until)
        assert until is not None
        head = self._head(key)
        if head is None:
            raise ObjectNotFound(f"no object {key}")
        info = _info(key, head)
        if info.retain_until is not None and until < info.retain_until:
            raise ObjectLocked(
                f"{key} is retained until {info.retain_until.isoformat()}; "
                "retention can be extended, never shortened"
            )
        # Keep an existing mode: COMPLIANCE -> GOVERNANCE would be a (refused) downgrade.
        self._put_retention(key, head.version_id, info.retention_mode or self._lock_mode, until)

    def set_legal_hold(self, key: str, on: bool) -> None:
        key = validate_key(key)
        head = self._head(key)
        if head is None:
            raise ObjectNotFound(f"no object {key}")
        with _mapped(key):
            if on:
                self.client.enable_object_legal_hold(self.bucket, key, head.version_id)
            else:
                self.client.disable_object_legal_hold(self.bucket, key, head.version_id)

    # --- presigned URLs -------------------------------------------------------------------

    def presign_put(self, key: str, expires: dt.timedelta) -> str:
        return self._presign("PUT", key, expires)

    def presign_get(self, key: str, expires: dt.timedelta) -> str:
        return self._presign("GET", key, expires)

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
        # max_size is not enforceable in a presigned URL here (see the Protocol): part sizes
        # are checked against the plan before completing. S3 joins parts itself: no offset.
        # SigV4 signs the whole query string, so the URL is good for this part of this
        # upload only (checked: a changed partNumber or uploadId gets 403 from RGW).
        query: DictType = {
            "uploadId": validate_upload_id(upload_id),
            "partNumber": str(validate_part_number(part_number)),
        }
        return self._presign("PUT", validate_multipart_key(key), expires, query)

    def _presign(
        self,
        method: str,
        key: str,
        expires: dt.timedelta,
        query: DictType | None = None,
    ) -> str:
        return self._presigner.get_presigned_url(
            method,
            self.bucket,
            validate_key(key),
            expires=validate_expiry(expires),
            request_date=clock.now(),  # the injectable clock, so tests can make URLs expire
            extra_query_params=query,
        )

    # --- internals ------------------------------------------------------------------------

    def _head(self, key: str, version_id: str | None = None) -> Object | None:
        try:
            return self.client.stat_object(self.bucket, key, version_id=version_id)
        except S3Error as e:
            if e.code in _NOT_FOUND:
                return None
            raise

    def _sha_of(self, key: str, head: Object) -> str:
        """The recorded SHA-256, or (for bytes uploaded around us) the computed one."""
        recorded = _header(head, META_SHA256)
        if recorded:
            return recorded
        return self._hash_version(key, head.version_id)[0]

    def _hash_version(self, key: str, version_id: str | None) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        with _mapped(key):
            resp = self.client.get_object(self.bucket, key, version_id=version_id)
        for chunk in _stream(resp):
            h.update(chunk)
            size += len(chunk)
        return h.hexdigest(), size

    def _versions(self, key: str) -> Iterator[Object]:
        """Every version and delete marker of exactly `key`, newest first."""
        for v in self.client.list_objects(
            self.bucket, prefix=key, recursive=True, include_version=True
        ):
            if v.object_name == key:
                yield v

    def _find_version(self, key: str, put_id: str) -> str | None:
        """The version id of the copy tagged `put_id` (CopyObject on RGW does not say)."""
        head = self._head(key)
        if head is not None and _header(head, META_PUT_ID) == put_id:
            return head.version_id
        for v in self._versions(key):  # someone wrote after us: look further back
            if v.is_delete_marker:
                continue
            h = self._head(key, v.version_id)
            if h is not None and _header(h, META_PUT_ID) == put_id:
                return v.version_id
        raise EvidenceError(f"{key}: the version just written cannot be found")

    def _put_retention(
        self, key: str, version_id: str | None, mode: str, until: dt.datetime
    ) -> None:
        with _mapped(key):
            self.client.set_object_retention(
                self.bucket, key, Retention(mode, until), version_id=version_id
            )

    def _remove_version(self, key: str, version_id: str | None) -> None:
        with _mapped(key):
            self.client.remove_object(self.bucket, key, version_id=version_id)

    def _remove_through(self, key: str, version_id: str | None) -> None:
        """After a promote: remove the promoted version of `key` and every older one, but
        keep newer ones (an upload that arrived after verification is not ours to drop)."""
        seen = False
        for v in list(self._versions(key)):
            seen = seen or v.version_id == version_id
            if seen:
                try:
                    self._remove_version(key, v.version_id)
                except ObjectLocked:
                    pass  # locked meanwhile: keep it; the original is installed anyway

    def _purge(self, key: str) -> None:
        """Remove every version of a staging object (best effort: never mask the caller's
        own error; a leftover under tmp/ is garbage, not evidence)."""
        try:
            for v in list(self._versions(key)):
                self.client.remove_object(self.bucket, key, version_id=v.version_id)
        except S3Error:
            pass


# --- S3 multipart calls -------------------------------------------------------------------


class _MultipartCalls:
    """The S3 multipart API, through minio's private methods, in this one place.

    Why private methods: minio's public API only runs a whole multipart upload inside one
    `put_object` call. A dock that PUTs parts itself through presigned URLs, and resumes from
    another process knowing only the key and upload id, needs the individual S3 calls.
    `_create_multipart_upload`, `_list_parts`, `_complete_multipart_upload` and
    `_abort_multipart_upload` are minio's own building blocks for that (read against 7.2.20);
    if an upgrade changes them, this class is all there is to adapt, and the conformance
    suite says so.
    """

    def __init__(self, client: Minio, bucket: str):
        self._client = client
        self._bucket = bucket

    def create(self, key: str) -> str:
        with _mapped(key):
            return self._client._create_multipart_upload(
                self._bucket, key, {"Content-Type": "application/octet-stream"}
            )

    def parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """Every part the server holds, by number (ListParts pages hold 1000)."""
        found: list[PartInfo] = []
        marker: str | None = None
        while True:
            with _mapped_upload(key, upload_id):
                page = self._client._list_parts(
                    self._bucket, key, upload_id, part_number_marker=marker
                )
            found += [PartInfo(p.part_number, int(p.size or 0), p.etag) for p in page.parts]
            if not page.is_truncated or not page.next_part_number_marker:
                return sorted(found, key=lambda p: p.number)
            marker = page.next_part_number_marker

    def complete(self, key: str, upload_id: str, parts: Sequence[PartInfo]) -> str | None:
        """Join `parts`; the new version's id (RGW returns it, unlike for CopyObject)."""
        with _mapped_upload(key, upload_id):
            result = self._client._complete_multipart_upload(
                self._bucket, key, upload_id, [Part(p.number, p.etag) for p in parts]
            )
        return result.version_id

    def abort(self, key: str, upload_id: str) -> None:
        with _mapped_upload(key, upload_id):
            self._client._abort_multipart_upload(self._bucket, key, upload_id)


@contextmanager
def _mapped_upload(key: str, upload_id: str) -> Iterator[None]:
    """S3 errors of multipart calls in the store's terms."""
    try:
        yield
    except S3Error as e:
        if e.code in _NO_UPLOAD:
            raise UploadNotFound(f"no multipart upload {upload_id} for {key}") from None
        if e.code in _BAD_PARTS:
            raise InvalidInput(
                f"{key}: the server refused the parts ({e.code}: {e.message}); "
                "list the parts again and complete"
            ) from None
        raise


# --- helpers ------------------------------------------------------------------------------


def _client(endpoint: str, settings: Settings) -> Minio:
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.netloc or url.path not in ("", "/"):
        raise InvalidInput(f"S3 endpoint must look like http(s)://host:port, not {endpoint!r}")
    return Minio(
        url.netloc,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=url.scheme == "https",
        region=settings.s3_region,  # known region: presigning needs no network call
        http_client=_Pool(endpoint),
    )


class _Pool(urllib3.PoolManager):
    """minio's own connection pool (same timeouts and retries), except that failing to reach
    S3 at all raises StorageUnreachable instead of urllib3's errors, which callers do not
    know: the workers retry it, the scrubber stops without blaming any object."""

    def __init__(self, endpoint: str):
        timeout = int(dt.timedelta(minutes=5).total_seconds())
        super().__init__(
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        self.endpoint = endpoint

    def urlopen(self, method, url, redirect=True, **kw):  # type: ignore[no-untyped-def, override]
        try:
            return super().urlopen(method, url, redirect=redirect, **kw)
        except TransportError as exc:
            raise _unreachable(self.endpoint, exc) from exc


def _unreachable(endpoint: str, exc: Exception) -> StorageUnreachable:
    reason = getattr(exc, "reason", None) or exc
    return StorageUnreachable(
        f"cannot reach the object store at {endpoint} ({reason}); "
        "check EVIDENCE_S3_ENDPOINT and that the S3 server is up"
    )


@contextmanager
def _mapped(key: str) -> Iterator[None]:
    """Translate the S3 errors callers act on into the store's own exceptions."""
    try:
        yield
    except S3Error as e:
        if e.code in _NOT_FOUND:
            raise ObjectNotFound(f"no object {key}") from None
        if e.code == "InvalidRange":
            raise RangeNotSatisfiable(f"{key}: range not satisfiable") from None
        if e.code == "AccessDenied" and "lock" in (e.message or "").lower():
            raise ObjectLocked(f"{key}: refused by Object Lock ({e.message})") from None
        raise


def _stream(resp) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    try:
        yield from resp.stream(CHUNK)
    except TransportError as exc:  # the connection broke mid-object
        raise StorageUnreachable(
            f"the object store's connection broke while reading ({exc}); "
            "check that the S3 server is up"
        ) from exc
    finally:
        resp.close()
        resp.release_conn()


def _header(head: Object, name: str) -> str | None:
    return head.metadata.get(name) if head.metadata is not None else None


def _is_write_once(head: Object) -> bool:
    return (_header(head, META_WRITE_ONCE) or "").lower() == "true"


_FRACTION = re.compile(r"\.(\d+)")


def parse_s3_time(value: str) -> dt.datetime:
    """ISO 8601 as S3 servers send it, including RGW's nanoseconds (which minio and
    `datetime.fromisoformat` reject): fractions are cut to microseconds."""
    value = _FRACTION.sub(lambda m: "." + m[1][:6].ljust(6, "0"), value.strip())
    t = dt.datetime.fromisoformat(value)  # 3.11 accepts a trailing "Z"
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _info(key: str, head: Object) -> ObjectInfo:
    until = _header(head, "x-amz-object-lock-retain-until-date")
    return ObjectInfo(
        key=key,
        size=int(head.size or 0),
        sha256=_header(head, META_SHA256),
        retain_until=parse_s3_time(until) if until else None,
        retention_mode=_header(head, "x-amz-object-lock-mode"),
        legal_hold=(_header(head, "x-amz-object-lock-legal-hold") or "").upper() == "ON",
    )
