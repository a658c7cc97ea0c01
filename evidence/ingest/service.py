"""The ingest path every clip takes. It must never lose one.

Docks declare a clip (hash, size, sidecar), send its bytes straight to the object store
through presigned URLs, then complete. A worker then re-hashes what arrived, promotes it
to a write-once original, probes it and makes the review derivatives. Every step is a
ledger entry, and every step can run twice without doing anything twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfc8785 import CanonicalizationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evidence import clock, outbox, queue, workfiles
from evidence.accounts.models import Device
from evidence.cameras.attribution import attribute_at_ingest
from evidence.cameras.models import ClipName
from evidence.clips.derivatives import WORKER, record_derivative
from evidence.clips.models import Clip, ClipState, Derivative
from evidence.context import Context
from evidence.errors import (
    AccessDenied,
    Conflict,
    HashMismatch,
    InvalidInput,
    NotFound,
    ObjectNotFound,
    TooLarge,
    UploadLimit,
    UploadNotFound,
)
from evidence.ingest.models import Upload, UploadState
from evidence.ledger.entries import canonical
from evidence.media.derivatives import Recipe, make_proxy, make_thumbnail
from evidence.media.probe import MediaFacts, probe
from evidence.media.runner import sha256_file
from evidence.retention import service as retention
from evidence.storage import DEFAULT_PART_SIZE, Fetched, original_key, plan_parts

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_FILENAME = 255


@dataclass(frozen=True)
class PartUrl:
    number: int
    offset: int
    size: int
    url: str
    uploaded: bool


@dataclass(frozen=True)
class DeclaredUpload:
    upload_id: str
    state: str
    clip_id: str | None = None
    part_size: int = 0
    parts: list[PartUrl] = field(default_factory=list)


def _device_actor(device: Device) -> str:
    return f"device:{device.name}"


def _check_declaration(sha256: str, size: int, filename: str, metadata: Any) -> str:
    sha256 = sha256.lower()
    if not _SHA256.match(sha256):
        raise InvalidInput("sha256 must be 64 hex characters: the SHA-256 of the clip's bytes")
    if size < 0:
        raise InvalidInput("size must be zero or more bytes")
    name = Path(filename.replace("\\", "/")).name
    if not name or len(name) > MAX_FILENAME:
        raise InvalidInput("filename must be a file name of 1 to 255 characters")
    if not _storable(name):
        raise InvalidInput("filename must be UTF-8 text without NUL characters")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInput("metadata must be a JSON object (the clip's sidecar)")
    return name


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False  # a lone surrogate
    return "\x00" not in text


SOURCE_LIMITS = {"path": 1024, "volume_label": 64, "volume_uuid": 64}
"""Where the dock found a clip (docs/cameras.md): each part optional, each bounded."""


def check_source(source: Any) -> dict[str, str] | None:
    """The declaration's `source` as stored and as the ledger keeps it: known keys only,
    bounded text without control characters (ledger_text)."""
    if source is None:
        return None
    if not isinstance(source, dict):
        raise InvalidInput("source must be a JSON object: {path, volume_label, volume_uuid}")
    unknown = set(source) - SOURCE_LIMITS.keys()
    if unknown:
        raise InvalidInput(
            f"source has unknown keys {sorted(unknown)}: only {', '.join(SOURCE_LIMITS)}"
        )
    kept = {}
    for key, limit in SOURCE_LIMITS.items():
        value = source.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidInput(f"source.{key} must be text of at most {limit} characters")
        if text := ledger_text(value, limit):
            kept[key] = text
    return kept or None


def declare_upload(
    ctx: Context,
    device: Device,
    *,
    sha256: str,
    size: int,
    filename: str,
    metadata: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> DeclaredUpload:
    """A dock declares a clip: it is already stored, or here is where to send it.

    Declaring again from the same device while an upload is pending returns that upload
    with the parts the store already holds, which is how an interrupted dock resumes.
    `source` says where the dock found the file (path, volume label or UUID); the camera's
    attribution reads it (evidence/cameras/attribution.py).
    """
    filename = _check_declaration(sha256, size, filename, metadata)
    source = check_source(source)
    sha256 = sha256.lower()
    metadata = keepable_sidecar(ctx, metadata)  # before the write lock: it may store a file
    with ctx.db.write_session() as s:
        clip = s.scalar(select(Clip).where(Clip.sha256 == sha256))
        if clip is not None and clip.state in VOUCHED:
            return _duplicate(ctx, s, device, clip, sha256, size, filename, source)
        upload = s.scalar(
            select(Upload).where(
                Upload.device_id == device.id,
                Upload.sha256 == sha256,
                Upload.state == UploadState.pending,
            )
        )
        if upload is None:
            _check_limits(ctx, s, device, size)
            upload = _new_upload(device, sha256, size, filename, metadata, UploadState.pending)
            upload.source = source
            s.add(upload)
            s.flush()
            # Always a multipart upload, even of one part: its URLs die when it is completed,
            # so no replay can change the bytes the worker is about to verify.
            upload.multipart_id = ctx.store.create_multipart(upload.incoming_key)
            ctx.ledger.append_in(
                s,
                "upload.declared",
                actor=_device_actor(device),
                subject={"upload": upload.id, "device": device.id},
                sha256=sha256,
                size=size,
                filename=ledger_text(filename, MAX_FILENAME),
                sidecar=metadata or {},
                **({"source": source} if source else {}),
            )
        else:
            upload.heartbeat_at = clock.now()  # a sign of life: not abandoned
        parts = _part_urls(ctx, upload)
        return DeclaredUpload(
            upload.id, UploadState.pending.value, part_size=upload.part_size, parts=parts
        )


VOUCHED = frozenset({ClipState.stored, ClipState.ready, ClipState.unplayable, ClipState.disposed})
"""Clip states whose original was verified and promoted: only these answer "exists". A clip
still verifying (some upload's bytes not yet re-hashed) or rejected satisfies nobody, or a
device that lied about a hash could make an honest dock drop the real clip. Disposed counts:
the store judged those bytes and let them go under policy; a dock may not bring them back."""


def _duplicate(
    ctx: Context,
    s: Session,
    device: Device,
    clip: Clip,
    sha256: str,
    size: int,
    filename: str,
    source: dict[str, str] | None = None,
) -> DeclaredUpload:
    """These bytes are stored. The device learns that, and nothing else: not the clip's id
    (knowing a hash must not open a clip) and it writes nothing into the clip's timeline.
    The entry goes to the device's and the upload's own record, as a claim, not a fact."""
    if size != clip.size:
        raise Conflict(
            f"a clip with this sha256 is stored with another size than {size} bytes: "
            "hash and size must both be the file's"
        )
    upload = _new_upload(device, sha256, size, filename, None, UploadState.duplicate)
    upload.source = source
    s.add(upload)
    s.flush()
    # The twin's name, or it would live only in this entry: clip search finds a clip by any
    # name it was docked under (ClipName). A row, not a timeline entry, as said above.
    remember_name(s, clip.id, filename, device.id)
    ctx.ledger.append_in(
        s,
        "upload.duplicate",
        actor=_device_actor(device),
        subject={"upload": upload.id, "device": device.id},
        sha256=sha256,
        size=size,
        filename=ledger_text(filename, MAX_FILENAME),
    )
    return DeclaredUpload(upload.id, UploadState.duplicate.value)


def remember_name(s: Session, clip_id: str, filename: str, device_id: str | None) -> None:
    """Keep `filename` among the names clip `clip_id` was docked under (first dock wins)."""
    if s.get(ClipName, (clip_id, filename)) is not None:
        return
    try:
        with s.begin_nested():  # two docks of one name at once: the first one's row stands
            s.add(
                ClipName(
                    clip_id=clip_id,
                    filename=filename,
                    device_id=device_id,
                    first_docked_at=clock.now(),
                )
            )
    except IntegrityError:
        pass


def ledger_text(value: str, limit: int) -> str:
    """A client's string as the permanent ledger keeps it: NFC, without control or format
    characters (bidi overrides would make a name read differently than it is), bounded."""
    value = unicodedata.normalize("NFC", value)
    kept = "".join(c if unicodedata.category(c)[0] != "C" else "\ufffd" for c in value)
    return kept[:limit]


MAX_SIDECAR_BYTES = 64 * 1024
"""A sidecar is a few hundred bytes; a bigger one is kept as a file, not in the ledger."""

_NOT_CANONICAL = (
    "not representable in canonical JSON (a NaN or infinite number, an integer beyond "
    "2^53, or a lone surrogate)"
)


def keepable_sidecar(ctx: Context, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sidecar as the ledger and the database keep it.

    One the ledger's canonical form (RFC 8785) cannot hold, or one larger than
    MAX_SIDECAR_BYTES, is stored whole as an object (`sidecars/{sha256}.json`, write-once)
    and replaced by a small record naming it and its hash: nothing is lost, the permanent
    log stays bounded, and the footage is never held back by its description.
    """
    if not metadata:
        return metadata
    try:
        if len(canonical(metadata)) <= MAX_SIDECAR_BYTES:
            return metadata
        why = f"larger than {MAX_SIDECAR_BYTES} bytes"
    except (CanonicalizationError, UnicodeError, RecursionError):
        why = _NOT_CANONICAL
    # ensure_ascii writes a lone surrogate as its \u escape and NaN as NaN: the same JSON
    # text, which UTF-8 could not otherwise hold.
    raw = json.dumps(metadata, ensure_ascii=True, allow_nan=True).encode("ascii")
    digest = hashlib.sha256(raw).hexdigest()
    stored = ctx.store.put(
        f"sidecars/{digest}.json", io.BytesIO(raw), expected_sha256=digest, write_once=True
    )
    return {
        "sidecar_error": f"the sidecar is {why}; kept as a stored file",
        "sidecar_file": {"key": stored.key, "sha256": stored.sha256, "size": stored.size},
    }


def _check_limits(ctx: Context, s: Session, device: Device, size: int) -> None:
    settings = ctx.settings
    if size > settings.upload_max_clip_bytes:
        raise TooLarge(
            f"a clip may have at most {settings.upload_max_clip_bytes} bytes; {size} were declared"
        )
    count, pending = s.execute(
        select(func.count(), func.coalesce(func.sum(Upload.size), 0)).where(
            Upload.device_id == device.id, Upload.state == UploadState.pending
        )
    ).one()
    if count >= settings.upload_max_pending_per_device:
        raise UploadLimit(
            f"this device has {count} uploads pending, the most it may have: complete them "
            "(run the dock again) before declaring more"
        )
    if pending + size > settings.upload_max_pending_bytes_per_device:
        raise UploadLimit(
            f"this device has {pending} bytes pending; {size} more would pass its limit of "
            f"{settings.upload_max_pending_bytes_per_device}: complete those uploads first"
        )


def _new_upload(
    device: Device,
    sha256: str,
    size: int,
    filename: str,
    metadata: dict[str, Any] | None,
    state: UploadState,
) -> Upload:
    plan = plan_parts(size)
    # With one part the size is not a part size; store the default so re-planning agrees.
    part_size = plan[0].length if len(plan) > 1 else DEFAULT_PART_SIZE
    return Upload(
        device_id=device.id,
        sha256=sha256,
        size=size,
        filename=filename,
        sidecar=metadata,
        state=state.value,
        part_size=part_size,
        created_at=clock.now(),
    )


def _part_urls(ctx: Context, upload: Upload) -> list[PartUrl]:
    expires = dt.timedelta(seconds=ctx.settings.presign_expiry_seconds)
    key = upload.incoming_key
    plan = plan_parts(upload.size, upload.part_size)
    if upload.multipart_id is None:
        uploaded = _object_arrived(ctx, upload)
        return [PartUrl(1, 0, upload.size, ctx.store.presign_put(key, expires), uploaded)]
    try:
        held = {p.number: p.size for p in ctx.store.list_parts(key, upload.multipart_id)}
    except UploadNotFound:
        # Joined by a completion that died before it was recorded: nothing is left to send,
        # completing again records it. (If the joined object is gone too, start afresh.)
        if _object_arrived(ctx, upload):
            return [PartUrl(n, offset, length, "", True) for n, offset, length in plan]
        upload.multipart_id = ctx.store.create_multipart(key)
        held = {}
    return [
        PartUrl(
            n,
            offset,
            length,
            # The offset lets the local store write the part where it belongs in the clip:
            # completing then installs the file as it is instead of joining a copy.
            ctx.store.presign_part(
                key, upload.multipart_id, n, expires, max_size=length, offset=offset
            ),
            held.get(n) == length,
        )
        for n, offset, length in plan
    ]


def _object_arrived(ctx: Context, upload: Upload) -> bool:
    try:
        return ctx.store.stat(upload.incoming_key).size == upload.size
    except ObjectNotFound:
        return False


def _own_upload(ctx: Context, device: Device, upload_id: str) -> Upload:
    with ctx.db.session() as s:
        upload = s.get(Upload, upload_id)
    if upload is None:
        raise NotFound(f"no upload {upload_id}")
    if upload.device_id != device.id:
        raise AccessDenied("this upload belongs to another device")
    return upload


@dataclass(frozen=True)
class UploadStatus:
    """What a device is told about its upload (GET /api/v1/uploads/{id})."""

    id: str
    state: str
    verified: bool
    clip_id: str | None
    error: str | None


def upload_status(ctx: Context, device: Device, upload_id: str) -> UploadStatus:
    upload = _own_upload(ctx, device, upload_id)
    return UploadStatus(
        upload.id,
        upload.state,
        upload_verified(ctx, upload),
        visible_clip_id(ctx, upload),
        upload.error,
    )


def upload_verified(ctx: Context, upload: Upload) -> bool:
    """The server vouches for this upload's bytes: re-hashed, equal to the declared hash, and
    the clip's original stored. True before the review copies are made (state `stored`
    waits for them), so a dock need not wait for a transcode to know its clip is safe."""
    if upload.state == UploadState.stored:
        return True
    if upload.state != UploadState.processing:
        return False
    return any(
        json.loads(entry)["type"] == "clip.ingested"
        for _, entry in ctx.ledger.entries_about(f"upload:{upload.id}")
    )


def visible_clip_id(ctx: Context, upload: Upload) -> str | None:
    """The clip id a device may learn for its upload: once its own bytes were verified, or
    for the clip its upload created. Completing junk under another clip's hash teaches
    nothing."""
    if upload.clip_id is None or upload.state == UploadState.stored:
        return upload.clip_id
    with ctx.db.session() as s:
        made_by = s.scalar(select(Clip.device_id).where(Clip.id == upload.clip_id))
    return upload.clip_id if made_by == upload.device_id else None


@dataclass(frozen=True)
class Completed:
    upload: Upload
    newly: bool  # this call moved it to processing (and put its work in the outbox)


def complete_upload(ctx: Context, device: Device, upload_id: str) -> Completed:
    """All parts are in: assemble them, create the clip record, hand over to a worker.

    Completing again is harmless and enqueues nothing more.
    """
    upload = _own_upload(ctx, device, upload_id)
    if upload.state != UploadState.pending:
        return Completed(upload, False)
    try:
        _assemble(ctx, upload)
    except UploadNotFound:
        # Another complete of this upload (a dock retrying one whose answer it lost) joined
        # the parts while this one waited: answer with the upload's state, not a 404.
        if not _object_arrived(ctx, upload):
            raise
    with ctx.db.write_session() as s:
        upload = s.get(Upload, upload_id)
        if upload is None or upload.state != UploadState.pending:
            return Completed(upload, False)  # type: ignore[arg-type]  # completed concurrently
        clip = s.scalar(select(Clip).where(Clip.sha256 == upload.sha256))
        if clip is None:
            clip = _new_clip(upload)
            s.add(clip)
        elif clip.state == ClipState.rejected:
            clip.state = ClipState.verifying.value
        s.flush()
        upload.clip_id = clip.id
        upload.state = UploadState.processing.value
        upload.completed_at = clock.now()
        upload.heartbeat_at = None  # a declaration's sign of life; the worker's from now on
        ctx.ledger.append_in(
            s,
            "upload.completed",
            actor=_device_actor(device),
            subject={"upload": upload.id, "clip": clip.id, "device": device.id},
            sha256=upload.sha256,
            size=upload.size,
        )
        outbox.add(s, queue.PROCESS_UPLOAD, upload.id)  # sent after commit, broker up or not
        return Completed(upload, True)


def _assemble(ctx: Context, upload: Upload) -> None:
    if upload.multipart_id is None:
        if not _object_arrived(ctx, upload):
            raise Conflict(
                f"part 1 has not arrived (expected {upload.size} bytes): PUT it to its URL, "
                "then complete again"
            )
        return
    plan = plan_parts(upload.size, upload.part_size)
    try:
        listed = ctx.store.list_parts(upload.incoming_key, upload.multipart_id)
    except UploadNotFound:
        # Assembled by an earlier attempt that died before recording it.
        if _object_arrived(ctx, upload):
            return
        raise Conflict("the upload's parts are gone: declare the clip again") from None
    held = {p.number: p for p in listed}
    for n, _offset, length in plan:
        if n not in held:
            raise Conflict(f"part {n} of {len(plan)} has not arrived: PUT it, then complete again")
        if held[n].size != length:
            raise Conflict(f"part {n} has {held[n].size} bytes, expected {length}: PUT it again")
    ctx.store.complete_multipart(
        upload.incoming_key, upload.multipart_id, [held[n] for n, _, _ in plan]
    )


def _new_clip(upload: Upload) -> Clip:
    side = upload.sidecar or {}
    return Clip(
        sha256=upload.sha256,
        size=upload.size,
        state=ClipState.verifying.value,
        filename=upload.filename,
        device_id=upload.device_id,
        officer_id=_text(side.get("officer_id")),
        camera_serial=_text(side.get("camera_serial")),
        recorded_at=_when(side.get("recorded_at")),
        ingested_at=clock.now(),
        sidecar=side or None,
    )


def _text(value: Any) -> str | None:
    # Control characters (a NUL, which PostgreSQL text cannot hold) must not stop a clip.
    return None if value is None else ledger_text(str(value), 64)


def _when(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


# -- the worker's side -----------------------------------------------------------------------


def process_upload(
    ctx: Context, upload_id: str, *, progress: Callable[[str, float], None] | None = None
) -> str:
    """Verify, promote, probe and derive. Idempotent: safe to run twice or after a crash.

    Returns the upload's final state.
    """
    with ctx.db.session() as s:
        upload = s.get(Upload, upload_id)
        if upload is None:
            raise NotFound(f"no upload {upload_id}")
        if upload.state != UploadState.processing:
            return upload.state  # not complete yet, or nothing (more) to do: stored, rejected
        clip = s.get(Clip, upload.clip_id)
    assert clip is not None
    beat = _Heartbeat(ctx, upload.id)
    beat(force=True)

    def report(kind: str, fraction: float) -> None:
        beat()
        if progress:
            progress(kind, fraction)

    with workfiles.work_dir(ctx.settings.data_dir / "work") as work:  # swept if we are killed
        verified = _verify(ctx, upload, clip, work)
        if verified.actual != upload.sha256:
            return _reject(ctx, upload, verified.path, verified.actual)
        # Verified on this upload's own bytes. A clip another upload left rejected (a device
        # that lied about this hash) is the clip these bytes prove: promote them.
        if clip.state in (ClipState.verifying, ClipState.rejected):
            if not verified.promoted:
                ctx.store.promote(upload.incoming_key, upload.sha256, fetched=verified.fetched)
            path = ctx.store.local_file(original_key(upload.sha256)) or verified.path
            facts = probe(path)
            _record_ingest(ctx, upload, facts)
        else:
            # Stored already by another upload of the same bytes: keep no second copy, but
            # keep the name these verified bytes were docked under.
            ctx.store.delete(upload.incoming_key)
            path = ctx.store.local_file(original_key(upload.sha256)) or verified.path
            with ctx.db.write_session() as s:
                remember_name(s, upload.clip_id, upload.filename, upload.device_id)  # type: ignore[arg-type]
        retention.lock_original(ctx, upload.clip_id)  # type: ignore[arg-type]
        _make_derivatives(ctx, upload.clip_id, path, work, upload.sha256, report)  # type: ignore[arg-type]
    _finish(ctx, upload.id)
    return UploadState.stored.value


@dataclass(frozen=True)
class _Verified:
    """An upload's bytes, hashed by the worker's side: where to read them, what they hash
    to, and whether they are already the promoted original."""

    path: Path
    actual: str
    promoted: bool
    fetched: Fetched | None = None  # what was downloaded and hashed (S3): promote copies it


def _verify(ctx: Context, upload: Upload, clip: Clip, work: Path) -> _Verified:
    """Hash the upload's bytes once, reading them where they are.

    On a local store the bytes never left our control: the store's own promote hashes the
    incoming file (pinned by a hard link) and moves it, and probe and ffmpeg read the
    original in place: one read, no copy. On S3 the dock's bytes went straight to the
    bucket, so they are fetched into `work` and hashed on the way. Either way the hash is
    this worker's, over these bytes: never the dock's word for them.
    """
    incoming = ctx.store.exists(upload.incoming_key)
    key = upload.incoming_key if incoming else original_key(upload.sha256)
    in_place = ctx.store.local_file(key)
    if in_place is None:
        path = work / f"clip{Path(upload.filename or '').suffix[:10]}"
        fetched = ctx.store.fetch(key, path)
        pinned = fetched if incoming else None  # the original's is no version of incoming's
        return _Verified(path, fetched.sha256, promoted=False, fetched=pinned)
    if not incoming:  # a crash after promotion: the store hashed it when it promoted it
        recorded = ctx.store.stat(key).sha256
        return _Verified(in_place, recorded or sha256_file(in_place), promoted=True)
    if clip.state not in (ClipState.verifying, ClipState.rejected):
        return _Verified(in_place, sha256_file(in_place), promoted=False)
    try:
        ctx.store.promote(upload.incoming_key, upload.sha256)
    except HashMismatch as e:
        return _Verified(in_place, e.actual, promoted=False)
    original = ctx.store.local_file(original_key(upload.sha256))
    return _Verified(original or in_place, upload.sha256, promoted=True)


class _Heartbeat:
    """Marks an upload as being worked on, so the stalled-upload sweep leaves it alone."""

    EVERY = dt.timedelta(seconds=30)

    def __init__(self, ctx: Context, upload_id: str):
        self.ctx, self.upload_id, self.last = ctx, upload_id, None

    def __call__(self, force: bool = False) -> None:
        now = clock.now()
        if not force and self.last is not None and now - self.last < self.EVERY:
            return
        self.last = now
        with self.ctx.db.write_session() as s:
            upload = s.get(Upload, self.upload_id)
            if upload is not None:
                upload.heartbeat_at = now


@contextmanager
def local_copy(ctx: Context, key: str, filename: str | None) -> Iterator[tuple[Path, str]]:
    """A stored object in a temporary work file, hashed while it is copied: (path, sha256).
    The caller compares the hash with what the ledger vouches for before using the file."""
    with workfiles.work_dir(ctx.settings.data_dir / "work") as tmp:  # swept if we are killed
        path = tmp / f"clip{Path(filename or '').suffix[:10]}"
        yield path, ctx.store.fetch(key, path).sha256


def _reject(ctx: Context, upload: Upload, copy: Path, actual: str) -> str:
    """The bytes are not what the dock declared: keep them aside, never as an original."""
    quarantine = f"quarantine/{upload.id}"
    if ctx.store.exists(upload.incoming_key):
        with copy.open("rb") as f:
            ctx.store.put(quarantine, f)
        ctx.store.delete(upload.incoming_key)
    with ctx.db.write_session() as s:
        u = s.get(Upload, upload.id)
        assert u is not None
        if u.state == UploadState.rejected:
            return u.state
        u.state = UploadState.rejected.value
        u.error = f"declared sha256 {upload.sha256} but the bytes hash to {actual}"
        clip = s.get(Clip, u.clip_id)
        if clip is not None and clip.state == ClipState.verifying and not _others_pending(s, u):
            clip.state = ClipState.rejected.value
        ctx.ledger.append_in(
            s,
            "upload.rejected",
            actor=WORKER,
            subject={"upload": u.id, "clip": u.clip_id, "device": u.device_id},
            declared_sha256=upload.sha256,
            actual_sha256=actual,
            size=upload.size,
            kept_as=quarantine,
        )
    return UploadState.rejected.value


def _others_pending(s: Session, upload: Upload) -> bool:
    """Another upload of the same clip still waits to be verified: one liar's bytes must not
    reject the clip while an honest upload of it is in flight."""
    return (
        s.scalar(
            select(func.count())
            .select_from(Upload)
            .where(
                Upload.clip_id == upload.clip_id,
                Upload.id != upload.id,
                Upload.state == UploadState.processing,
            )
        )
        > 0
    )


def _record_ingest(ctx: Context, upload: Upload, facts: MediaFacts) -> None:
    with ctx.db.write_session() as s:
        clip = s.get(Clip, upload.clip_id)
        assert clip is not None
        if clip.state not in (ClipState.verifying, ClipState.rejected):
            return  # another worker got here first
        clip.state = (ClipState.stored if facts.playable else ClipState.unplayable).value
        clip.duration_ms = facts.duration_ms
        clip.container = facts.container
        clip.video_codec = facts.video_codec
        clip.audio_codec = facts.audio_codec
        clip.width, clip.height = facts.width, facts.height
        clip.frame_rate = facts.frame_rate
        clip.rotation = facts.rotation
        clip.media_error = facts.error
        if clip.recorded_at is None:
            clip.recorded_at = facts.creation_time
        if clip.gps is None and facts.gps:
            clip.gps = facts.gps
        if clip.gps is None and clip.sidecar and isinstance(clip.sidecar.get("gps"), dict):
            clip.gps = clip.sidecar["gps"]
        remember_name(s, clip.id, upload.filename, upload.device_id)
        attribution = attribute_at_ingest(
            ctx.ledger,
            s,
            clip,
            sidecar=upload.sidecar,
            tags=facts.tags,
            source=upload.source,
            filename=upload.filename,
            docked_at=upload.created_at,
            actor=WORKER,
        )
        ctx.ledger.append_in(
            s,
            "clip.ingested",
            actor=WORKER,
            subject={"clip": clip.id, "upload": upload.id, "device": upload.device_id},
            sha256=upload.sha256,
            size=upload.size,
            original=original_key(upload.sha256),
            officer_id=clip.officer_id,
            camera_serial=clip.camera_serial,
            recorded_at=clock.rfc3339(clip.recorded_at) if clip.recorded_at else None,
            media=facts.as_dict(),
            attribution=attribution.as_entry(),
        )
        retention.schedule_in(ctx, s, clip, actor=WORKER)


ProgressFn = Callable[[float], None] | None


def _proxy(src: Path, out: Path, sha256: str, progress: ProgressFn) -> Recipe:
    return make_proxy(src, out, input_sha256=sha256, progress=progress)


def _thumbnail(src: Path, out: Path, sha256: str, progress: ProgressFn) -> Recipe:
    return make_thumbnail(src, out, input_sha256=sha256)


# kind: (file name under derived/{clip_id}/, how to make it)
DERIVATIVES: dict[str, tuple[str, Callable[[Path, Path, str, ProgressFn], Recipe]]] = {
    "proxy": ("proxy.mp4", _proxy),
    "thumbnail": ("thumbnail.jpg", _thumbnail),
}


def _make_derivatives(
    ctx: Context,
    clip_id: str,
    src: Path,
    work: Path,
    sha256: str,
    progress: Callable[[str, float], None] | None,
) -> None:
    """Make the review copies of `src` (read only: it may be the stored original itself)
    in the work directory `work`, and store them."""
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
        assert clip is not None
        if clip.state not in (ClipState.stored, ClipState.ready):
            return  # unplayable or rejected: nothing to derive
        done = set(s.scalars(select(Derivative.kind).where(Derivative.clip_id == clip_id)))
    for kind, (name, make) in DERIVATIVES.items():
        if kind in done:
            continue
        out = work / name
        report = (lambda f, k=kind: progress(k, f)) if progress else None
        recipe = make(src, out, sha256, report)
        key = f"derived/{clip_id}/{name}"
        with out.open("rb") as f:
            # Write-once: a second worker (a redelivered task) makes the same bytes, since
            # the recipe is deterministic, and may not replace what the ledger vouches for.
            stored = ctx.store.put(key, f, expected_sha256=recipe.output_sha256, write_once=True)
        record_derivative(ctx, clip_id, kind, key, stored.sha256, stored.size, recipe)


def derive(ctx: Context, clip_id: str, src: Path, work: Path, sha256: str) -> None:
    """Proxy and thumbnail of a stored, playable clip whose original is `src` (read only),
    made in `work`: what every clip gets, however it arrived (evidence/submissions too)."""
    _make_derivatives(ctx, clip_id, src, work, sha256, None)


def _finish(ctx: Context, upload_id: str) -> None:
    with ctx.db.write_session() as s:
        upload = s.get(Upload, upload_id)
        assert upload is not None
        upload.state = UploadState.stored.value
        clip = s.get(Clip, upload.clip_id)
        if clip is not None and clip.state == ClipState.stored:
            kinds = set(s.scalars(select(Derivative.kind).where(Derivative.clip_id == clip.id)))
            if kinds >= DERIVATIVES.keys():
                clip.state = ClipState.ready.value


def stalled_uploads(ctx: Context, older_than: dt.timedelta) -> list[str]:
    """Uploads completed long ago but still processing: their task was lost (the embedded
    broker does not redeliver after a crash). The scheduler enqueues them again."""
    cutoff = clock.now() - older_than
    last_sign = func.coalesce(Upload.heartbeat_at, Upload.completed_at)
    with ctx.db.session() as s:
        return list(
            s.scalars(
                select(Upload.id).where(Upload.state == UploadState.processing, last_sign < cutoff)
            )
        )


def abandon_stale_uploads(ctx: Context, older_than: dt.timedelta | None = None) -> list[str]:
    """Pending uploads with no sign of life (declared, or declared again) for `older_than`
    (default: EVIDENCE_UPLOAD_ABANDON_HOURS): their multipart uploads are aborted, so the
    storage stops keeping parts nobody will complete, and they are marked abandoned with a
    ledger entry. A dock that comes back later simply declares again and starts afresh.

    Storage first, then the record: if the device declares again in between, its upload
    stays pending and the next declaration finds the multipart gone and opens a new one.
    """
    older_than = older_than or dt.timedelta(hours=ctx.settings.upload_abandon_hours)
    cutoff = clock.now() - older_than
    last_sign = func.coalesce(Upload.heartbeat_at, Upload.created_at)
    with ctx.db.session() as s:
        stale = s.scalars(
            select(Upload).where(Upload.state == UploadState.pending, last_sign < cutoff)
        ).all()
    done = []
    for upload in stale:
        if upload.multipart_id is not None:
            ctx.store.abort_multipart(upload.incoming_key, upload.multipart_id)
        ctx.store.delete(upload.incoming_key)
        with ctx.db.write_session() as s:
            u = s.get(Upload, upload.id)
            if u is None or u.state != UploadState.pending:
                continue
            if (u.heartbeat_at or u.created_at) >= cutoff:
                continue  # declared again meanwhile
            u.state = UploadState.abandoned.value
            u.error = f"no sign of the device for more than {older_than}; declare again"
            ctx.ledger.append_in(
                s,
                "upload.abandoned",
                actor="system:scheduler",
                subject={"upload": u.id, "device": u.device_id},
                sha256=u.sha256,
                size=u.size,
                declared_at=clock.rfc3339(u.created_at),
            )
        done.append(upload.id)
    return done
