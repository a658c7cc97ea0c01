"""Conformance suite of the object store: every test runs against both backends.

- `local`: LocalStore in a temporary directory; its presigned URLs are served by
  api/routes/objects.py on a real uvicorn server.
- `s3`: S3Store against a real Ceph RADOS Gateway over HTTP (tests/fixtures/s3.py).

Both must behave identically; the few backend-specific checks (S3 versions, file modes) are
in helpers or marked as such. Retention on S3 uses GOVERNANCE with short or far dates, and
COMPLIANCE only in a bucket abandoned with the throwaway cluster.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import random
import stat
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from minio.commonconfig import GOVERNANCE
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

import evidence.storage.local as local_mod
from api import problems
from api.routes.objects import router as objects_router
from evidence import clock
from evidence.config import Settings
from evidence.errors import (
    AccessDenied,
    EvidenceError,
    HashMismatch,
    InvalidInput,
    ObjectLocked,
    ObjectNotFound,
    RangeNotSatisfiable,
    UploadNotFound,
    WriteOnceViolation,
)
from evidence.storage import (
    CHUNK,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    ObjectStore,
    PartInfo,
    PlannedPart,
    open_store,
    parse_range_header,
    plan_parts,
    sha256_chunks,
    sha256_stream,
)
from evidence.storage.local import LocalStore
from evidence.storage.s3 import PART_SIZE, S3Store, parse_s3_time
from tests.fixtures.s3 import S3Server
from tests.fixtures.services import free_port, wait_until

MiB = 1024 * 1024
BACKENDS = ["local", "s3"]


# --- test data ----------------------------------------------------------------------------


class PatternStream:
    """`size` pseudo-random bytes produced on demand in 64 KiB blocks: a multi-MiB stream
    that never exists whole in memory. Same seed, same bytes, whatever the read sizes."""

    BLOCK = 64 * 1024

    def __init__(self, size: int, seed: int | str = 0):
        self.remaining = size
        self._rng = random.Random(seed)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.remaining
        n = min(n, self.remaining)
        while len(self._buf) < n:
            self._buf += self._rng.randbytes(self.BLOCK)
        out, self._buf = self._buf[:n], self._buf[n:]
        self.remaining -= len(out)
        return out


def pattern_sha256(size: int, seed: int | str) -> str:
    return sha256_stream(PatternStream(size, seed))[0]  # type: ignore[arg-type]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unique_bytes(n: int = 1000) -> bytes:
    """Fresh bytes per call: originals are content-addressed and S3 buckets are shared per
    module, so every test needs originals nobody else wrote (and maybe locked)."""
    return os.urandom(n)


def read_all(store: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open(key, start, end))


def later(seconds: float) -> dt.datetime:
    return clock.now() + dt.timedelta(seconds=seconds)


# --- fixtures -----------------------------------------------------------------------------


class LiveServer:
    """The objects router on a real uvicorn server in a thread (one per module)."""

    def __init__(self) -> None:
        self.app = FastAPI()
        self.app.include_router(objects_router)
        problems.install(self.app)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        wait_until(lambda: self.server.started, 20, "uvicorn")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


def make_store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **overrides: object
) -> ObjectStore:
    if backend == "local":
        live: LiveServer = request.getfixturevalue("live")
        settings = Settings(
            data_dir=tmp_path / "var", storage_backend="local", public_url=live.url, **overrides
        )
        store = open_store(settings)
        live.app.state.store = store
        return store
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    bucket = overrides.pop("bucket", bucket)  # type: ignore[assignment]
    return open_store(server.settings(bucket, tmp_path / "var", **overrides))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return make_store(request.param, request, tmp_path)


@pytest.fixture
def ns() -> str:
    """A key prefix of this test's own (S3 buckets are shared by a module's tests)."""
    return f"t{uuid.uuid4().hex[:10]}"


def leftovers(store: ObjectStore, key: str) -> list[str]:
    """Anything still stored under exactly `key`: S3 versions and delete markers, or the
    local file and its metadata record."""
    if isinstance(store, S3Store):
        return [
            f"version {v.version_id} (delete marker: {v.is_delete_marker})"
            for v in store.client.list_objects(
                store.bucket, prefix=key, recursive=True, include_version=True
            )
            if v.object_name == key
        ]
    assert isinstance(store, LocalStore)
    found = []
    for p in (store.root / key, store.root / ".meta" / key):
        if os.path.lexists(p):
            found.append(str(p))
    return found


def staging_leftovers(store: ObjectStore) -> list[str]:
    """In-flight upload debris: S3 `tmp/` versions, or files in the local `.tmp/`."""
    if isinstance(store, S3Store):
        return [
            str(v.object_name)
            for v in store.client.list_objects(
                store.bucket, prefix="tmp/", recursive=True, include_version=True
            )
        ]
    assert isinstance(store, LocalStore)
    return os.listdir(store.root / ".tmp")


# --- streaming put ------------------------------------------------------------------------


def test_streaming_put_hashes_multi_mib_stream(store: ObjectStore, ns: str) -> None:
    size = 2 * PART_SIZE + 3 * MiB + 123  # several S3 parts, not a multiple of anything
    seed = f"{ns}-big"
    result = store.put(f"{ns}/big", PatternStream(size, seed))  # type: ignore[arg-type]
    want = pattern_sha256(size, seed)
    assert (result.key, result.sha256, result.size) == (f"{ns}/big", want, size)
    info = store.stat(f"{ns}/big")
    assert (info.size, info.sha256) == (size, want)
    assert sha256_chunks(store.open(f"{ns}/big")) == (want, size)
    assert staging_leftovers(store) == []


def test_memory_stays_flat(store: ObjectStore, ns: str) -> None:
    size = 160 * MiB  # ten S3 parts: a peak proportional to the size could not hide
    tracemalloc.start()
    try:
        store.put(f"{ns}/flat", PatternStream(size, ns))  # type: ignore[arg-type]
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest, n = sha256_chunks(store.open(f"{ns}/flat"))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    store.delete(f"{ns}/flat")  # memstore OSD: give the RAM back
    assert (digest, n) == (pattern_sha256(size, ns), size)
    # Local: a chunk or two. S3: about three parts (minio copies a part while assembling it
    # and still holds the previous one), plus this test stream's own buffer.
    put_limit = 8 * MiB if isinstance(store, LocalStore) else 3 * PART_SIZE + 4 * MiB
    assert put_peak < put_limit, f"put peaked at {put_peak / MiB:.1f} MiB"
    assert read_peak < 4 * MiB, f"read peaked at {read_peak / MiB:.1f} MiB"


def test_empty_object(store: ObjectStore, ns: str) -> None:
    result = store.put(f"{ns}/empty", io.BytesIO(b""))
    assert (result.sha256, result.size) == (sha(b""), 0)
    assert read_all(store, f"{ns}/empty") == b""
    with pytest.raises(RangeNotSatisfiable):
        read_all(store, f"{ns}/empty", 0, 0)


# --- writing: objects produced as they are written (a court bundle's ZIP) ------------------


def test_writing_installs_the_bytes_only_when_the_block_ends(store: ObjectStore, ns: str) -> None:
    size = PART_SIZE + 3 * MiB + 7  # more than one S3 part, not a multiple of anything
    source = PatternStream(size, ns)
    with store.writing(f"{ns}/zip") as out:
        out.write(source.read(MiB))
        assert not store.exists(f"{ns}/zip")  # nothing at the key while it is being written
        while chunk := source.read(CHUNK):
            out.write(chunk)
        assert out.tell() == size
    want = pattern_sha256(size, ns)
    assert (out.sha256, out.size) == (want, size)
    info = store.stat(f"{ns}/zip")
    assert (info.sha256, info.size) == (want, size)  # the recorded hash is the stored bytes'
    assert sha256_chunks(store.open(f"{ns}/zip")) == (want, size)
    assert staging_leftovers(store) == []


def test_a_writing_block_that_fails_leaves_nothing_and_keeps_what_was_there(
    store: ObjectStore, ns: str
) -> None:
    store.put(f"{ns}/zip", io.BytesIO(b"the complete earlier object"))
    source = PatternStream(PART_SIZE + MiB, ns)
    with pytest.raises(OSError, match="half-way"), store.writing(f"{ns}/zip") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
        raise OSError("the producer failed half-way")
    assert read_all(store, f"{ns}/zip") == b"the complete earlier object"
    with pytest.raises(OSError), store.writing(f"{ns}/new") as out:
        out.write(b"half an object")
        raise OSError("again")
    assert not store.exists(f"{ns}/new")
    assert leftovers(store, f"{ns}/new") == []
    assert staging_leftovers(store) == []


def test_writing_refuses_a_write_once_key_and_leaves_it(store: ObjectStore, ns: str) -> None:
    store.put(f"{ns}/wo", io.BytesIO(b"abc"), write_once=True)
    with pytest.raises(WriteOnceViolation), store.writing(f"{ns}/wo") as out:
        out.write(b"xyz")
    assert read_all(store, f"{ns}/wo") == b"abc"
    assert staging_leftovers(store) == []


# --- expected hash, write-once, originals -------------------------------------------------


def test_expected_hash_mismatch_leaves_nothing(store: ObjectStore, ns: str) -> None:
    data = b"the bytes that arrived"
    wrong = sha(b"the bytes that were announced")
    with pytest.raises(HashMismatch) as err:
        store.put(f"{ns}/clip", io.BytesIO(data), expected_sha256=wrong)
    assert (err.value.expected, err.value.actual) == (wrong, sha(data))
    assert not store.exists(f"{ns}/clip")
    assert leftovers(store, f"{ns}/clip") == []
    assert staging_leftovers(store) == []


def test_expected_hash_mismatch_keeps_existing_object(store: ObjectStore, ns: str) -> None:
    store.put(f"{ns}/k", io.BytesIO(b"good"))
    with pytest.raises(HashMismatch):
        store.put(f"{ns}/k", io.BytesIO(b"evil"), expected_sha256=sha(b"other"))
    assert read_all(store, f"{ns}/k") == b"good"


def test_write_once_same_bytes_is_a_noop(store: ObjectStore, ns: str) -> None:
    first = store.put(f"{ns}/wo", io.BytesIO(b"abc"), write_once=True)
    again = store.put(f"{ns}/wo", io.BytesIO(b"abc"), write_once=True)
    assert first == again
    assert read_all(store, f"{ns}/wo") == b"abc"
    if isinstance(store, S3Store):  # a no-op really writes nothing: still one version
        assert len(leftovers(store, f"{ns}/wo")) == 1


def test_write_once_different_bytes_is_refused(store: ObjectStore, ns: str) -> None:
    store.put(f"{ns}/wo", io.BytesIO(b"abc"), write_once=True)
    with pytest.raises(WriteOnceViolation):
        store.put(f"{ns}/wo", io.BytesIO(b"xyz"), write_once=True)
    # A plain put cannot overwrite a write-once object either.
    with pytest.raises(WriteOnceViolation):
        store.put(f"{ns}/wo", io.BytesIO(b"xyz"))
    assert read_all(store, f"{ns}/wo") == b"abc"
    assert store.stat(f"{ns}/wo").sha256 == sha(b"abc")
    assert staging_leftovers(store) == []


def test_write_once_race_has_one_winner(store: ObjectStore, ns: str) -> None:
    key = f"{ns}/race"
    payloads = [f"writer {i}".encode() * 1000 for i in range(4)]
    barrier = threading.Barrier(len(payloads))
    outcomes: list[object] = [None] * len(payloads)

    def write(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = store.put(key, io.BytesIO(payloads[i]), write_once=True)
        except WriteOnceViolation as e:
            outcomes[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in enumerate(outcomes) if not isinstance(o, WriteOnceViolation)]
    assert len(winners) == 1, outcomes
    assert read_all(store, key) == payloads[winners[0]]
    if isinstance(store, S3Store):  # losers removed their versions
        assert len(leftovers(store, key)) == 1


def test_put_original(store: ObjectStore) -> None:
    data = unique_bytes()
    digest = sha(data)
    result = store.put_original(io.BytesIO(data), digest)
    assert (result.key, result.sha256, result.size) == (f"originals/{digest}", digest, len(data))
    assert store.put_original(io.BytesIO(data), digest) == result  # docked twice: one original
    other = unique_bytes()
    with pytest.raises(HashMismatch):
        store.put_original(io.BytesIO(other), digest)
    with pytest.raises(HashMismatch):
        store.put_original(io.BytesIO(other), sha(b"claimed"))
    assert not store.exists(f"originals/{sha(b'claimed')}")
    assert read_all(store, result.key) == data
    with pytest.raises(InvalidInput):
        store.put_original(io.BytesIO(data), "not-a-digest")
    if isinstance(store, LocalStore):  # originals are read-only files
        assert stat.S_IMODE((store.root / result.key).stat().st_mode) == 0o444


# --- promote ------------------------------------------------------------------------------


def test_promote_moves_and_is_idempotent(store: ObjectStore, ns: str) -> None:
    data = unique_bytes(3 * MiB + 5)
    digest = sha(data)
    src = f"incoming/{ns}"
    store.put(src, io.BytesIO(data))
    result = store.promote(src, digest)
    assert (result.key, result.sha256, result.size) == (f"originals/{digest}", digest, len(data))
    assert read_all(store, result.key) == data
    assert not store.exists(src)
    assert leftovers(store, src) == []
    assert store.promote(src, digest) == result  # repeated (e.g. a retried task): no-op
    info = store.stat(result.key)
    assert info.sha256 == digest


def test_promote_when_original_exists_removes_source(store: ObjectStore, ns: str) -> None:
    data = unique_bytes()
    original = store.put_original(io.BytesIO(data), sha(data))
    store.put(f"incoming/{ns}", io.BytesIO(data))  # the same clip docked again
    assert store.promote(f"incoming/{ns}", sha(data)) == original
    assert leftovers(store, f"incoming/{ns}") == []


def test_promote_refuses_wrong_hash_and_keeps_source(store: ObjectStore, ns: str) -> None:
    store.put(f"incoming/{ns}", io.BytesIO(b"actual bytes"))
    wrong = sha(b"what the dock claimed")
    with pytest.raises(HashMismatch):
        store.promote(f"incoming/{ns}", wrong)
    assert read_all(store, f"incoming/{ns}") == b"actual bytes"
    assert not store.exists(f"originals/{wrong}")
    with pytest.raises(ObjectNotFound):
        store.promote(f"incoming/{ns}-missing", wrong)


def test_promote_copies_the_verified_bytes_not_a_later_upload(
    store: ObjectStore, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source is replaced right after promote hashed it: the original must hold the
    verified bytes and the newer upload must survive untouched."""
    verified, newer = unique_bytes(), b"re-uploaded after verification"
    src = f"incoming/{ns}"
    store.put(src, io.BytesIO(verified))
    swapped = False

    def replace_source_after(
        hasher: Callable[..., tuple[str, int]],
    ) -> Callable[..., tuple[str, int]]:
        def wrapper(*args: object) -> tuple[str, int]:
            nonlocal swapped
            result = hasher(*args)
            if not swapped:
                swapped = True
                store.put(src, io.BytesIO(newer))
            return result

        return wrapper

    if isinstance(store, S3Store):
        monkeypatch.setattr(store, "_hash_version", replace_source_after(store._hash_version))
    else:
        monkeypatch.setattr(local_mod, "_hash_file", replace_source_after(local_mod._hash_file))
    result = store.promote(src, sha(verified))
    assert swapped
    assert read_all(store, result.key) == verified
    assert read_all(store, src) == newer


def test_fetch_hashes_a_work_copy_and_promote_takes_that_version(
    store: ObjectStore, ns: str, tmp_path: Path
) -> None:
    """A worker fetches once (copy + SHA-256) and promotes what it fetched. Replaced in
    between, S3 still promotes exactly the fetched version (by id, not read again) and keeps
    the newer upload; the local store hashes through its pin and refuses bytes that changed.
    Either way no byte becomes an original that its worker did not hash."""
    fetched_bytes, newer = unique_bytes(2 * MiB + 3), unique_bytes(77)
    src = f"incoming/{ns}"
    store.put(src, io.BytesIO(fetched_bytes))
    copy = tmp_path / "work-copy"
    fetched = store.fetch(src, copy)
    assert (fetched.key, fetched.sha256, fetched.size) == (
        src,
        sha(fetched_bytes),
        copy.stat().st_size,
    )
    assert copy.read_bytes() == fetched_bytes
    with pytest.raises(FileExistsError):  # a work file is never overwritten
        store.fetch(src, copy)
    with pytest.raises(ObjectNotFound):
        store.fetch(f"{src}-missing", tmp_path / "none")

    store.put(src, io.BytesIO(newer))  # a new upload to the same key after the fetch
    if isinstance(store, S3Store):
        result = store.promote(src, fetched.sha256, fetched=fetched)
        assert read_all(store, result.key) == fetched_bytes
        assert read_all(store, src) == newer
    else:
        with pytest.raises(HashMismatch):
            store.promote(src, fetched.sha256, fetched=fetched)
        assert read_all(store, src) == newer
        assert not store.exists(f"originals/{fetched.sha256}")


# --- ranged reads -------------------------------------------------------------------------


def test_ranged_reads(store: ObjectStore, ns: str) -> None:
    size = 3 * CHUNK + 17  # spans several read chunks
    data = PatternStream(size, ns).read(size)
    key = f"{ns}/ranges"
    store.put(key, io.BytesIO(data))
    cases = [
        (0, 0),  # first byte
        (0, 9),
        (size // 2, size // 2 + 99),  # middle
        (CHUNK - 1, CHUNK),  # across a chunk boundary
        (CHUNK, 2 * CHUNK - 1),  # exactly one chunk
        (size - 1, size - 1),  # last byte
        (0, size - 1),  # exact whole range
    ]
    for start, end in cases:
        assert read_all(store, key, start, end) == data[start : end + 1], (start, end)
    assert read_all(store, key, size - 10) == data[-10:]  # from an offset to the end
    assert read_all(store, key, 5, size + 1000) == data[5:]  # end beyond the object: clamped
    assert read_all(store, key) == data
    for start in (size, size + 1):
        with pytest.raises(RangeNotSatisfiable):
            read_all(store, key, start)
    with pytest.raises(InvalidInput):
        read_all(store, key, 10, 5)
    with pytest.raises(InvalidInput):
        read_all(store, key, -1)


def test_missing_objects(store: ObjectStore, ns: str) -> None:
    key = f"{ns}/nothing"
    assert not store.exists(key)
    for call in (
        lambda: store.open(key),
        lambda: store.stat(key),
        lambda: store.set_retention(key, later(3600)),
        lambda: store.set_legal_hold(key, True),
    ):
        with pytest.raises(ObjectNotFound):
            call()
    store.delete(key)  # deleting what is not there is a no-op (idempotent tasks)


# --- retention, legal hold, delete --------------------------------------------------------


def test_retention_blocks_delete_and_shortening_allows_extension(
    store: ObjectStore,
) -> None:
    data = unique_bytes()
    until = later(86400)
    obj = store.put_original(io.BytesIO(data), sha(data), retain_until=until)
    info = store.stat(obj.key)
    assert info.retention_mode == "GOVERNANCE"
    assert info.retain_until is not None
    assert abs(info.retain_until - until) < dt.timedelta(milliseconds=1)
    with pytest.raises(ObjectLocked):
        store.delete(obj.key)
    with pytest.raises(ObjectLocked):
        store.set_retention(obj.key, until - dt.timedelta(hours=1))
    with pytest.raises(InvalidInput):
        store.set_retention(obj.key, later(-60))  # a date in the past is no retention
    longer = until + dt.timedelta(days=1)
    store.set_retention(obj.key, longer)
    assert abs(store.stat(obj.key).retain_until - longer) < dt.timedelta(milliseconds=1)  # type: ignore[operator]
    # An idempotent re-put may extend retention too, but never shortens it.
    store.put_original(io.BytesIO(data), sha(data), retain_until=until)
    assert store.stat(obj.key).retain_until >= longer - dt.timedelta(milliseconds=1)  # type: ignore[operator]
    assert read_all(store, obj.key) == data  # intact after every refusal


def test_retention_expiry_allows_delete(store: ObjectStore, ns: str) -> None:
    key = f"{ns}/short"
    until = later(3)
    store.put(key, io.BytesIO(b"kept for 3 s"), retain_until=until)
    with pytest.raises(ObjectLocked):
        store.delete(key)
    with pytest.raises(ObjectLocked):
        store.put(key, io.BytesIO(b"replacement"))  # no replacing a locked object either
    assert read_all(store, key) == b"kept for 3 s"
    time.sleep(max(0.0, (until - clock.now()).total_seconds()) + 1.0)
    store.delete(key)
    assert not store.exists(key)
    assert leftovers(store, key) == []


def test_legal_hold_blocks_delete(store: ObjectStore, ns: str) -> None:
    key = f"{ns}/held"
    store.put(key, io.BytesIO(b"exhibit"))
    store.set_legal_hold(key, True)
    assert store.stat(key).legal_hold
    with pytest.raises(ObjectLocked):
        store.delete(key)
    assert read_all(store, key) == b"exhibit"
    store.set_legal_hold(key, False)
    assert not store.stat(key).legal_hold
    store.delete(key)
    assert leftovers(store, key) == []


def test_delete_removes_every_version(store: ObjectStore, ns: str) -> None:
    key = f"{ns}/versions"
    store.put(key, io.BytesIO(b"v1"))
    store.put(key, io.BytesIO(b"v2"))  # on S3, a second version
    assert read_all(store, key) == b"v2"
    if isinstance(store, S3Store):
        assert len(leftovers(store, key)) == 2
    store.delete(key)
    assert not store.exists(key)
    assert leftovers(store, key) == []
    with pytest.raises(ObjectNotFound):
        store.open(key)


def test_delete_refuses_when_an_older_version_is_locked(store: ObjectStore, ns: str) -> None:
    key = f"{ns}/old-locked"
    store.put(key, io.BytesIO(b"held"))
    store.set_legal_hold(key, True)
    if isinstance(store, S3Store):
        # Only S3 keeps older versions: a newer plain version on top of a held one.
        store.client.put_object(store.bucket, key, io.BytesIO(b"newer"), 5)
        with pytest.raises(ObjectLocked):
            store.delete(key)
        assert len(leftovers(store, key)) == 2
    else:
        with pytest.raises(ObjectLocked):
            store.delete(key)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compliance_mode(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    overrides: dict[str, object] = {"object_lock_mode": "COMPLIANCE"}
    if backend == "s3":
        # COMPLIANCE objects can never be deleted: use a bucket abandoned with the cluster.
        overrides["bucket"] = request.getfixturevalue("s3_bucket") + "-compliance"
    store = make_store(backend, request, tmp_path / backend, **overrides)
    data = unique_bytes()
    obj = store.put_original(io.BytesIO(data), sha(data), retain_until=later(86400))
    assert store.stat(obj.key).retention_mode == "COMPLIANCE"
    with pytest.raises(ObjectLocked):
        store.delete(obj.key)
    with pytest.raises(ObjectLocked):
        store.set_retention(obj.key, later(3600))
    store.set_retention(obj.key, later(2 * 86400))
    assert store.stat(obj.key).retention_mode == "COMPLIANCE"
    if isinstance(store, S3Store):  # the server itself refuses, even with bypass
        errors = list(
            store.client.remove_objects(
                store.bucket,
                [DeleteObject(obj.key, store.client.stat_object(store.bucket, obj.key).version_id)],
                bypass_governance_mode=True,
            )
        )
        assert errors and errors[0].code == "AccessDenied"
    assert read_all(store, obj.key) == data


# --- listing ------------------------------------------------------------------------------


def test_list(store: ObjectStore, ns: str) -> None:
    keys = [f"{ns}/a", f"{ns}/b/c", f"{ns}/b-d", f"{ns}/bz", f"{ns}/b/e/f"]
    for k in keys:
        store.put(k, io.BytesIO(k.encode()))
    store.set_legal_hold(f"{ns}/bz", True)
    listed = list(store.list(f"{ns}/"))
    assert [i.key for i in listed] == sorted(keys)  # S3 key order
    assert [i.key for i in store.list(f"{ns}/b")] == sorted(
        k for k in keys if k.startswith(f"{ns}/b")
    )
    assert [i.key for i in store.list(f"{ns}/b/")] == [f"{ns}/b/c", f"{ns}/b/e/f"]
    info = {i.key: i for i in listed}[f"{ns}/bz"]
    assert (info.size, info.sha256, info.legal_hold) == (len(keys[3]), sha(keys[3].encode()), True)
    assert list(store.list(f"{ns}-nothing/")) == []
    store.set_legal_hold(f"{ns}/bz", False)


# --- keys ---------------------------------------------------------------------------------

BAD_KEYS = [
    "",
    "/etc/passwd",
    "../escape",
    "a/../../escape",
    "a/./b",
    "a//b",
    "a/",
    ".meta/x",
    "a/.hidden",
    "tmp/reserved",
    "a\\b",
    "a\x00b",
    "a\nb",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected(store: ObjectStore, key: str, tmp_path: Path) -> None:
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidInput):
        store.put(key, io.BytesIO(b"x"))
    for call in (
        lambda: store.open(key),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.set_legal_hold(key, True),
        lambda: store.presign_put(key, dt.timedelta(minutes=1)),
        lambda: store.promote(key, sha(b"x")),
        lambda: store.create_multipart(key),
        lambda: store.presign_part(key, "0" * 32, 1, dt.timedelta(minutes=1)),
    ):
        with pytest.raises(InvalidInput):
            call()
    # Nothing was written anywhere near the store (for S3: not even staging).
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert staging_leftovers(store) == []


def test_local_key_that_is_also_a_prefix_is_refused(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = make_store("local", request, tmp_path)
    store.put("a/b", io.BytesIO(b"1"))
    with pytest.raises(InvalidInput):
        store.put("a", io.BytesIO(b"2"))
    with pytest.raises(InvalidInput):
        store.put("a/b/c", io.BytesIO(b"3"))
    assert read_all(store, "a/b") == b"1"


# --- presigned URLs over real HTTP --------------------------------------------------------


def test_presigned_put_then_ranged_get(store: ObjectStore, ns: str) -> None:
    key = f"incoming/{ns}"
    data = PatternStream(3 * MiB + 7, ns).read(3 * MiB + 7)
    put_url = store.presign_put(key, dt.timedelta(minutes=5))
    r = httpx.put(put_url, content=data, timeout=60)
    assert r.status_code == 200, r.text
    assert store.stat(key).size == len(data)
    assert sha256_chunks(store.open(key)) == (sha(data), len(data))

    get_url = store.presign_get(key, dt.timedelta(minutes=5))
    with httpx.Client(timeout=60) as http:
        r = http.get(get_url)
        assert (r.status_code, r.content) == (200, data)
        r = http.get(get_url, headers={"Range": "bytes=0-0"})
        assert (r.status_code, r.content) == (206, data[:1])
        assert r.headers["content-range"] == f"bytes 0-0/{len(data)}"
        r = http.get(get_url, headers={"Range": f"bytes={MiB}-{MiB + 99}"})
        assert (r.status_code, r.content) == (206, data[MiB : MiB + 100])
        assert r.headers["content-range"] == f"bytes {MiB}-{MiB + 99}/{len(data)}"
        r = http.get(get_url, headers={"Range": "bytes=-5"})
        assert (r.status_code, r.content) == (206, data[-5:])
        r = http.get(get_url, headers={"Range": f"bytes={len(data) - 3}-"})
        assert (r.status_code, r.content) == (206, data[-3:])
        r = http.get(get_url, headers={"Range": f"bytes={len(data)}-"})
        assert r.status_code == 416


def test_local_presigned_put_streams_a_chunked_body(
    request: pytest.FixtureRequest, tmp_path: Path, ns: str
) -> None:
    # Local only: S3 presigned PUTs need a Content-Length (big clips go multipart instead).
    store = make_store("local", request, tmp_path)
    size = 20 * MiB + 1
    stream = PatternStream(size, ns)
    body = iter(lambda: stream.read(256 * 1024), b"")  # no length: chunked transfer encoding
    r = httpx.put(
        store.presign_put(f"incoming/{ns}", dt.timedelta(minutes=5)), content=body, timeout=120
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"key": f"incoming/{ns}", "sha256": pattern_sha256(size, ns), "size": size}


def _tamper(url: str, param: str) -> str:
    u = httpx.URL(url)
    value = u.params[param]
    flipped = "0" if value[-1] != "0" else "1"
    return str(u.copy_set_param(param, value[:-1] + flipped))


def test_tampered_or_expired_presigned_urls_are_refused(store: ObjectStore, ns: str) -> None:
    key = f"{ns}/secret"
    store.put(key, io.BytesIO(b"footage"))
    good = store.presign_get(key, dt.timedelta(minutes=5))
    sig = "X-Amz-Signature" if isinstance(store, S3Store) else "signature"
    expiry = "X-Amz-Expires" if isinstance(store, S3Store) else "expires"
    with httpx.Client(timeout=30) as http:
        assert http.get(good).status_code == 200
        assert http.get(_tamper(good, sig)).status_code == 403
        assert http.get(_tamper(good, expiry)).status_code == 403
        other = good.replace(f"/{key}?", f"/{ns}/other?")  # a valid signature for another key
        store.put(f"{ns}/other", io.BytesIO(b"other"))
        assert http.get(other).status_code == 403
        # A GET URL is not a PUT URL.
        assert http.put(good, content=b"overwrite").status_code == 403
        assert read_all(store, key) == b"footage"
        # Signed two hours ago for one hour: expired.
        real_now = clock.now()
        clock.set_clock(lambda: real_now - dt.timedelta(hours=2))
        try:
            expired = store.presign_get(key, dt.timedelta(hours=1))
        finally:
            clock.set_clock(None)
        r = http.get(expired)
        assert r.status_code == 403
        if isinstance(store, LocalStore):
            assert r.headers["content-type"] == "application/problem+json"
    with pytest.raises(InvalidInput):
        store.presign_get(key, dt.timedelta(days=8))


# --- multipart uploads through presigned URLs ---------------------------------------------


class Clip:
    """A generated clip of `size` bytes to upload in parts. Each part's bytes are made on
    demand (seeded per part), so neither the clip nor a part ever exists whole in memory."""

    def __init__(self, size: int, seed: str, part_size: int | None = None):
        self.size = size
        self.seed = seed
        self.plan = plan_parts(size, part_size)

    def part(self, number: int) -> PlannedPart:
        return self.plan[number - 1]

    def stream(self, part: PlannedPart) -> PatternStream:
        return PatternStream(part.length, f"{self.seed}-{part.number}")

    def md5(self, part: PlannedPart) -> str:
        h = hashlib.md5(usedforsecurity=False)
        stream = self.stream(part)
        while chunk := stream.read(CHUNK):
            h.update(chunk)
        return h.hexdigest()

    def info(self, number: int) -> PartInfo:
        part = self.part(number)
        return PartInfo(number, part.length, self.md5(part))

    def sha256(self) -> str:
        h = hashlib.sha256()
        for part in self.plan:
            stream = self.stream(part)
            while chunk := stream.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()


def send_part(
    http: httpx.Client, url: str, stream: PatternStream, headers: dict[str, str] | None = None
) -> httpx.Response:
    """PUT a part's bytes as a dock does: streamed, with a Content-Length (S3 needs one)."""
    length = stream.remaining
    body = iter(lambda: stream.read(256 * 1024), b"")
    return http.put(url, content=body, headers={"Content-Length": str(length), **(headers or {})})


def upload_parts(
    store: ObjectStore, key: str, upload_id: str, clip: Clip, numbers: list[int]
) -> None:
    with httpx.Client(timeout=120) as http:
        for n in numbers:
            url = store.presign_part(key, upload_id, n, dt.timedelta(minutes=10))
            r = send_part(http, url, clip.stream(clip.part(n)))
            assert r.status_code == 200, r.text
            assert r.headers["etag"].strip('"') == clip.md5(clip.part(n))  # S3's UploadPart


def open_uploads(store: ObjectStore, key: str) -> list[str]:
    """Multipart uploads still open for `key`: S3's listing, or the local upload directories
    (one without a readable record, i.e. debris, counts too)."""
    if isinstance(store, S3Store):
        listing = store.client._list_multipart_uploads(store.bucket, prefix=key)
        return [str(u.upload_id) for u in listing.uploads if u.object_name == key]
    assert isinstance(store, LocalStore)
    found = []
    for upload in (store.root / ".multipart").iterdir():
        try:
            record = json.loads((upload / "upload").read_bytes())
        except (OSError, ValueError):
            record = {}
        if record.get("key", key) == key:
            found.append(upload.name)
    return found


def test_plan_parts() -> None:
    assert plan_parts(0) == [(1, 0, 0)]  # an empty file is one empty part
    assert plan_parts(8 * MiB) == [(1, 0, 8 * MiB)]
    assert plan_parts(20 * MiB + 5) == [
        (1, 0, 8 * MiB),
        (2, 8 * MiB, 8 * MiB),
        (3, 16 * MiB, 4 * MiB + 5),
    ]
    assert plan_parts(11 * MiB, part_size=MIN_PART_SIZE)[-1] == PlannedPart(3, 10 * MiB, MiB)
    for size in (100 * 1024**3 + 7, 5 * 1024**4):  # parts grow to stay within 10,000
        plan = plan_parts(size)
        assert len(plan) <= MAX_PARTS
        assert plan[0].length % MiB == 0 and plan[0].length > 8 * MiB
        assert sum(p.length for p in plan) == size
        assert all(p.offset == i * plan[0].length for i, p in enumerate(plan))
    for bad in (
        lambda: plan_parts(-1),
        lambda: plan_parts(5 * 1024**4 + 1),  # bigger than S3's largest object
        lambda: plan_parts(MiB, part_size=MIN_PART_SIZE - 1),
        lambda: plan_parts(MiB, part_size=MAX_PART_SIZE + 1),
        lambda: plan_parts(MAX_PARTS * MIN_PART_SIZE + 1, part_size=MIN_PART_SIZE),
    ):
        with pytest.raises(InvalidInput):
            bad()


def test_multipart_upload_out_of_order_through_presigned_urls(store: ObjectStore, ns: str) -> None:
    key = f"incoming/{ns}"
    clip = Clip(20 * MiB + 123, ns)  # three parts: 8 + 8 + 4 MiB
    upload_id = store.create_multipart(key)
    assert store.list_parts(key, upload_id) == []
    upload_parts(store, key, upload_id, clip, [3, 1, 2])
    assert store.list_parts(key, upload_id) == [clip.info(1), clip.info(2), clip.info(3)]
    assert not store.exists(key)  # nothing at the key before completion

    info = store.complete_multipart(key, upload_id)
    want = clip.sha256()
    assert (info.key, info.size) == (key, clip.size)
    # The local store hashes while joining; S3 joins server-side, digest unknown.
    assert info.sha256 == (want if isinstance(store, LocalStore) else None)
    assert sha256_chunks(store.open(key)) == (want, clip.size)
    with pytest.raises(UploadNotFound):
        store.list_parts(key, upload_id)
    assert open_uploads(store, key) == []
    assert staging_leftovers(store) == []


def test_multipart_resumes_in_a_new_process_skipping_listed_parts(
    store: ObjectStore, request: pytest.FixtureRequest, tmp_path: Path, ns: str
) -> None:
    key = f"incoming/{ns}"
    clip = Clip(20 * MiB + 123, ns)
    upload_id = store.create_multipart(key)
    upload_parts(store, key, upload_id, clip, [1, 3])
    # The agent is killed halfway through part 2: the half-sent part must not count.
    stream = clip.stream(clip.part(2))

    def dies_halfway() -> Iterator[bytes]:
        yield stream.read(3 * MiB)
        raise ConnectionAbortedError("dock agent killed")

    url = store.presign_part(key, upload_id, 2, dt.timedelta(minutes=10))
    with pytest.raises(ConnectionAbortedError):
        httpx.put(
            url,
            content=dies_halfway(),
            headers={"Content-Length": str(clip.part(2).length)},
            timeout=60,
        )

    if isinstance(store, LocalStore):  # the server dropped what it had spooled
        wait_until(lambda: staging_leftovers(store) == [], 10, "removal of the half part")

    # A new process knows only the key and the upload id.
    backend = "s3" if isinstance(store, S3Store) else "local"
    resumed = make_store(backend, request, tmp_path)
    held = resumed.list_parts(key, upload_id)
    assert held == [clip.info(1), clip.info(3)]
    todo = [p.number for p in clip.plan if p.number not in {h.number for h in held}]
    assert todo == [2]
    upload_parts(resumed, key, upload_id, clip, todo)
    info = resumed.complete_multipart(key, upload_id)
    assert info.size == clip.size
    assert sha256_chunks(resumed.open(key)) == (clip.sha256(), clip.size)
    assert open_uploads(resumed, key) == []


def test_multipart_complete_refuses_gaps_and_short_parts(store: ObjectStore, ns: str) -> None:
    key = f"incoming/{ns}"
    clip = Clip(2 * MIN_PART_SIZE + 100, ns, part_size=MIN_PART_SIZE)  # 5 MiB, 5 MiB, 100 B
    upload_id = store.create_multipart(key)
    with pytest.raises(InvalidInput, match="no parts"):
        store.complete_multipart(key, upload_id)
    upload_parts(store, key, upload_id, clip, [1, 3])
    with pytest.raises(InvalidInput, match="part 2 is missing"):
        store.complete_multipart(key, upload_id)
    with pytest.raises(InvalidInput, match="part 2 is missing"):
        store.complete_multipart(key, upload_id, [clip.info(1), clip.info(3)])
    assert store.list_parts(key, upload_id) == [clip.info(1), clip.info(3)]  # still open

    # A short part 2 (1 MiB) is refused by name; sent again in full, it replaces the short one.
    short = PatternStream(MiB, f"{ns}-short")
    with httpx.Client(timeout=60) as http:
        url = store.presign_part(key, upload_id, 2, dt.timedelta(minutes=10))
        assert send_part(http, url, short).status_code == 200
    short_part = store.list_parts(key, upload_id)[1]
    assert (short_part.number, short_part.size) == (2, MiB)
    with pytest.raises(InvalidInput, match=f"part 2 is {MiB} bytes"):
        store.complete_multipart(key, upload_id)
    upload_parts(store, key, upload_id, clip, [2])
    assert store.list_parts(key, upload_id) == [clip.info(1), clip.info(2), clip.info(3)]
    with pytest.raises(InvalidInput, match="part 1 is given more than once"):
        store.complete_multipart(key, upload_id, [clip.info(1), clip.info(1), clip.info(2)])
    with pytest.raises(InvalidInput, match="ETag"):  # a part listed before it was re-sent
        store.complete_multipart(key, upload_id, [clip.info(1), short_part, clip.info(3)])
    with pytest.raises(InvalidInput, match="part 4 has not been uploaded"):
        held = store.list_parts(key, upload_id)
        store.complete_multipart(key, upload_id, [*held, PartInfo(4, 1, "x")])
    assert not store.exists(key)

    info = store.complete_multipart(key, upload_id, store.list_parts(key, upload_id))
    assert info.size == clip.size
    assert sha256_chunks(store.open(key)) == (clip.sha256(), clip.size)
    assert open_uploads(store, key) == []


def test_multipart_abort_removes_staged_parts(store: ObjectStore, ns: str) -> None:
    key = f"incoming/{ns}"
    clip = Clip(300, ns)
    upload_id = store.create_multipart(key)
    other = store.create_multipart(f"{key}-other")
    upload_parts(store, key, upload_id, clip, [1])
    assert store.list_parts(key, upload_id) == [clip.info(1)]
    # An upload id is only good with its own key.
    with pytest.raises(UploadNotFound):
        store.list_parts(f"{key}-other", upload_id)
    store.abort_multipart(f"{key}-other", upload_id)  # no-op: not that key's upload
    assert store.list_parts(key, upload_id) == [clip.info(1)]

    url = store.presign_part(key, upload_id, 2, dt.timedelta(minutes=10))
    store.abort_multipart(key, upload_id)
    with pytest.raises(UploadNotFound):
        store.list_parts(key, upload_id)
    with pytest.raises(UploadNotFound):
        store.complete_multipart(key, upload_id)
    assert httpx.put(url, content=b"late part", timeout=30).status_code == 404
    store.abort_multipart(key, upload_id)  # idempotent
    store.abort_multipart(key, "f" * 32)  # never existed: a no-op too
    assert not store.exists(key)
    assert open_uploads(store, key) == []
    store.abort_multipart(f"{key}-other", other)
    assert open_uploads(store, f"{key}-other") == []
    if isinstance(store, LocalStore):
        assert os.listdir(store.root / ".multipart") == [] and staging_leftovers(store) == []


def test_tampered_part_urls_are_refused(store: ObjectStore, ns: str) -> None:
    key = f"incoming/{ns}"
    upload_id = store.create_multipart(key)
    other_upload = store.create_multipart(key)
    url = store.presign_part(key, upload_id, 3, dt.timedelta(minutes=5))
    u = httpx.URL(url)
    plain_put = httpx.URL(store.presign_put(key, dt.timedelta(minutes=5)))
    sig = "X-Amz-Signature" if isinstance(store, S3Store) else "signature"
    forged = [
        str(u.copy_set_param("partNumber", "4")),  # part 3's URL is not part 4's
        str(u.copy_set_param("partNumber", "03")),
        str(u.copy_set_param("uploadId", other_upload)),  # nor another upload's
        _tamper(url, sig),
        str(u.copy_remove_param("uploadId").copy_remove_param("partNumber")),  # nor a plain PUT
        # A plain PUT URL does not become a part URL by adding the parameters.
        str(plain_put.copy_set_param("uploadId", upload_id).copy_set_param("partNumber", "3")),
        url.replace(f"/{key}?", f"/{key}-other?"),
    ]
    with httpx.Client(timeout=30) as http:
        for bad in forged:
            r = http.put(bad, content=b"forged part")
            assert r.status_code == 403, (bad, r.status_code, r.text)
        assert http.get(url).status_code == 403  # a part URL is not a GET URL
        real_now = clock.now()
        clock.set_clock(lambda: real_now - dt.timedelta(hours=2))
        try:
            expired = store.presign_part(key, upload_id, 3, dt.timedelta(hours=1))
        finally:
            clock.set_clock(None)
        assert http.put(expired, content=b"late").status_code == 403
        assert store.list_parts(key, upload_id) == []
        assert store.list_parts(key, other_upload) == []
        assert not store.exists(key)
        assert http.put(url, content=b"the real part 3").status_code == 200
    assert [(p.number, p.size) for p in store.list_parts(key, upload_id)] == [(3, 15)]
    assert store.list_parts(key, other_upload) == []
    for uid in (upload_id, other_upload):
        store.abort_multipart(key, uid)


def test_part_content_md5_is_checked(store: ObjectStore, ns: str) -> None:
    key = f"incoming/{ns}"
    upload_id = store.create_multipart(key)
    url = store.presign_part(key, upload_id, 1, dt.timedelta(minutes=5))
    data = b"part bytes"
    wrong = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
    right = base64.b64encode(hashlib.md5(data).digest()).decode()
    with httpx.Client(timeout=30) as http:
        r = http.put(url, content=data, headers={"Content-MD5": wrong})
        # RGW: 400 BadDigest; the local store: 422 Hash mismatch (problem+json).
        assert r.status_code in (400, 422), r.status_code
        assert store.list_parts(key, upload_id) == []
        assert http.put(url, content=data, headers={"Content-MD5": right}).status_code == 200
    etag = hashlib.md5(data).hexdigest()
    assert store.list_parts(key, upload_id) == [PartInfo(1, len(data), etag)]
    store.abort_multipart(key, upload_id)


def test_plain_presigned_put_checks_content_md5(store: ObjectStore, ns: str) -> None:
    key = f"incoming/{ns}"
    url = store.presign_put(key, dt.timedelta(minutes=5))
    data = b"object bytes"
    wrong = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
    right = base64.b64encode(hashlib.md5(data).digest()).decode()
    with httpx.Client(timeout=30) as http:
        r = http.put(url, content=data, headers={"Content-MD5": wrong})
        assert r.status_code in (400, 422), r.status_code  # RGW BadDigest; local Hash mismatch
        assert not store.exists(key), "a damaged body stores nothing"
        assert http.put(url, content=data, headers={"Content-MD5": right}).status_code == 200
    assert b"".join(store.open(key)) == data


def test_multipart_refuses_write_once_locked_keys_and_bad_input(
    store: ObjectStore, ns: str
) -> None:
    store.put(f"{ns}/wo", io.BytesIO(b"once"), write_once=True)
    with pytest.raises(WriteOnceViolation):
        store.create_multipart(f"{ns}/wo")
    store.put(f"{ns}/held", io.BytesIO(b"exhibit"))
    store.set_legal_hold(f"{ns}/held", True)
    with pytest.raises(ObjectLocked):
        store.create_multipart(f"{ns}/held")
    store.set_legal_hold(f"{ns}/held", False)
    with pytest.raises(InvalidInput, match="originals"):
        store.create_multipart(f"originals/{sha(b'x')}")

    key = f"incoming/{ns}"
    upload_id = store.create_multipart(key)
    minute = dt.timedelta(minutes=1)
    for bad in (
        lambda: store.presign_part(key, upload_id, 0, minute),
        lambda: store.presign_part(key, upload_id, MAX_PARTS + 1, minute),
        lambda: store.presign_part(key, upload_id, True, minute),  # type: ignore[arg-type]
        lambda: store.presign_part(key, upload_id, 1, dt.timedelta(days=8)),
        lambda: store.presign_part(key, "", 1, minute),
        lambda: store.presign_part(key, "a b", 1, minute),
        lambda: store.list_parts(key, "a\nb"),
    ):
        with pytest.raises(InvalidInput):
            bad()
    assert store.presign_part(key, upload_id, MAX_PARTS, minute)

    # The key became write-once while the parts were uploading: completion is refused like
    # a plain put, and the upload stays open.
    clip = Clip(100, ns)
    upload_parts(store, key, upload_id, clip, [1])
    store.put(key, io.BytesIO(b"written meanwhile"), write_once=True)
    with pytest.raises(WriteOnceViolation):
        store.complete_multipart(key, upload_id)
    assert store.list_parts(key, upload_id) == [clip.info(1)]
    assert read_all(store, key) == b"written meanwhile"
    store.abort_multipart(key, upload_id)


def test_multipart_memory_stays_flat(store: ObjectStore, ns: str) -> None:
    """Parts are streamed in and joined chunk by chunk: the peak stays far below one part
    (the local store's HTTP server runs in this process, so it is measured too)."""
    key = f"incoming/{ns}"
    clip = Clip(48 * MiB + 1, ns, part_size=16 * MiB)
    tracemalloc.start()
    try:
        upload_id = store.create_multipart(key)
        upload_parts(store, key, upload_id, clip, [1, 2, 3, 4])
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        store.complete_multipart(key, upload_id)
        _, complete_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sha256_chunks(store.open(key)) == (clip.sha256(), clip.size)
    store.delete(key)  # memstore OSD: give the RAM back
    assert upload_peak < 8 * MiB, f"uploading parts peaked at {upload_peak / MiB:.1f} MiB"
    assert complete_peak < 4 * MiB, f"completing peaked at {complete_peak / MiB:.1f} MiB"


# --- backend-specific ---------------------------------------------------------------------


def test_local_part_larger_than_s3_allows_is_refused(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ns: str
) -> None:
    """S3 refuses parts above 5 GiB (EntityTooLarge); so does the local store, checked here
    with the limit lowered (nobody wants to send 5 GiB in a test)."""
    store = make_store("local", request, tmp_path)
    monkeypatch.setattr(local_mod, "MAX_PART_SIZE", 1000)
    key = f"incoming/{ns}"
    upload_id = store.create_multipart(key)
    url = store.presign_part(key, upload_id, 1, dt.timedelta(minutes=1))
    r = httpx.put(url, content=b"x" * 1001, timeout=30)
    assert r.status_code == 413, r.text
    assert "at most" in r.json()["detail"]
    assert store.list_parts(key, upload_id) == []
    assert httpx.put(url, content=b"x" * 1000, timeout=30).status_code == 200
    assert staging_leftovers(store) == []


def test_local_part_url_holds_its_signed_size(
    request: pytest.FixtureRequest, tmp_path: Path, ns: str
) -> None:
    """A part URL signed for N bytes takes at most N, whatever the request claims, and the
    bound cannot be dropped from the URL: it is part of what is signed."""
    store = make_store("local", request, tmp_path)
    key = f"incoming/{ns}"
    upload_id = store.create_multipart(key)
    url = httpx.URL(store.presign_part(key, upload_id, 1, dt.timedelta(minutes=1), max_size=1000))
    assert url.params["size"] == "1000"
    said_so = httpx.put(url, content=b"x" * 5000, timeout=30)
    assert said_so.status_code == 413, "refused on its Content-Length, before reading"

    def lying_body():  # chunked: no Content-Length to refuse on, so the count decides
        yield b"x" * 600
        yield b"x" * 600

    streamed = httpx.put(url, content=lying_body(), timeout=30)
    assert streamed.status_code == 413 and store.list_parts(key, upload_id) == []
    unbounded = url.copy_remove_param("size")
    assert httpx.put(unbounded, content=b"x" * 10, timeout=30).status_code == 403
    bigger = url.copy_set_param("size", "5000")
    assert httpx.put(bigger, content=b"x" * 10, timeout=30).status_code == 403
    assert httpx.put(url, content=b"x" * 1000, timeout=30).status_code == 200
    assert [p.size for p in store.list_parts(key, upload_id)] == [1000]
    assert staging_leftovers(store) == []


def test_local_parts_sent_with_an_offset_are_written_in_place_and_installed_without_a_copy(
    request: pytest.FixtureRequest, tmp_path: Path, ns: str
) -> None:
    """Ingest's part URLs carry the part's offset (signed): its bytes go straight to their
    place in the object-to-be, so completing installs that very file (same inode) instead of
    joining a copy. A part refused on its Content-MD5 is missing, not half-counted."""
    store = make_store("local", request, tmp_path)
    assert isinstance(store, LocalStore)
    key = f"incoming/{ns}"
    upload_id = store.create_multipart(key)
    size = MIN_PART_SIZE * 2 + 1234
    data = random.Random(ns).randbytes(size)
    plan = plan_parts(size, MIN_PART_SIZE)
    minute = dt.timedelta(minutes=1)

    def url(n: int, offset: int, length: int) -> httpx.URL:
        return httpx.URL(
            store.presign_part(key, upload_id, n, minute, max_size=length, offset=offset)
        )

    def put(u: httpx.URL, body: bytes, md5_of: bytes | None = None) -> httpx.Response:
        md5 = base64.b64encode(hashlib.md5(md5_of if md5_of is not None else body).digest())
        return httpx.put(u, content=body, headers={"Content-MD5": md5.decode()}, timeout=30)

    first = url(*plan[0])
    assert first.params["offset"] == "0"
    for tampered in (first.copy_set_param("offset", "5"), first.copy_remove_param("offset")):
        assert put(tampered, data[: plan[0].length]).status_code == 403
    with pytest.raises(InvalidInput):  # an unbounded part could overrun the next one
        store.presign_part(key, upload_id, 1, minute, offset=0)

    for n, offset, length in reversed(plan):  # any order: each goes to its own place
        assert put(url(n, offset, length), data[offset : offset + length]).status_code == 200
    n, offset, length = plan[1]
    damaged = put(url(n, offset, length), b"x" * length, md5_of=data[offset : offset + length])
    assert damaged.status_code == 422  # HashMismatch: the body is not what was sent
    assert [p.number for p in store.list_parts(key, upload_id)] == [1, 3], "2 is missing now"
    assert put(url(n, offset, length), data[offset : offset + length]).status_code == 200

    written = os.stat(store.root / ".multipart" / upload_id / "object").st_ino
    info = store.complete_multipart(key, upload_id)
    assert (info.size, info.sha256) == (size, None), "installed as written, not hashed"
    assert os.stat(store.root / key).st_ino == written, "the same file: no join copy"
    assert sha256_chunks(store.open(key)) == (sha(data), size)
    assert store.stat(key).sha256 is None  # unknown until someone hashes it (promote does)
    late = put(url(*plan[0]), data[: plan[0].length])
    assert late.status_code == 404, "a URL replayed after completion writes nothing"
    assert sha256_chunks(store.open(key)) == (sha(data), size)
    promoted = store.promote(key, sha(data))
    assert (promoted.sha256, promoted.size) == (sha(data), size)
    assert staging_leftovers(store) == []


@pytest.mark.s3
def test_s3_presigned_urls_use_the_public_endpoint(
    request: pytest.FixtureRequest, tmp_path: Path, ns: str
) -> None:
    store = make_store("s3", request, tmp_path, s3_public_endpoint="http://docks.example:9000")
    key = f"incoming/{ns}"
    assert isinstance(store, S3Store)
    for url in (
        store.presign_put(key, dt.timedelta(minutes=1)),
        store.presign_part(key, "2~abc", 7, dt.timedelta(minutes=1)),
    ):
        assert url.startswith(f"http://docks.example:9000/{store.bucket}/{key}?"), url
    part = httpx.URL(store.presign_part(key, "2~abc", 7, dt.timedelta(minutes=1)))
    assert (part.params["uploadId"], part.params["partNumber"]) == ("2~abc", "7")


def test_local_presign_key_is_private_and_stable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = make_store("local", request, tmp_path)
    assert isinstance(store, LocalStore)
    key_file = tmp_path / "var" / "keys" / "presign.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    url = httpx.URL(store.presign_get("a/b", dt.timedelta(minutes=1)))
    again = make_store("local", request, tmp_path)  # a second process of the same install
    assert isinstance(again, LocalStore)
    again.verify_presigned("a/b", "GET", url.params["expires"], url.params["signature"])
    with pytest.raises(AccessDenied):
        again.verify_presigned("a/b", "PUT", url.params["expires"], url.params["signature"])


def test_local_encoded_traversal_over_http(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = make_store("local", request, tmp_path)
    live: LiveServer = request.getfixturevalue("live")
    url = store.presign_put("incoming/x", dt.timedelta(minutes=1))
    query = url.split("?", 1)[1]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for path in ("/api/v1/objects/%2e%2e/%2e%2e/escape", "/api/v1/objects/incoming/%2e%2e/x"):
        r = httpx.put(f"{live.url}{path}?{query}", content=b"x")
        assert r.status_code in (403, 404, 422), r.status_code
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_local_store_recovers_a_lost_metadata_record(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A crash between installing bytes and writing their record leaves the record missing:
    the object reads as 'hash unknown', and an idempotent re-put repairs it."""
    store = make_store("local", request, tmp_path)
    assert isinstance(store, LocalStore)
    data = unique_bytes()
    obj = store.put_original(io.BytesIO(data), sha(data))
    (store.root / ".meta" / obj.key).unlink()
    assert store.stat(obj.key).sha256 is None
    with pytest.raises(WriteOnceViolation):  # still write-once: the file mode says so
        store.put(obj.key, io.BytesIO(b"other"))
    store.put_original(io.BytesIO(data), sha(data), retain_until=later(3600))
    info = store.stat(obj.key)
    assert info.sha256 == sha(data) and info.retain_until is not None


@pytest.mark.s3
def test_objects_route_is_404_for_s3(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    s3 = make_store("s3", request, tmp_path)
    live: LiveServer = request.getfixturevalue("live")
    live.app.state.store = s3
    r = httpx.get(f"{live.url}/api/v1/objects/a/b?method=GET&expires=1&signature=00")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.s3
def test_s3_server_enforces_governance_retention_and_hold(
    request: pytest.FixtureRequest, tmp_path: Path, ns: str
) -> None:
    """Not just our client-side checks: the server refuses a raw delete of a locked version."""
    store = make_store("s3", request, tmp_path)
    assert isinstance(store, S3Store)
    for key, lock in ((f"{ns}/ret", "retention"), (f"{ns}/hold", "hold")):
        store.put(key, io.BytesIO(b"x"), retain_until=later(3600) if lock == "retention" else None)
        if lock == "hold":
            store.set_legal_hold(key, True)
        version = store.client.stat_object(store.bucket, key).version_id
        with pytest.raises(S3Error) as err:
            store.client.remove_object(store.bucket, key, version_id=version)
        assert err.value.code == "AccessDenied"
    store.set_legal_hold(f"{ns}/hold", False)
    store.delete(f"{ns}/hold")
    assert store.stat(f"{ns}/ret").retention_mode == GOVERNANCE


@pytest.mark.s3
def test_s3_multipart_copy_path_for_big_objects(
    request: pytest.FixtureRequest, tmp_path: Path, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above 5 GiB minio turns copy_object into a multipart UploadPartCopy. Lowering its
    threshold sends a 12 MiB object down that path (memstore cannot hold 5 GiB): metadata,
    the pinned source version and write-once must survive it."""
    import minio.api

    store = make_store("s3", request, tmp_path)
    monkeypatch.setattr(minio.api, "MAX_PART_SIZE", 5 * MiB)
    size = 12 * MiB + 1
    result = store.put(f"{ns}/big", PatternStream(size, ns), write_once=True)  # type: ignore[arg-type]
    assert result.sha256 == pattern_sha256(size, ns)
    assert store.stat(f"{ns}/big").sha256 == result.sha256
    assert sha256_chunks(store.open(f"{ns}/big")) == (result.sha256, size)
    with pytest.raises(WriteOnceViolation):
        store.put(f"{ns}/big", io.BytesIO(b"other"), write_once=True)


@pytest.mark.s3
def test_s3_bucket_without_object_lock_is_refused(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket") + "-nolock"
    plain = make_store("s3", request, tmp_path)
    assert isinstance(plain, S3Store)
    plain.client.make_bucket(bucket)  # no Object Lock
    with pytest.raises(EvidenceError, match="without Object Lock"):
        open_store(server.settings(bucket, tmp_path / "var"))


def test_s3_time_parsing() -> None:
    assert parse_s3_time("2026-11-26T00:50:00.282000000Z") == dt.datetime(
        2026, 11, 26, 0, 50, 0, 282000, tzinfo=dt.UTC
    )
    assert parse_s3_time("2026-11-26T00:50:00Z").tzinfo is not None


def test_range_header_parsing() -> None:
    assert parse_range_header(None, 10) is None
    assert parse_range_header("items=0-1", 10) is None  # unknown unit: ignored
    assert parse_range_header("bytes=0-0", 10) == (0, 0)
    assert parse_range_header("bytes=2-", 10) == (2, 9)
    assert parse_range_header("bytes=-3", 10) == (7, 9)
    assert parse_range_header("bytes=-30", 10) == (0, 9)
    assert parse_range_header("bytes=5-100", 10) == (5, 9)
    assert parse_range_header("bytes=0-1,4-5", 10) == (0, 1)  # first range only, as S3
    for bad in ("bytes=10-", "bytes=5-2", "bytes=abc", "bytes=-0", "bytes=-"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range_header(bad, 10)
    with pytest.raises(RangeNotSatisfiable):
        parse_range_header("bytes=0-0", 0)
