"""Bundle benchmark: building a court bundle against `zip -0 -r` of the same media files.

A benchmark, not a test: nothing here asserts a timing. Both are measured in the same run,
rounds interleaved, so read the ratio, not the absolute numbers, on a noisy machine.

The goal: a bundle is built at the speed of the disk, in at most 1.5 times the time `zip -0
-r` takes to store the same media files (no compression, as the bundle stores media).

What runs is the worker's own function, `evidence.bundles.service.build_bundle`, in this
process on the embedded profile (SQLite, local object store): plan (pinned ledger entries
and their proofs), the continuity statement (HTML and PDF), the signed manifest, then every
original streamed into the ZIP, hashed on the way, the ZIP written straight into the store
and hashed as it is written, fsync'ed and renamed into place, the `bundle.exported` entry.
The baseline is `zip -0 -r -q` of the store's `originals/` directory (the same files),
timed alone and with an fsync of its output (the bundle's fsync is inside its time).

The clips: `--clips` distinct stream copies (own title each) of one lavfi testsrc2 +
noise + sine encode (libx264 ultrafast at a high bitrate, so a few seconds make many MB),
`--mb` MB in all (default 300), docked through the ingest service and processed in-process
(probe, proxy, thumbnail), then made exhibits of one case. The originals stay in the page
cache (just written), for both methods alike.

    .venv/bin/python bench/bundle.py --quick   # about 60 MB, 2 rounds: smoke run
    .venv/bin/python bench/bundle.py           # about 300 MB, 3 rounds: the figures

Prints a table, progress goes to stderr, and the raw figures go to
bench/results/bundle-<timestamp>.json (git-ignored). Temporary files are removed on exit.
MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `evidence` and `tests.fixtures` without an install

from evidence.access import Principal
from evidence.accounts.models import Role
from evidence.accounts.service import create_device, create_user
from evidence.bundles.models import Bundle, BundleState
from evidence.bundles.service import build_bundle, request_bundle
from evidence.cases.service import add_items, create_case
from evidence.config import Settings
from evidence.context import Context
from evidence.ingest.models import Upload
from evidence.ingest.service import complete_upload, declare_upload, process_upload
from evidence.media.runner import ffmpeg_binary, sha256_file
from evidence.migrate import upgrade

MB = 1_000_000
MB_PER_SECOND_OF_CLIP = 20  # about what the encode below writes per second of 720p30
GOAL = 1.5
T0 = time.perf_counter()


class BenchError(Exception):
    """Something the benchmark needs failed; the message says what."""


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def ffmpeg(*args: str) -> None:
    argv = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"ffmpeg failed: {' '.join(argv)}\n{done.stderr[-2000:]}")


def make_clips(folder: Path, total_mb: int, count: int) -> list[Path]:
    """`count` distinct clips, about `total_mb` MB in all: stream copies of one encode."""
    folder.mkdir(parents=True)
    seconds = max(1, round(total_mb / count / MB_PER_SECOND_OF_CLIP))
    base = folder / "base.mp4"
    ffmpeg(
        "-f", "lavfi", "-i",
        f"testsrc2=size=1280x720:rate=30:duration={seconds},noise=alls=30:allf=t",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "20",
        "-pix_fmt", "yuv420p", "-g", "30", "-c:a", "aac", "-b:a", "128k", "-shortest",
        str(base),
    )  # fmt: skip
    clips = []
    for n in range(count):
        clip = folder / f"CAM{n + 1:02d}_0001.mp4"
        ffmpeg("-i", str(base), "-c", "copy", "-metadata", f"title=bench clip {n}", str(clip))
        clips.append(clip)
    base.unlink()
    return clips


def new_store(root: Path) -> Context:
    data_dir = root / "var"
    data_dir.mkdir(parents=True)
    url = f"sqlite:///{data_dir}/evidence.db"
    upgrade(url)
    return Context(Settings(data_dir=data_dir, database_url=url, storage_backend="local"))


def dock(ctx: Context, clips: list[Path]) -> list[str]:
    """Declare, send, complete and process each clip in-process; their clip ids."""
    device = create_device(ctx, None, "bench-dock").device
    ids = []
    for clip in clips:
        data = clip.read_bytes()
        declared = declare_upload(
            ctx, device, sha256=sha256_file(clip), size=len(data), filename=clip.name
        )
        with ctx.db.session() as s:
            upload = s.get(Upload, declared.upload_id)
            assert upload is not None and upload.multipart_id is not None
            key, multipart = upload.incoming_key, upload.multipart_id
        for part in declared.parts:
            chunk = io.BytesIO(data[part.offset : part.offset + part.size])
            ctx.store.put_part(key, multipart, part.number, chunk, max_size=part.size)
        complete_upload(ctx, device, declared.upload_id)
        process_upload(ctx, declared.upload_id)
        with ctx.db.session() as s:
            done = s.get(Upload, declared.upload_id)
            assert done is not None
            if done.clip_id is None:
                raise BenchError(f"{clip.name} was not stored: {done.state}")
            ids.append(done.clip_id)
    return ids


def open_case(ctx: Context, clip_ids: list[str], proxies: bool) -> tuple[str, str]:
    """One case holding every clip, and a bundle requested of it: (bundle id, its key)."""
    user = create_user(ctx, "eo_bench", Role.evidence_officer.value, "bench-password-1234")
    eo = Principal(user.id, user.username, Role.evidence_officer, None)
    case = create_case(ctx, eo, "R v Bench", "URN BENCH")
    add_items(ctx, eo, case["id"], clip_ids)
    bundle = request_bundle(ctx, eo, case["id"], include_proxies=proxies)
    with ctx.db.session() as s:
        b = s.get(Bundle, bundle["id"])
        assert b is not None
        return b.id, b.key


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    log(f"encoding {args.clips} clips, about {args.mb} MB in all")
    clips = make_clips(tmp / "clips", args.mb, args.clips)
    ctx = new_store(tmp)
    log("docking and processing them")
    clip_ids = dock(ctx, clips)
    shutil.rmtree(tmp / "clips")
    bundle_id, key = open_case(ctx, clip_ids, args.proxies)
    store_root = ctx.settings.resolved_storage_dir()
    media_dirs = ["originals"] + (["derivatives"] if args.proxies else [])
    missing = [d for d in media_dirs if not (store_root / d).is_dir()]
    if missing:
        raise BenchError(f"no {missing} in the store: cannot time zip of the same files")
    media_bytes = sum(
        p.stat().st_size for d in media_dirs for p in (store_root / d).rglob("*") if p.is_file()
    )
    out_zip = tmp / "baseline.zip"

    def zip_only() -> None:
        done = subprocess.run(
            ["zip", "-0", "-r", "-q", str(out_zip), *media_dirs],
            cwd=store_root,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"zip failed ({done.returncode}): {done.stderr[-2000:]}")

    def zip_fsync() -> None:
        zip_only()
        fsync(out_zip)

    def build() -> None:
        with ctx.db.write_session() as s:  # a rebuild: the worker's retry of the same bundle
            b = s.get(Bundle, bundle_id)
            assert b is not None
            b.state = BundleState.queued.value
        if build_bundle(ctx, bundle_id) != BundleState.ready.value:
            raise BenchError("the bundle did not become ready")

    runs: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "zip -0 -r": (zip_only, lambda: out_zip.unlink(missing_ok=True)),
        "zip -0 -r + fsync": (zip_fsync, lambda: out_zip.unlink(missing_ok=True)),
        "build_bundle": (build, lambda: ctx.store.delete(key)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    sizes: dict[str, int] = {}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            fn, clean = runs[name]
            clean()
            seconds[name].append(timed(fn))
            sizes[name] = (
                ctx.store.stat(key).size if name == "build_bundle" else out_zip.stat().st_size
            )
            log(f"round {r + 1}: {name} {seconds[name][-1]:.2f} s")
    with ctx.db.session() as s:
        b = s.get(Bundle, bundle_id)
        assert b is not None
        if b.sha256 != sha256_file(store_root / key):
            raise BenchError("the stored bundle does not hash to what was recorded")
    return {
        "clips": args.clips,
        "media_bytes": media_bytes,
        "proxies": args.proxies,
        "sizes": sizes,
        "seconds": seconds,
        "load_average": os.getloadavg(),
    }


def render(res: dict[str, Any]) -> str:
    med = {name: median(values) for name, values in res["seconds"].items()}
    build, zip0, zipf = med["build_bundle"], med["zip -0 -r"], med["zip -0 -r + fsync"]
    mb = res["media_bytes"] / MB
    lines = [
        f"media: {res['clips']} clips{' with proxies' if res['proxies'] else ''}, "
        f"{mb:.0f} MB; load average at the end {res['load_average'][0]:.2f}",
        "",
        f"{'method':20} {'median s':>9} {'runs':>5} {'MB/s':>8} {'ZIP MB':>8} {'/ zip -0':>9}",
    ]
    for name, s in med.items():
        lines.append(
            f"{name:20} {s:9.2f} {len(res['seconds'][name]):5d} {mb / s:8.0f} "
            f"{res['sizes'][name] / MB:8.0f} {s / zip0:9.2f}"
        )
    verdict = "meets" if build / zip0 <= GOAL else "misses"
    lines += [
        "",
        f"ratio build_bundle / zip -0 -r: {build / zip0:.2f} (goal <= {GOAL}: {verdict} it)",
        f"ratio build_bundle / (zip -0 -r + fsync): {build / zipf:.2f}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=300, help="media in all (default 300 MB)")
    parser.add_argument("--clips", type=int, default=4, help="clips (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (default 3)")
    parser.add_argument("--proxies", action="store_true", help="bundle the proxies too")
    parser.add_argument("--quick", action="store_true", help="about 60 MB, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.mb, args.rounds = 60, 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    try:
        res = bench(args, tmp)
    except BenchError as exc:
        print(f"bench/bundle.py: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["at"] = dt.datetime.now(dt.UTC).isoformat()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bundle-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(res, indent=2))
    print(render(res))
    print(f"\nraw figures: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
