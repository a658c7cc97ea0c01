"""Scrub benchmark: re-hash throughput against openssl, per-object overhead, throttle accuracy
and peak RSS of `evidence.scrub.scrub`.

A benchmark, not a test: nothing here asserts a timing. Every figure is measured in the same
run as its baseline, so read the ratios, not the absolute numbers, on a noisy machine.

Two fresh embedded-profile stores (SQLite, local object store) in a temp dir, filled the way
tests/test_scrub.py does it (no ffmpeg): a `stored` clip row, `ctx.store.put_original` of
seeded random bytes (streamed in 1 MiB chunks, memory flat) and a `clip.ingested` entry.

- big:   --big-count objects of --big-mib MiB (default 8 x 128 MiB = 1 GiB)
- small: --small-count objects of --small-kib KiB (default 300 x 64 KiB): the per-object and
         per-batch cost (queries, one `scrub.batch` ledger entry and clip updates per batch)

Every scrub runs in a child process (`--child`), timed around the `scrub()` call itself; its
peak RSS is the child's own VmHWM, read before and after the scrub. (wait4's ru_maxrss is kept
in the JSON but not used: Linux starts a child's at its parent's RSS at fork.)

1. Unlimited rate (rate_mb_per_s=1e6) over each store, against `openssl dgst -sha256` and
   Python hashlib (1 MiB reads, as the store reads) over the same object files, run before
   and after the scrub (the best of the two is the baseline). Every file is in page cache,
   for the baselines and the scrub alike.
2. Throttled (--rate MB/s) over the first big objects, up to --throttle-mib: achieved rate
   against the configured one.
3. Peak RSS of scrubs over about a quarter of the big bytes and over all of them: flat.

    .venv/bin/python bench/scrub.py --quick   # 4 x 32 MiB + 50 x 64 KiB: smoke run
    .venv/bin/python bench/scrub.py           # 8 x 128 MiB + 300 x 64 KiB: the figures

Prints a table, progress goes to stderr, and the raw figures go to
bench/results/scrub-<timestamp>.json (git-ignored). MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `evidence` without an install

from sqlalchemy import func, select

from evidence import clock
from evidence.clips.models import Clip
from evidence.config import Settings
from evidence.context import Context
from evidence.ledger.entries import make_entry
from evidence.ledger.models import LedgerEntry
from evidence.migrate import upgrade
from evidence.scrub.service import BATCH, scrub
from evidence.storage import CHUNK, original_key

MiB, KiB, MB = 1024 * 1024, 1024, 1_000_000
UNLIMITED = 1e6  # MB/s: the throttle never sleeps
PY = sys.executable
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def mbps(size: int, seconds: float) -> float:
    return size / seconds / MB if seconds > 0 else float("inf")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


class RandomStream:
    """`size` seeded random bytes as a read()-able stream, generated a chunk at a time."""

    def __init__(self, seed: int, size: int):
        self._rng, self._left = random.Random(seed), size

    def read(self, n: int = -1) -> bytes:
        n = min(CHUNK if n < 0 else n, self._left)
        self._left -= n
        return self._rng.randbytes(n)


def stream_sha256(seed: int, size: int) -> str:
    h, stream = hashlib.sha256(), RandomStream(seed, size)
    while chunk := stream.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


# -- a store with objects ---------------------------------------------------------------------


@dataclass
class Store:
    name: str
    settings: Settings
    ctx: Context
    keys: list[str]  # in key order, the order the scrubber walks
    size: int  # bytes of each object

    def files(self, n: int | None = None) -> list[Path]:
        """Where LocalStore keeps the objects' bytes: `{storage root}/{key}`."""
        root = self.settings.resolved_storage_dir()
        return [root.joinpath(*k.split("/")) for k in self.keys[:n]]

    def batch_entries(self) -> int:
        with self.ctx.db.session() as s:
            return int(
                s.scalar(
                    select(func.count()).select_from(LedgerEntry).where(LedgerEntry.type == BATCH)
                )
                or 0
            )


def make_store(tmp: Path, name: str, count: int, size: int, seed: int) -> Store:
    data_dir = tmp / name / "var"
    data_dir.mkdir(parents=True)
    db_url = f"sqlite:///{data_dir}/evidence.db"
    upgrade(db_url)
    settings = Settings(data_dir=data_dir, database_url=db_url, storage_backend="local")
    ctx = Context(settings)
    log(f"{name}: {count} objects of {size / MiB:g} MiB")
    keys, rows = [], []
    for i in range(count):
        sha = stream_sha256(seed + i, size)  # put_original wants the hash up front
        ctx.store.put_original(RandomStream(seed + i, size), sha)  # type: ignore[arg-type]
        keys.append(original_key(sha))
        rows.append((str(uuid.uuid4()), sha))
    with ctx.db.write_session() as s:  # one transaction: setup, not what is measured
        for clip_id, sha in rows:
            s.add(
                Clip(
                    id=clip_id,
                    sha256=sha,
                    size=size,
                    state="stored",
                    ingested_at=clock.now(),
                    filename=f"bench-{clip_id[:8]}.mp4",
                )
            )
        s.flush()
        ctx.ledger.append_entries(
            s,
            [
                make_entry(
                    "clip.ingested",
                    actor="system:bench",
                    subject={"clip": c},
                    sha256=sha,
                    size=size,
                )
                for c, sha in rows
            ],
        )
    return Store(name, settings, ctx, sorted(keys), size)


# -- baselines ----------------------------------------------------------------------------------


def openssl(files: list[Path]) -> dict[str, float]:
    """`openssl dgst -sha256 FILE...`, one process; checks each digest against its key."""
    t = time.monotonic()
    proc = subprocess.Popen(
        ["openssl", "dgst", "-sha256", *map(str, files)], stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    digests = [line.rsplit("= ", 1)[-1] for line in out.splitlines()]
    if proc.returncode != 0 or digests != [f.name for f in files]:
        raise SystemExit(f"openssl dgst failed or disagrees with the keys (status {status})")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


def hashlib_files(files: list[Path]) -> dict[str, float]:
    """hashlib.sha256 over each file, read CHUNK bytes at a time as LocalStore.open does."""
    t, c = time.monotonic(), time.process_time()
    for path in files:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        if h.hexdigest() != path.name:
            raise SystemExit(f"{path} does not hash to its key")
    return {"wall_s": time.monotonic() - t, "cpu_s": time.process_time() - c}


def baselines(files: list[Path]) -> dict[str, Any]:
    return {"openssl": openssl(files), "hashlib": hashlib_files(files)}


def best(runs: list[dict[str, Any]], tool: str) -> float:
    return min(r[tool]["wall_s"] for r in runs)


# -- the scrub, in a child process --------------------------------------------------------------


def status_kb(name: str = "VmHWM") -> int:
    """A kB field of /proc/self/status: VmHWM is the kernel's own peak RSS of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return 0


def child(spec: dict[str, Any]) -> None:
    """Runs in the child: one scrub() call, timed; its figures as JSON on stdout."""
    ctx = Context(
        Settings(
            data_dir=Path(spec["data_dir"]), database_url=spec["db_url"], storage_backend="local"
        )
    )
    hwm0 = status_kb()
    t, c = time.monotonic(), time.process_time()
    report = scrub(
        ctx,
        rate_mb_per_s=spec["rate"],
        batch_size=spec["batch_size"],
        max_objects=spec["max_objects"],
    )
    wall, cpu = time.monotonic() - t, time.process_time() - c
    ctx.db.dispose()
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "checked": report.checked,
                "bytes": report.bytes,
                "batches": report.batches,
                "ok": report.ok,
                "hwm_before_kb": hwm0,
                "hwm_after_kb": status_kb(),
            }
        )
    )


def run_scrub(
    store: Store, *, rate: float, batch_size: int, max_objects: int | None = None
) -> dict[str, Any]:
    spec = {
        "data_dir": str(store.settings.data_dir),
        "db_url": store.settings.database_url,
        "rate": rate,
        "batch_size": batch_size,
        "max_objects": max_objects,
    }
    before = store.batch_entries()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    proc = subprocess.Popen(
        [PY, __file__, "--child", json.dumps(spec)], env=env, stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"scrub child failed with status {proc.returncode}")
    res: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if not res["ok"]:
        raise SystemExit(f"scrub reported failures on {store.name}: {res}")
    res["maxrss_kb"] = usage.ru_maxrss
    res["batch_entries"] = store.batch_entries() - before
    res["mb_per_s"] = mbps(res["bytes"], res["wall_s"])
    res["objects_per_s"] = res["checked"] / res["wall_s"]
    return res


def bench_unlimited(store: Store, batch_size: int) -> dict[str, Any]:
    files = store.files()
    log(f"{store.name}: baselines, scrub at unlimited rate, baselines again")
    runs = [baselines(files)]
    scrubbed = run_scrub(store, rate=UNLIMITED, batch_size=batch_size)
    runs.append(baselines(files))
    total = store.size * len(files)
    if scrubbed["bytes"] != total:
        raise SystemExit(f"{store.name}: scrub read {scrubbed['bytes']} bytes, not {total}")
    return {
        "objects": len(files),
        "object_size": store.size,
        "bytes": total,
        "baselines": runs,
        "openssl_s": best(runs, "openssl"),
        "hashlib_s": best(runs, "hashlib"),
        "scrub": scrubbed,
        "loadavg": loadavg(),
    }


# -- report -------------------------------------------------------------------------------------


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    return "\n".join(
        [f"\n{title}", line(header), line(["-" * w for w in widths]), *map(line, rows)]
    )


def render(res: dict[str, Any]) -> str:
    a = res["args"]
    parts = [
        (
            f"Scrub benchmark, {res['started']}, {res['machine']}, "
            f"wall time {res['wall_s']:.0f} s, loadavg at start {res['loadavg_start']}"
        )
    ]
    rows = []
    for name in ("big", "small"):
        r = res[name]
        s, n, size = r["scrub"], r["objects"], r["bytes"]
        label = (
            f"{n} x {r['object_size'] / MiB:g} MiB"
            if name == "big"
            else f"{n} x {r['object_size'] / KiB:g} KiB"
        )
        rows.append(
            [
                f"{name}: {label}",
                "openssl dgst -sha256",
                f"{mbps(size, r['openssl_s']):,.0f} MB/s",
                f"{n / r['openssl_s']:,.0f}/s",
                "1.00x",
                "",
            ]
        )
        rows.append(
            [
                "",
                "python hashlib",
                f"{mbps(size, r['hashlib_s']):,.0f} MB/s",
                f"{n / r['hashlib_s']:,.0f}/s",
                f"{r['openssl_s'] / r['hashlib_s']:.2f}x",
                "",
            ]
        )
        rows.append(
            [
                "",
                f"scrub, batch {a['batch_size']}",
                f"{s['mb_per_s']:,.0f} MB/s",
                f"{s['objects_per_s']:,.0f}/s",
                f"{r['openssl_s'] / s['wall_s']:.2f}x",
                f"{s['batch_entries']} scrub.batch, cpu {s['cpu_s']:.2f} s",
            ]
        )
    parts.append(
        table(
            "Unlimited rate (rate_mb_per_s=1e6); ratio = openssl time / this time",
            ["objects", "what", "rate", "objects", "vs openssl", "notes"],
            rows,
        )
    )
    small, n = res["small"], res["small"]["objects"]
    b, few = small["scrub_small_batches"], small["scrub"]
    rows = [
        [
            f"scrub, batch {a[k]}",
            f"{r['batch_entries']}",
            f"{r['wall_s']:.3f} s",
            f"{r['objects_per_s']:,.0f}/s",
            f"{(r['wall_s'] - small['hashlib_s']) / n * 1e3:.2f} ms",
        ]
        for k, r in (("batch_size", few), ("small_batch", b))
    ]
    title = (
        f"Small objects: per-object cost = (scrub - hashlib {small['hashlib_s']:.3f} s)"
        f" / {n}, the run's fixed cost (counting, last query) included"
    )
    parts.append(table(title, ["run", "scrub.batch", "wall", "objects", "per object"], rows))
    if b["batch_entries"] > few["batch_entries"]:
        per_batch = (b["wall_s"] - few["wall_s"]) / (b["batch_entries"] - few["batch_entries"])
        parts.append(
            f"Per batch (queries, one scrub.batch entry + checkpoint, clip updates, "
            f"commit): ~{per_batch * 1e3:.1f} ms, from the difference of the two runs"
        )

    t = res["throttle"]
    parts.append(
        table(
            f"Throttle, first {t['objects']} big objects ({t['bytes'] / MiB:g} MiB)",
            ["configured", "achieved", "achieved / configured", "wall"],
            [
                [
                    f"{a['rate']:g} MB/s",
                    f"{t['scrub']['mb_per_s']:.2f} MB/s",
                    f"{t['scrub']['mb_per_s'] / a['rate']:.3f}",
                    f"{t['scrub']['wall_s']:.2f} s",
                ]
            ],
        )
    )

    rows = [
        [
            f"{m['bytes'] / MiB:g} MiB ({m['objects']} objects)",
            f"{m['scrub']['hwm_before_kb'] / 1024:.1f} MiB",
            f"{m['scrub']['hwm_after_kb'] / 1024:.1f} MiB",
            f"+{(m['scrub']['hwm_after_kb'] - m['scrub']['hwm_before_kb']) / 1024:.1f} MiB",
        ]
        for m in res["rss"]
    ]
    parts.append(
        table(
            "Peak RSS (VmHWM) of the scrub child process, unlimited rate",
            ["scrubbed", "before scrub() (imports, Context)", "peak after", "growth"],
            rows,
        )
    )
    parts.append(
        f"(wait4's ru_maxrss, `maxrss_kb` in the JSON, is not shown: on Linux a "
        f"child's starts at its parent's RSS at fork, here "
        f"{res['parent_rss_kb'] / 1024:.0f} MiB.)"
    )
    parts.append(
        f"\nload average during the runs: big {res['big']['loadavg']}; "
        f"small {res['small']['loadavg']}; end {res['loadavg_end']}"
    )
    return "\n".join(parts)


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big-count", type=int, default=8)
    ap.add_argument("--big-mib", type=int, default=128)
    ap.add_argument("--small-count", type=int, default=300)
    ap.add_argument("--small-kib", type=int, default=64)
    ap.add_argument(
        "--batch-size",
        type=int,
        default=100,
        help="scrub batch size (the EVIDENCE_SCRUB_BATCH_SIZE default)",
    )
    ap.add_argument(
        "--small-batch",
        type=int,
        default=10,
        help="second batch size over the small objects: the per-batch cost",
    )
    ap.add_argument("--rate", type=float, default=50.0, help="MB/s for the throttled run")
    ap.add_argument("--throttle-mib", type=int, default=256, help="scrub about this much at --rate")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 4 x 32 MiB + 50 small objects, 64 MiB throttled",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.quick:
        args.big_count, args.big_mib, args.small_count, args.throttle_mib = 4, 32, 50, 64
    started = dt.datetime.now(dt.UTC)
    res: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "args": vars(args),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "loadavg_start": loadavg(),
    }

    with tempfile.TemporaryDirectory(prefix="scrub-bench-", ignore_cleanup_errors=True) as t:
        tmp = Path(t)
        big = make_store(tmp, "big", args.big_count, args.big_mib * MiB, seed=1)
        small = make_store(tmp, "small", args.small_count, args.small_kib * KiB, seed=1_000_000)
        try:
            res["big"] = bench_unlimited(big, args.batch_size)
            res["small"] = bench_unlimited(small, args.batch_size)
            log(f"small: scrub at unlimited rate, batch size {args.small_batch}")
            res["small"]["scrub_small_batches"] = run_scrub(
                small, rate=UNLIMITED, batch_size=args.small_batch
            )

            n = max(1, min(args.big_count, round(args.throttle_mib / args.big_mib)))
            log(f"big: scrub of {n} objects at {args.rate:g} MB/s")
            res["throttle"] = {
                "objects": n,
                "bytes": n * big.size,
                "scrub": run_scrub(big, rate=args.rate, batch_size=args.batch_size, max_objects=n),
            }

            quarter = max(1, args.big_count // 4)
            log(f"big: peak RSS of scrubs over {quarter} and {args.big_count} objects")
            res["rss"] = [
                {
                    "objects": k,
                    "bytes": k * big.size,
                    "scrub": run_scrub(
                        big, rate=UNLIMITED, batch_size=args.batch_size, max_objects=k
                    ),
                }
                for k in (quarter, args.big_count)
            ]
        finally:
            big.ctx.db.dispose()
            small.ctx.db.dispose()

    res["parent_rss_kb"] = status_kb("VmRSS")
    res["loadavg_end"] = loadavg()
    res["wall_s"] = time.perf_counter() - T0
    print(render(res))
    out = ROOT / "bench" / "results" / f"scrub-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted; temporary files were removed")
        sys.exit(130)
