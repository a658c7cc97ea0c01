"""Fault suite: a court bundle for a case of 200 clips.

The build must take bounded time (a generous timeout, never a timed assertion), bounded
memory (its peak must not grow with the number of clips: originals are streamed into the
ZIP, not held), and show progress (the bundle's `progress` field advances while it builds).
"""

from __future__ import annotations

import time
import tracemalloc
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from evidence.access import Principal
from evidence.accounts.models import Role
from evidence.accounts.service import create_device, create_user
from evidence.bundles import service as bundles
from evidence.bundles.models import Bundle
from evidence.cases.service import add_items, create_case
from evidence.context import Context
from evidence.ingest import service as ingest
from tests.conftest import postgres_only
from tests.fixtures.ingest import ingest_file
from tests.fixtures.store_faults import assert_nothing_lost, make_clips

pytestmark = [pytest.mark.fault, pytest.mark.timeout(900)]

SMALL, LARGE = 20, 200
MiB = 1024 * 1024


def _bundle(
    ctx: Context, eo: Principal, clip_ids: list[str], title: str
) -> tuple[str, int, list[int]]:
    """Build a bundle of `clip_ids`; (bundle id, peak Python heap during the build, the
    progress values the bundle's row showed while it was built)."""
    case = create_case(ctx, eo, title, f"URN {title}")
    add_items(ctx, eo, case["id"], clip_ids)
    bundle_id = bundles.request_bundle(ctx, eo, case["id"])["id"]
    seen: list[int] = []

    def shown(_pct: int) -> None:
        with ctx.db.session() as s:  # what a reader polling GET /bundles/{id} sees
            seen.append(s.get(Bundle, bundle_id).progress)

    tracemalloc.start()
    try:
        state = bundles.build_bundle(ctx, bundle_id, progress=shown)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert state == "ready"
    return bundle_id, peak, seen


# The build's memory and progress do not depend on the engine; seeding 200 clips is the
# slow part, so this runs once, on the production profile's PostgreSQL.
@postgres_only
def test_a_bundle_of_200_clips_streams_in_bounded_memory_and_shows_progress(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~200 kB each: 200 of them are 40 MB of footage, far more than the build may hold.
    clips = make_clips(tmp_path / "clips", LARGE, tag="bundle", size="320x240", lossless=True)
    device = create_device(ctx, None, "dock-bundle")
    started = time.monotonic()
    with monkeypatch.context() as m:
        # Proxies and thumbnails are not in this bundle: seeding skips making them, which
        # saves 200 transcodes; the originals are verified and promoted as always.
        m.setattr(ingest, "DERIVATIVES", {})
        # Four at a time: probing is ffmpeg's work in other processes.
        with ThreadPoolExecutor(4) as pool:
            clip_ids = list(pool.map(lambda c: ingest_file(ctx, c, device=device.device), clips))
    print(f"\nseeded {LARGE} clips in {time.monotonic() - started:.0f} s")
    user = create_user(ctx, "eo_bundles", "evidence_officer", "a long enough password")
    eo = Principal(user.id, user.username, Role.evidence_officer)

    _, small_peak, _ = _bundle(ctx, eo, clip_ids[:SMALL], "small")
    started = time.monotonic()
    large_id, large_peak, progress = _bundle(ctx, eo, clip_ids, "large")
    print(f"built the {LARGE}-clip bundle in {time.monotonic() - started:.1f} s")
    footage = sum(c.size for c in clips)
    print(
        f"\nbundle build peak heap: {SMALL} clips {small_peak / MiB:.1f} MiB, "
        f"{LARGE} clips {large_peak / MiB:.1f} MiB ({footage / MiB:.1f} MiB of footage); "
        f"progress shown: {progress}"
    )

    # Ten times the clips may cost their ledger entries, manifest lines and statement pages
    # (the continuity statement lays out a few pages per exhibit: ~30 KB of heap each while
    # the PDF is made), never their bytes: holding even half the footage would fail here.
    assert large_peak < small_peak + 8 * MiB, (small_peak, large_peak)
    assert large_peak < footage / 2, (large_peak, footage)
    assert progress == sorted(progress) and len(set(progress)) >= 5, progress
    assert len([p for p in progress if 0 < p < 100]) >= 5 and progress[-1] == 100, progress

    with ctx.db.session() as s:
        b = s.get(Bundle, large_id)
        key = b.key
    path = tmp_path / "large.zip"
    with path.open("wb") as f:
        for chunk in ctx.store.open(key):
            f.write(chunk)
    with zipfile.ZipFile(path) as zf:
        originals = Counter(i.file_size for i in zf.infolist() if "/original" in i.filename)
    assert sum(originals.values()) == LARGE, "every exhibit's original once"
    assert_nothing_lost(ctx, [c.path for c in clips])
