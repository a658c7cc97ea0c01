"""A bundle is written straight into its place in the store: each original and proxy read
once, the ZIP hashed as it is written, no temporary copy, and a build that fails half-way
leaves nothing at the bundle's key and nothing marked ready."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence.bundles.models import Bundle, BundleState
from evidence.bundles.service import build_bundle
from evidence.context import Context
from evidence.storage.local import LocalStore
from tests.fixtures.bundles import pins, verify
from tests.fixtures.worlds import ledger_entries

pytestmark = pytest.mark.e2e  # a running store, as tests/test_bundles.py


def _request(f, case_id: str, clip_ids: list[str]) -> str:  # type: ignore[no-untyped-def]
    eo = f.as_("eo_brown")
    added = f.http.post(f"/api/v1/cases/{case_id}/items", headers=eo, json={"clip_ids": clip_ids})
    assert added.status_code == 200, added.text
    r = f.http.post(f"/api/v1/cases/{case_id}/bundles", headers=eo, json={"include_proxies": True})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _download(ctx: Context, key: str, path: Path) -> Path:
    with path.open("wb") as out:
        for chunk in ctx.store.open(key):
            out.write(chunk)
    return path


def _leftovers(ctx: Context) -> list[str]:
    """Anything a build could leave behind: the store's staging files and the old work dir."""
    assert isinstance(ctx.store, LocalStore)
    found = [f"store .tmp/{n}" for n in os.listdir(ctx.store.root / ".tmp")]
    work = ctx.settings.data_dir / "work" / "bundles"
    if work.exists():
        found += [f"work/bundles/{n}" for n in os.listdir(work)]
    return found


def test_a_bundle_reads_each_file_once_and_records_the_stored_zips_hash(
    shared_world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f, ctx, case_id, clip_ids = shared_world
    bundle_id = _request(f, case_id, clip_ids)
    opened: Counter[str] = Counter()
    real_open = ctx.store.open

    def counting_open(key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        opened[key] += 1
        return real_open(key, start, end)

    monkeypatch.setattr(ctx.store, "open", counting_open)
    seen: list[int] = []
    assert build_bundle(ctx, bundle_id, progress=seen.append) == "ready"
    monkeypatch.undo()
    assert seen[-1] == 100  # progress is still reported

    with ctx.db.session() as s:
        b = s.get(Bundle, bundle_id)
        assert b is not None
        key, recorded, size = b.key, b.sha256, b.size
    path = _download(ctx, key, tmp_path / "bundle.zip")
    stored = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (stored, path.stat().st_size) == (recorded, size)
    assert ctx.store.stat(key).sha256 == recorded
    (exported,) = [
        e for e in ledger_entries(ctx, "bundle.exported") if e["subject"]["bundle"] == bundle_id
    ]
    assert (exported["sha256"], exported["size"]) == (recorded, size)

    # One read of each original and proxy: the hash of every member is taken as it is copied.
    with zipfile.ZipFile(path) as zf:
        media = [n for n in zf.namelist() if n.startswith("media/")]
    assert len(media) >= 4  # two exhibits, original + proxy + thumbnail each
    assert sorted(opened.values()) == [1] * len(media), opened
    assert _leftovers(ctx) == []

    code, out = verify(path, *pins(ctx))
    assert code == 0, out


def test_a_build_that_fails_half_way_leaves_no_bundle_and_a_retry_makes_it(
    shared_world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f, ctx, case_id, clip_ids = shared_world
    bundle_id = _request(f, case_id, clip_ids)
    real_open = ctx.store.open
    opened: list[str] = []

    def failing_open(key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        opened.append(key)
        chunks = real_open(key, start, end)
        if len(opened) < 3:
            return chunks

        def half() -> Iterator[bytes]:
            yield next(iter(chunks))
            raise OSError("the storage went away half-way through the bundle")

        return half()

    monkeypatch.setattr(ctx.store, "open", failing_open)
    with pytest.raises(OSError, match="half-way"):
        build_bundle(ctx, bundle_id)
    monkeypatch.undo()
    assert len(opened) == 3  # two members were written before the failure

    with ctx.db.session() as s:
        b = s.get(Bundle, bundle_id)
        assert b is not None
        assert b.state == BundleState.failed.value and "half-way" in (b.error or "")
        assert b.sha256 is None
        key = b.key
    assert not ctx.store.exists(key)
    assert _leftovers(ctx) == []
    assert not [
        e for e in ledger_entries(ctx, "bundle.exported") if e["subject"]["bundle"] == bundle_id
    ]

    # The task's retry builds it whole.
    assert build_bundle(ctx, bundle_id) == "ready"
    code, out = verify(_download(ctx, key, tmp_path / "bundle.zip"), *pins(ctx))
    assert code == 0, out
    assert _leftovers(ctx) == []
