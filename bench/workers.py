"""Worker benchmark: clips per minute through 1 and 2 worker processes, on a queue of 20 clips.

A benchmark, not a test: nothing here asserts a timing. Read the ratio of 2 workers to 1
(measured in the same run), not the absolute numbers, on a noisy machine.

What runs is the project's own worker: `evidence worker --concurrency=N` (Celery, prefork
pool of N processes) on the embedded profile (SQLite, local object store, the SQLite broker
that polls every second), each task the real `process_upload`: copy and re-hash the upload,
promote it to an original, probe with the full decode check, the proxy (remux or transcode,
as `make_proxy` chooses), the thumbnail, the ledger entries. For each clip kind and worker
count a fresh store gets 20 distinct clips declared, sent and completed through the ingest
service in this process (as the API would on a dock's behalf); the worker is started and
waits idle; then the clock starts, the outbox is relayed (20 tasks sent) and it stops when
all 20 clips are `ready`.

Clip kinds (`--seconds` long, default 10 s; lavfi testsrc2 + sine at a camera's ~8 Mbit/s):
- remux: 1080p30 H.264 High 4:2:0 + AAC-LC, what body-worn cameras write: proxy = remux;
- transcode: the same at 4:2:2 (High 4:2:2), which browsers do not play: proxy = transcode.

CPU is the worker tree's (Celery's main process, its pool, their reaped ffmpegs) user+system
time over the timed span, from /proc: it gives CPU-seconds per media-second, which
docs/capacity.md scales to cameras.

    .venv/bin/python bench/workers.py --quick   # 3 s clips, 6 per queue: smoke run
    .venv/bin/python bench/workers.py           # 10 s clips, 20 per queue: the figures

Prints a table, progress goes to stderr, and the raw figures go to
bench/results/workers-<timestamp>.json (git-ignored). Temporary files and every process the
benchmark started are removed on exit. MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `evidence`, `workers` and `tests.fixtures` without an install

from sqlalchemy import select

from evidence import outbox
from evidence.accounts.service import create_device
from evidence.clips.models import Clip, ClipState, Derivative
from evidence.config import Settings
from evidence.context import Context
from evidence.ingest.models import Upload
from evidence.ingest.service import complete_upload, declare_upload
from evidence.media.runner import ffmpeg_binary, sha256_file
from evidence.migrate import upgrade
from tests.fixtures.media import lavfi_inputs
from workers.app import make_celery, make_sender

MB = 1_000_000
TICK = os.sysconf("SC_CLK_TCK")
T0 = time.perf_counter()
RUNNING: list[subprocess.Popen[bytes]] = []  # workers still to be stopped on the way out

KINDS = {"remux": "yuv420p", "transcode": "yuv422p"}


class BenchError(Exception):
    """Something the benchmark needs failed; the message says what."""


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def ffmpeg(*args: str) -> None:
    argv = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"ffmpeg failed: {' '.join(argv)}\n{done.stderr[-2000:]}")


def make_clips(folder: Path, kind: str, seconds: int, count: int) -> list[Path]:
    """`count` distinct clips of one encode (a stream copy each, with its own title)."""
    folder.mkdir(parents=True)
    base = folder / "base.mp4"
    ffmpeg(
        *lavfi_inputs("1920x1080", "30", seconds), "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", KINDS[kind],
        "-b:v", "8M", "-maxrate", "8M", "-bufsize", "8M", "-g", "30",
        "-c:a", "aac", "-b:a", "128k", "-shortest", str(base),
    )  # fmt: skip
    clips = []
    for n in range(count):
        clip = folder / f"CAM{n + 1:02d}_0001.mp4"
        ffmpeg("-i", str(base), "-c", "copy", "-metadata", f"title=bench clip {n}", str(clip))
        clips.append(clip)
    base.unlink()
    return clips


def new_store(root: Path) -> tuple[Settings, Context]:
    data_dir = root / "var"
    data_dir.mkdir(parents=True)
    url = f"sqlite:///{data_dir}/evidence.db"
    upgrade(url)
    settings = Settings(data_dir=data_dir, database_url=url, storage_backend="local")
    return settings, Context(settings)


def dock(ctx: Context, clips: list[Path]) -> list[str]:
    """Declare, send and complete each clip through the ingest service: 20 queued uploads."""
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
        ids.append(declared.upload_id)
    return ids


def start_worker(settings: Settings, concurrency: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env.update(
        PYTHONPATH=str(ROOT),
        EVIDENCE_DATA_DIR=str(settings.data_dir),
        EVIDENCE_DATABASE_URL=str(settings.database_url),
        EVIDENCE_STORAGE_BACKEND="local",
    )
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", f"--concurrency={concurrency}"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    RUNNING.append(proc)
    deadline = time.monotonic() + 120
    while b" ready." not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"the worker did not become ready:\n{tail}")
        time.sleep(0.1)
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown: its pool goes with it
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
            proc.wait()
    RUNNING.remove(proc)


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU of pid and its children, including children they have reaped."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone between listing and reading
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *children(int(child))]
    return found


def all_ready(ctx: Context, ids: list[str]) -> tuple[int, list[str]]:
    """(clips ready, states of uploads that ended other than stored)."""
    with ctx.db.session() as s:
        uploads = list(s.scalars(select(Upload).where(Upload.id.in_(ids))))
        clip_ids = [u.clip_id for u in uploads if u.state == "stored"]
        ready = s.scalars(
            select(Clip.id).where(Clip.id.in_(clip_ids), Clip.state == ClipState.ready)
        ).all()
        failed = [u.state for u in uploads if u.state not in ("processing", "stored")]
    return len(ready), failed


def run(args: argparse.Namespace, tmp: Path, kind: str, workers: int) -> dict[str, Any]:
    root = tmp / f"{kind}-{workers}"
    clips = make_clips(root / "camera", kind, args.seconds, args.clips)
    settings, ctx = new_store(root)
    ids = dock(ctx, clips)
    proc = start_worker(settings, workers, root / "worker.log")
    try:
        cpu0, t0 = tree_cpu_seconds(proc.pid), time.perf_counter()
        relayed = outbox.relay(ctx, make_sender(make_celery(settings)))
        if relayed.sent != len(ids):
            raise BenchError(f"the outbox relayed {relayed.sent} of {len(ids)}: {relayed.error}")
        deadline = time.monotonic() + args.timeout
        while (done := all_ready(ctx, ids))[0] < len(ids):
            if done[1] or time.monotonic() > deadline or proc.poll() is not None:
                raise BenchError(f"{kind}, {workers} workers: {done[0]} ready, failed {done[1]}")
            time.sleep(0.2)
        elapsed, cpu = time.perf_counter() - t0, tree_cpu_seconds(proc.pid) - cpu0
    finally:
        stop_worker(proc)
    with ctx.db.session() as s:
        proxies = list(s.scalars(select(Derivative).where(Derivative.kind == "proxy")))
    ctx.db.dispose()
    methods = sorted({p.recipe.get("method", "?") for p in proxies})
    media_s = args.seconds * len(ids)
    log(f"{kind}, {workers} worker(s): {len(ids)} clips in {elapsed:.1f} s, CPU {cpu:.1f} s")
    return {
        "kind": kind,
        "workers": workers,
        "clips": len(ids),
        "clip_seconds": args.seconds,
        "clip_bytes": sum(c.stat().st_size for c in clips) // len(clips),
        "proxy_bytes": sum(p.size for p in proxies) // len(proxies),
        "proxy_methods": methods,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "clips_per_minute": len(ids) / elapsed * 60,
        "media_s_per_s": media_s / elapsed,
        "cpu_s_per_media_s": cpu / media_s,
    }


def render(runs: list[dict[str, Any]]) -> str:
    first = runs[0]
    lines = [
        f"{first['clips']} clips of {first['clip_seconds']} s 1080p30 per queue; "
        f"{os.cpu_count()} cores; `evidence worker --concurrency=N`, embedded profile",
        "",
        f"{'clips':10} {'workers':>7} {'proxy':>10} {'s':>7} {'clips/min':>10} "
        f"{'x real time':>12} {'CPU s/media s':>14} {'clip MB':>8} {'proxy MB':>9}",
    ]
    for r in runs:
        lines.append(
            f"{r['kind']:10} {r['workers']:7d} {','.join(r['proxy_methods']):>10} "
            f"{r['elapsed_s']:7.1f} {r['clips_per_minute']:10.1f} {r['media_s_per_s']:12.1f} "
            f"{r['cpu_s_per_media_s']:14.3f} {r['clip_bytes'] / MB:8.1f} "
            f"{r['proxy_bytes'] / MB:9.1f}"
        )
    lines.append("")
    for kind in KINDS:
        by = {r["workers"]: r for r in runs if r["kind"] == kind}
        if 1 in by and 2 in by:
            ratio = by[2]["clips_per_minute"] / by[1]["clips_per_minute"]
            lines.append(f"ratio {kind}: 2 workers / 1 worker clips per minute: {ratio:.2f}")
    remux = {r["workers"]: r for r in runs if r["kind"] == "remux"}
    trans = {r["workers"]: r for r in runs if r["kind"] == "transcode"}
    for n in sorted(set(remux) & set(trans)):
        ratio = remux[n]["clips_per_minute"] / trans[n]["clips_per_minute"]
        lines.append(f"ratio {n} worker(s): remux / transcode clips per minute: {ratio:.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="clip length (default 10)")
    parser.add_argument("--clips", type=int, default=20, help="clips per queue (default 20)")
    parser.add_argument("--kinds", default="remux,transcode", help="clip kinds to run")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per queue")
    parser.add_argument("--quick", action="store_true", help="3 s clips, 6 per queue")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.clips = 3, 6
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    runs = []
    try:
        for kind in args.kinds.split(","):
            for workers in (1, 2):
                runs.append(run(args, tmp, kind, workers))
    except BenchError as exc:
        print(f"bench/workers.py: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in list(RUNNING):
            stop_worker(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"workers-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(), "runs": runs}, indent=2))
    print(render(runs))
    print(f"\nraw figures: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
