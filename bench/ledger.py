#!/usr/bin/env python3
"""Ledger benchmark: durable appends, a 10^6-entry ledger (build, verify, proofs), pymerkle.

A benchmark, not a test: nothing here asserts a timing. Every figure is measured in the same
run as its baselines (raw insert+commit on the same disk, hashlib.sha256), so read ratios,
not absolute numbers, on a noisy machine. Medians are over repeats where a repeat is cheap.

    python bench/ledger.py --quick      # 20,000 entries, about a minute: smoke run
    python bench/ledger.py              # 1,000,000 entries: the figures (~11 min, 2 cores)

Prints the baselines, issue 14's goals (each beside its baseline from this run, the ratio,
and whether it is met), then the full tables; progress goes to stderr, the raw figures to
bench/results/ledger-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `evidence` and `tests.fixtures` without an install

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from evidence import clock  # noqa: E402
from evidence.db import Database  # noqa: E402
from evidence.ledger import merkle  # noqa: E402
from evidence.ledger.entries import canonical  # noqa: E402
from evidence.ledger.note import NoteSigner  # noqa: E402
from evidence.ledger.service import Ledger, _fetch_nodes  # noqa: E402
from evidence.migrate import upgrade  # noqa: E402
from evidence.verify.ledger import verify_ledger  # noqa: E402
from evidence.verify.ledger_db import DatabaseSource  # noqa: E402
from evidence.verify.report import Report  # noqa: E402

try:
    import pymerkle
except ImportError:  # a dev dependency; the rest of the benchmark runs without it
    pymerkle = None

ORIGIN = "bench.evidence.example/ledger"
TYPES = ["clip.viewed", "clip.downloaded", "clip.ingested", "bundle.exported", "case.shared"]
BASE_AT = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
T0 = time.perf_counter()


# -- small helpers ----------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


class Progress:
    """Prints `label: done/total` to stderr at most every `every` seconds."""

    def __init__(self, label: str, total: int, every: float = 10.0):
        self.label, self.total, self.every = label, total, every
        self.start = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every or done == self.total:
            rate = done / (now - self.start) if now > self.start else 0.0
            log(f"  {self.label}: {done:,}/{self.total:,} ({rate:,.0f}/s)")
            self.last = now


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def latency(xs: list[float]) -> dict[str, float]:
    return {"median_s": median(xs), "p95_s": pct(xs, 95), "p99_s": pct(xs, 99), "n": len(xs)}


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def entry(i: int) -> dict:
    """The i-th benchmark entry: deterministic, so every system gets the same bytes."""
    clip = i % 5000
    return {
        "type": TYPES[i % len(TYPES)],
        "at": clock.rfc3339(BASE_AT + dt.timedelta(milliseconds=i)),
        "actor": f"user:officer-{i % 97:03d}",
        "subject": {"clip": f"{clip:08x}-0000-4000-8000-{clip:012x}"},
        "sha256": hashlib.sha256(i.to_bytes(8, "big")).hexdigest(),
    }


# -- baselines --------------------------------------------------------------------------------


def bench_sha256(repeats: int = 5, n: int = 200_000) -> dict[str, float]:
    """hashlib.sha256 ops/s on a node-sized (65 B) and an entry-sized (~250 B) input."""
    out = {}
    for name, data in (("node_65B", bytes(65)), ("entry_250B", bytes(250))):
        runs = [
            n / timed(lambda d=data: [hashlib.sha256(d).digest() for _ in range(n)])
            for _ in range(repeats)
        ]
        out[name] = median(runs)
    return out


def canonical_entries(n: int) -> tuple[list[bytes], float]:
    """The RFC 8785 bytes of entries 0..n-1, and the canonicalisation rate (entries/s)."""
    progress, out, spent = Progress("rfc8785 canonical entries", n), [], 0.0
    for start in range(0, n, 10_000):
        objs = [entry(i) for i in range(start, min(n, start + 10_000))]
        t = time.perf_counter()
        out.extend(canonical(o) for o in objs)
        spent += time.perf_counter() - t
        progress.update(len(out))
    return out, n / spent


def raw_sqlite_commits(path: Path, n: int, repeats: int) -> float:
    """Insert+commit of one tiny row per transaction, WAL + synchronous=FULL as db.py sets."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")

    def run() -> None:
        for i in range(n):
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO t (v) VALUES (?)", (f"row {i}",))
            con.execute("COMMIT")

    rates = [n / timed(run) for _ in range(repeats)]
    con.close()
    return median(rates)


def raw_pg_commits(url: str, n: int, repeats: int) -> float:
    """Insert+commit of one tiny row per transaction on the throwaway server (fsync on)."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as con:
        con.execute("CREATE TABLE t (id serial PRIMARY KEY, v text)")

        def run() -> None:
            for i in range(n):
                con.execute("INSERT INTO t (v) VALUES (%s)", (f"row {i}",))  # autocommit

        return median([n / timed(run) for _ in range(repeats)])


def raw_pg_concurrent_commits(url: str, n: int, writers: int, repeats: int) -> float:
    """Rows/s of `writers` threads, each on its own connection committing one row at a time.

    What PostgreSQL itself does for many writers (its WAL flush commits them in groups):
    the baseline for the ledger's multi-writer appends.
    """
    dsn = url.replace("+psycopg", "")
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("CREATE TABLE IF NOT EXISTS tw (id serial PRIMARY KEY, v text)")
    per = n // writers

    def run() -> None:
        def one(k: int) -> None:
            with psycopg.connect(dsn, autocommit=True) as con:
                for i in range(per):
                    con.execute("INSERT INTO tw (v) VALUES (%s)", (f"row {k}.{i}",))

        pool = [threading.Thread(target=one, args=(k,)) for k in range(writers)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()

    return median([per * writers / timed(run) for _ in range(repeats)])


def read_and_hash(url: str, size: int) -> float:
    """Entries/s of reading every row as the verifier does and hashing each entry once.

    The verifier's floor: the same reads, one sha256 per entry where it does three.
    """
    source = DatabaseSource(url, None)
    try:
        t = time.perf_counter()
        for row in source.rows(size):
            hashlib.sha256(b"\x00" + row.entry).digest()
        return size / (time.perf_counter() - t)
    finally:
        source.close()


# -- the ledger on one database ---------------------------------------------------------------


def open_ledger(url: str) -> tuple[Database, Ledger]:
    upgrade(url)
    db = Database(url)
    return db, Ledger(db, NoteSigner.generate(ORIGIN), ORIGIN)


def single_appends(ledger: Ledger, n: int, threads: int) -> float:
    """n calls of ledger.append (each its own durable transaction) over `threads` threads."""
    stop, errors = threading.Event(), []

    def worker(count: int, offset: int) -> None:
        try:
            for i in range(offset, offset + count):
                if stop.is_set():
                    return
                e = entry(i)
                ledger.append(e["type"], actor=e["actor"], subject=e["subject"], sha256=e["sha256"])
        except Exception as exc:  # re-raised below: a failed append must not count as fast
            errors.append(exc)

    per = n // threads
    pool = [
        threading.Thread(target=worker, args=(per, k * per), daemon=True) for k in range(threads)
    ]
    t = time.perf_counter()
    try:
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    finally:  # on Ctrl-C, let the workers finish their append before files are deleted
        stop.set()
        for th in pool:
            th.join(timeout=30)
    if errors:
        raise errors[0]
    return per * threads / (time.perf_counter() - t)


def batched_appends(db: Database, ledger: Ledger, batch: int, batches: int) -> list[float]:
    """entries/s of `batches` transactions of `batch` append_entries each, commit included."""
    rates = []
    for _ in range(batches):
        entries = [entry(i) for i in range(batch)]
        t = time.perf_counter()
        with db.write_session() as s:
            ledger.append_entries(s, entries)
        rates.append(batch / (time.perf_counter() - t))
    return rates


def build(db: Database, ledger: Ledger, n: int, batch: int, label: str) -> float:
    """Append entries 0..n-1 in transactions of `batch`; seconds spent in transactions."""
    progress, spent = Progress(f"{label} build", n), 0.0
    for start in range(0, n, batch):
        entries = [entry(i) for i in range(start, min(n, start + batch))]
        t = time.perf_counter()
        with db.write_session() as s:
            ledger.append_entries(s, entries)
        spent += time.perf_counter() - t
        progress.update(start + len(entries))
    return spent


def full_verify(url: str, vkey: str) -> tuple[float, Report]:
    source = DatabaseSource(url, vkey)
    try:
        report = Report()
        seconds = timed(lambda: verify_ledger(source, report, key=vkey))
    finally:
        source.close()
    return seconds, report


def proof_latencies(
    ledger_like: object, ref: merkle.InMemoryTree, size: int, samples: int, seed: int
) -> dict[str, dict[str, float]]:
    """Inclusion and consistency proofs at `size`: fetch time and RFC 9162 verify time apart.

    `ledger_like` has inclusion_proof(index, size) and consistency_proof(first, second); the
    leaf hashes and expected roots come from `ref`, an independently built tree.
    """
    rng = random.Random(seed)
    root = ref.root(size)
    fetch, check = [], []
    for index in (rng.randrange(size) for _ in range(samples)):
        t = time.perf_counter()
        proof = ledger_like.inclusion_proof(index, size)
        t1 = time.perf_counter()
        merkle.verify_inclusion(ref.node(0, index), index, size, proof, root)
        fetch.append(t1 - t)
        check.append(time.perf_counter() - t1)
    cfetch, ccheck = [], []
    for first in (rng.randrange(1, size) for _ in range(max(1, samples // 2))):
        first_root = ref.root(first)
        t = time.perf_counter()
        proof = ledger_like.consistency_proof(first, size)
        t1 = time.perf_counter()
        merkle.verify_consistency(first, size, proof, first_root, root)
        cfetch.append(t1 - t)
        ccheck.append(time.perf_counter() - t1)
    return {
        "inclusion_proof": latency(fetch),
        "inclusion_verify": latency(check),
        "consistency_proof": latency(cfetch),
        "consistency_verify": latency(ccheck),
    }


def proof_sql_latency(db: Database, size: int, samples: int, seed: int) -> dict[str, float]:
    """The floor under an inclusion proof: its one node query on an open connection.

    The same statement Ledger.inclusion_proof runs (the nodes, and the last leaf that
    proves the size), without the pool checkout and the proof building around it.
    """
    rng = random.Random(seed)
    lat = []
    with db.engine.connect() as conn:
        for index in (rng.randrange(size) for _ in range(samples)):
            wanted = merkle.nodes_needed(merkle.inclusion_proof_ranges(index, size))
            lat.append(timed(lambda w=wanted: _fetch_nodes(conn, db.dialect, [*w, (0, size - 1)])))
    return latency(lat)


def db_bytes(db: Database, sqlite_file: Path | None) -> int:
    if sqlite_file is not None:
        return sum(p.stat().st_size for p in sqlite_file.parent.glob(sqlite_file.name + "*"))
    with db.session() as s:
        return int(s.scalar(text("SELECT pg_database_size(current_database())")))


def bench_backend(
    name: str, new_url: Callable[[str], str], args: argparse.Namespace, ref: merkle.InMemoryTree
) -> dict:
    """Every ledger measurement on one backend; `new_url(tag)` makes an empty database."""
    out: dict = {}
    # 1. durable appends on a small ledger
    db, ledger = open_ledger(new_url("appends"))
    try:
        for threads in (1, args.threads):
            runs = []
            n = args.appends if threads == 1 else args.appends * 4  # as the raw baseline
            for r in range(args.repeats):
                log(f"{name}: {n} single appends, {threads} thread(s), run {r + 1}")
                runs.append(single_appends(ledger, n, threads))
            out[f"append_{threads}_thread_per_s"] = {"median": median(runs), "runs": runs}
        log(f"{name}: batched append_entries, 5 x 1000 per transaction")
        runs = batched_appends(db, ledger, 1000, 5)
        out["batched_1000_entries_per_s"] = {"median": median(runs), "runs": runs}
    finally:
        db.dispose()

    # 2. the big ledger
    url = new_url("big")
    db, ledger = open_ledger(url)
    try:
        seconds = build(db, ledger, args.size, args.batch, name)
        out["build"] = {
            "entries": args.size,
            "batch": args.batch,
            "seconds": seconds,
            "entries_per_s": args.size / seconds,
        }
        sqlite_file = Path(url.split("///", 1)[1]) if name == "sqlite" else None
        out["bytes_per_entry"] = db_bytes(db, sqlite_file) / args.size
        if ledger.root(args.size) != ref.root(args.size):
            raise SystemExit(f"{name}: ledger root differs from the in-memory reference tree")

        log(f"{name}: full verify of {args.size:,} entries (DatabaseSource + verify_ledger)")
        # Alternate the baseline and the verify so that both see the same machine load.
        floors, runs = [], []
        for _ in range(args.verify_repeats):
            floors.append(read_and_hash(url, args.size))
            seconds, report = full_verify(url, ledger.verifier_key)
            runs.append(args.size / seconds)
        out["read_and_hash_per_s"] = median(floors)
        out["verify"] = {
            "seconds": args.size / median(runs),
            "entries_per_s": median(runs),
            "runs": runs,
            "ok": report.ok,
            "checks": [c.line() for c in report.checks],
        }
        if not report.ok:
            log(f"{name}: VERIFY FAILED:\n  " + "\n  ".join(out["verify"]["checks"]))

        log(f"{name}: root() and proof latencies at size {args.size:,}")
        out["root"] = latency([timed(lambda: ledger.root(args.size)) for _ in range(20)])
        out.update(proof_latencies(ledger, ref, args.size, args.proofs, seed=1))
        out["proof_sql"] = proof_sql_latency(db, args.size, args.proofs, seed=1)

        log(f"{name}: 20 single appends on the {args.size:,}-entry ledger")
        lat = []
        for i in range(20):
            e = entry(args.size + i)
            lat.append(
                timed(
                    lambda e=e: ledger.append(
                        e["type"], actor=e["actor"], subject=e["subject"], sha256=e["sha256"]
                    )
                )
            )
        out["append_latency_at_size"] = latency(lat)
    finally:
        db.dispose()
    return out


# -- in-memory trees and pymerkle -------------------------------------------------------------


def bench_our_tree(entries: list[bytes]) -> tuple[merkle.InMemoryTree, float]:
    tree = merkle.InMemoryTree()
    progress = Progress("InMemoryTree append_entry", len(entries))
    t = time.perf_counter()
    for k in range(0, len(entries), 50_000):
        for e in entries[k : k + 50_000]:
            tree.append_entry(e)
        progress.update(tree.size)
    return tree, len(entries) / (time.perf_counter() - t)


def pymerkle_appends(tree: object, entries: list[bytes], bulk: bool) -> float:
    progress = Progress(f"pymerkle {type(tree).__name__}", len(entries))
    t = time.perf_counter()
    for k in range(0, len(entries), 50_000):
        chunk = entries[k : k + 50_000]
        if bulk:
            tree.append_entries(chunk)
        else:
            for e in chunk:
                tree.append_entry(e)
        progress.update(min(len(entries), k + 50_000))
    return len(entries) / (time.perf_counter() - t)


def pymerkle_proofs(tree: object, ref: merkle.InMemoryTree, size: int, samples: int) -> dict:
    """Inclusion proof fetch and verify; the audit path is checked against RFC 9162's."""
    root = tree.get_root(size)
    rng = random.Random(1)
    fetch, check, rfc_paths = [], [], 0
    for index in (rng.randrange(size) for _ in range(samples)):
        t = time.perf_counter()
        proof = tree.prove_inclusion(index + 1, size)  # pymerkle counts leaves from 1
        t1 = time.perf_counter()
        pymerkle.verify_inclusion(ref.node(0, index), root, proof)
        fetch.append(t1 - t)
        check.append(time.perf_counter() - t1)
        rfc_paths += proof.path[1:] == ref.inclusion_proof(index, size)
    return {
        "inclusion_proof": latency(fetch),
        "inclusion_verify": latency(check),
        "rfc9162_audit_paths": f"{rfc_paths}/{samples}",
    }


def bench_pymerkle(entries: list[bytes], ref: merkle.InMemoryTree, tmp: Path, args) -> dict:
    size, out = len(entries), {"version": pymerkle.__version__}
    # Hashing: leaf 0x00 / node 0x01 prefixes, split at the largest power of two below n.
    tree = pymerkle.InmemoryTree()
    out["inmemory_append_per_s"] = pymerkle_appends(tree, entries, bulk=False)
    sizes = sorted({1, 2, 3, 7, 8, 1000, size // 3, size - 1, size} - {0})
    roots_equal = all(tree.get_root(s) == ref.root(s) for s in sizes if s <= size)
    out["rfc6962_roots_equal"] = f"{roots_equal} (sizes {sizes})"
    log("pymerkle InmemoryTree: proofs")
    out["inmemory"] = pymerkle_proofs(tree, ref, size, args.proofs)
    del tree

    path = tmp / "pymerkle.db"
    with pymerkle.SqliteTree(str(path)) as sq:
        out["sqlite_bulk_append_per_s"] = pymerkle_appends(sq, entries, bulk=True)
        log("pymerkle SqliteTree: root at full size (cold, fills its subroot cache)")
        out["sqlite_cold_root_s"] = timed(lambda: sq.get_root(size))
        out["sqlite"] = pymerkle_proofs(sq, ref, size, args.proofs)
    with pymerkle.SqliteTree(str(tmp / "pymerkle-small.db")) as sq:
        log(f"pymerkle SqliteTree: {args.appends} single append_entry (a commit each)")
        out["sqlite_single_append_per_s"] = median(
            [
                args.appends / timed(lambda: [sq.append_entry(e) for e in entries[: args.appends]])
                for _ in range(args.repeats)
            ]
        )
    return out


# -- PostgreSQL and cleanup -------------------------------------------------------------------


@contextmanager
def postgres(tmp: Path) -> Iterator[object]:
    """The tests' throwaway server, its files under `tmp` so that they go with it.

    The fixture stops and deletes its server once it has started; a Ctrl-C while it is
    still starting is handled here: stop whatever postmaster got going.
    """
    from tests.fixtures.postgres import _as_db_owner, _pg_bin, throwaway_postgres

    log("starting a throwaway PostgreSQL server (fsync on)")
    tmp.chmod(0o711)  # the postgres user must reach its data directory inside
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp)
    try:
        with throwaway_postgres() as server:
            tempfile.tempdir = saved
            yield server
        log("PostgreSQL server stopped and deleted")
    finally:
        tempfile.tempdir = saved
        for pid_file in tmp.glob("evidence-pg-*/data/postmaster.pid"):
            subprocess.run(
                _as_db_owner(
                    [
                        f"{_pg_bin()}/pg_ctl",
                        "-D",
                        str(pid_file.parent),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ]
                ),
                capture_output=True,
            )


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every cleanup below


# -- report -----------------------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}/s"


def fmt_lat(d: dict) -> str:
    def one(s: float) -> str:
        return f"{s * 1e6:,.0f} µs" if s < 1e-3 else f"{s * 1e3:,.2f} ms"

    return f"{one(d['median_s'])} / {one(d['p95_s'])}"


def fmt_s(s: float) -> str:
    return f"{s * 1e6:,.0f} µs" if s < 1e-3 else f"{s * 1e3:,.2f} ms"


def goals(res: dict) -> str:
    """Issue 14's ledger goals: each measure, its baseline from this run, the ratio."""
    b, t, size = res["baselines"], res["args"]["threads"], res["args"]["size"]
    rows: list[list[str]] = []

    def row(goal: str, ours: str, base: str, ratio: str, met: bool) -> None:
        rows.append([goal, ours, base, ratio, "yes" if met else "NO"])

    pm, sq, pg = res.get("pymerkle"), res.get("sqlite"), res.get("postgresql")
    if pm and sq:
        ours, base = sq["append_1_thread_per_s"]["median"], pm["sqlite_single_append_per_s"]
        row(
            "durable append (SQLite) >= 1x pymerkle SqliteTree append_entry",
            fmt_rate(ours),
            fmt_rate(base),
            f"{ours / base:.2f}x",
            ours >= base,
        )
    if pg and "raw_concurrent_commit_per_s" in b:
        ours, base = pg[f"append_{t}_thread_per_s"]["median"], b["raw_concurrent_commit_per_s"]
        row(
            f"{t} writers (PostgreSQL) >= 0.8x raw insert+commit, >= 3,000/s",
            fmt_rate(ours),
            f"{fmt_rate(base)} raw, {t} writers",
            f"{ours / base:.2f}x",
            ours >= 0.8 * base and ours >= 3000,
        )
    for name, r in (("SQLite", sq), ("PostgreSQL", pg)):
        if not r:
            continue
        p99, floor = r["inclusion_proof"]["p99_s"], r["proof_sql"]["p99_s"]
        row(
            f"inclusion proof p99 at {size:,} ({name}) <= 5 ms",
            fmt_s(p99),
            f"{fmt_s(floor)} its query alone",
            f"{p99 / floor:.1f}x the query",
            p99 <= 5e-3,
        )
        rate, floor_rate = r["verify"]["entries_per_s"], r["read_and_hash_per_s"]
        row(
            f"full verify ({name}) >= 100,000/s",
            fmt_rate(rate),
            f"{fmt_rate(floor_rate)} read + 1 sha256",
            f"{rate / floor_rate:.2f}x",
            rate >= 100_000,
        )
    return table(
        "Issue 14 goals (ratios against baselines measured in this run)",
        ["goal", "ledger", "baseline", "ratio", "met"],
        rows,
    )


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join(
        [f"\n{title}", line(header), line(["-" * w for w in widths]), *map(line, rows)]
    )


def render(res: dict) -> str:
    b, size = res["baselines"], res["args"]["size"]
    sha = b["sha256_per_s"]["node_65B"]
    raw = {
        "sqlite": b["raw_commit_per_s"]["sqlite"],
        "postgresql": b["raw_commit_per_s"].get("postgresql"),
    }
    backends = [k for k in ("sqlite", "postgresql") if k in res]
    parts = [
        f"Ledger benchmark, {res['started']}, {res['machine']}, size {size:,}, "
        f"wall time {res['wall_s']:.0f} s"
    ]

    parts.append(
        table(
            "Baselines (same run, same disk)",
            ["measure", "value"],
            [
                ["sha256, 65 B (a node hash)", fmt_rate(sha)],
                ["sha256, 250 B (a leaf hash)", fmt_rate(b["sha256_per_s"]["entry_250B"])],
                ["rfc8785 canonical JSON of one entry", fmt_rate(b["canonical_per_s"])],
                *[[f"raw insert+commit, {k}", fmt_rate(v)] for k, v in raw.items() if v],
                *[
                    [
                        f"raw insert+commit, postgresql, {res['args']['threads']} writers",
                        fmt_rate(v),
                    ]
                    for v in [b.get("raw_concurrent_commit_per_s")]
                    if v
                ],
            ],
        )
    )

    def per(f: Callable[[dict], str]) -> list[str]:
        return [f(res[be]) for be in backends]

    def vs_raw(key: str) -> list[str]:
        out = []
        for be in backends:
            rate = res[be][key]["median"]
            out.append(f"{fmt_rate(rate)} ({rate / raw[be]:.2f}x raw commit)")
        return out

    def vs_sha(rate: float) -> str:
        return f"{fmt_rate(rate)} (~{sha / rate:,.0f} sha256/entry)"

    def build(r: dict) -> str:
        return f"{vs_sha(r['build']['entries_per_s'])}, {r['build']['seconds']:.0f} s"

    def verify(r: dict) -> str:
        v = r["verify"]
        ok = "ok" if v["ok"] else "FAILED"
        return f"{vs_sha(v['entries_per_s'])}, {v['seconds']:.0f} s, {ok}"

    t = res["args"]["threads"]
    rows = [
        ["durable append, 1 thread", *vs_raw("append_1_thread_per_s")],
        [f"durable append, {t} threads", *vs_raw(f"append_{t}_thread_per_s")],
        [
            "append_entries, 1000/txn (entries)",
            *per(lambda r: vs_sha(r["batched_1000_entries_per_s"]["median"])),
        ],
        [f"build {size:,}, {res['args']['batch']:,}/txn", *per(build)],
        ["storage per entry", *per(lambda r: f"{r['bytes_per_entry']:,.0f} B")],
        ["full verify (DatabaseSource)", *per(verify)],
        ["root(size), median / p95", *per(lambda r: fmt_lat(r["root"]))],
        ["inclusion proof, median / p95", *per(lambda r: fmt_lat(r["inclusion_proof"]))],
        ["  its verification", *per(lambda r: fmt_lat(r["inclusion_verify"]))],
        ["consistency proof, median / p95", *per(lambda r: fmt_lat(r["consistency_proof"]))],
        ["  its verification", *per(lambda r: fmt_lat(r["consistency_verify"]))],
        [
            f"1 durable append at size {size:,}",
            *per(lambda r: fmt_lat(r["append_latency_at_size"])),
        ],
    ]
    parts.append(goals(res))
    parts.append(
        table(
            f"Ledger (medians of {res['args']['repeats']} runs for appends; "
            f"proofs over {res['args']['proofs']} random indices)",
            ["measure", *backends],
            rows,
        )
    )

    m = res["memory"]
    cols = ["our InMemoryTree"]
    rows = [
        ["append_entry (entries)", vs_sha(m["our_append_per_s"])],
        ["inclusion proof, median / p95", fmt_lat(m["ours"]["inclusion_proof"])],
        ["  its verification", fmt_lat(m["ours"]["inclusion_verify"])],
        ["consistency proof, median / p95", fmt_lat(m["ours"]["consistency_proof"])],
    ]
    pm = res.get("pymerkle")
    if pm:
        cols += [f"pymerkle {pm['version']} InmemoryTree", "pymerkle SqliteTree"]
        rows[0] += [
            vs_sha(pm["inmemory_append_per_s"]),
            f"{vs_sha(pm['sqlite_bulk_append_per_s'])} bulk, 1 txn",
        ]
        rows[1] += [
            fmt_lat(pm["inmemory"]["inclusion_proof"]),
            fmt_lat(pm["sqlite"]["inclusion_proof"]),
        ]
        rows[2] += [
            fmt_lat(pm["inmemory"]["inclusion_verify"]),
            fmt_lat(pm["sqlite"]["inclusion_verify"]),
        ]
        rows[3] += ["(not RFC 9162 format)", ""]
        rows += [
            ["root at full size, cold", "", "", f"{pm['sqlite_cold_root_s']:.2f} s"],
            [
                "durable append_entry, 1 commit each",
                "",
                "",
                f"{fmt_rate(pm['sqlite_single_append_per_s'])} (journal=DELETE)",
            ],
        ]
    parts.append(
        table(f"In-memory trees and pymerkle, same {size:,} entries", ["measure", *cols], rows)
    )
    if pm:
        parts.append(
            f"\npymerkle hashing is RFC 6962 / 9162 compatible: roots equal ours "
            f"({pm['rfc6962_roots_equal']}); inclusion audit paths identical to RFC 9162 "
            f"({pm['inmemory']['rfc9162_audit_paths']} in-memory, "
            f"{pm['sqlite']['rfc9162_audit_paths']} SQLite; pymerkle puts the leaf hash first). "
            "Its consistency proofs use its own rule/subset/path layout, not RFC 9162's."
        )
    else:
        parts.append("\npymerkle not installed: its columns are missing.")
    parts.append(
        "Latencies are median / p95. '(Nx raw commit)': rate over a one-row "
        "insert+commit on the same database; '~N sha256/entry': CPU cost of one "
        "entry in 65-byte sha256 calls."
    )
    return "\n".join(parts)


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="entries in the big ledger")
    ap.add_argument("--quick", action="store_true", help="smoke run: --size 20000")
    ap.add_argument("--appends", type=int, default=500, help="single durable appends per run")
    ap.add_argument("--threads", type=int, default=8, help="concurrent writers")
    ap.add_argument("--repeats", type=int, default=3, help="runs of the cheap measurements")
    ap.add_argument("--batch", type=int, default=10_000, help="entries per build transaction")
    ap.add_argument("--proofs", type=int, default=500, help="random indices for proof latency")
    ap.add_argument("--verify-repeats", type=int, default=2, help="full verifies (and floors)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-pymerkle", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.size = 20_000
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    started = dt.datetime.now(dt.UTC)
    res: dict = {
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "args": vars(args),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}",
    }

    with tempfile.TemporaryDirectory(prefix="ledger-bench-", ignore_cleanup_errors=True) as tmp_s:
        tmp = Path(tmp_s)
        log("baselines: sha256, raw SQLite insert+commit")
        res["baselines"] = {
            "sha256_per_s": bench_sha256(),
            "raw_commit_per_s": {
                "sqlite": raw_sqlite_commits(tmp / "raw.db", args.appends, args.repeats)
            },
        }
        entries, res["baselines"]["canonical_per_s"] = canonical_entries(args.size)

        log("our InMemoryTree (also the reference for every root and leaf below)")
        ref, rate = bench_our_tree(entries)
        res["memory"] = {
            "our_append_per_s": rate,
            "ours": proof_latencies(ref, ref, args.size, args.proofs, seed=1),
        }
        if pymerkle is not None and not args.no_pymerkle:
            res["pymerkle"] = bench_pymerkle(entries, ref, tmp, args)
        del entries

        res["sqlite"] = bench_backend("sqlite", lambda tag: f"sqlite:///{tmp}/{tag}.db", args, ref)
        if not args.no_postgres:
            with postgres(tmp) as server:
                raw_url = server.create_database()
                res["baselines"]["raw_commit_per_s"]["postgresql"] = raw_pg_commits(
                    raw_url, args.appends, args.repeats
                )
                log(f"baseline: raw insert+commit, {args.threads} writers on PostgreSQL")
                res["baselines"]["raw_concurrent_commit_per_s"] = raw_pg_concurrent_commits(
                    raw_url, args.appends * 4, args.threads, args.repeats
                )
                res["postgresql"] = bench_backend(
                    "postgresql", lambda tag: server.create_database(), args, ref
                )

    res["wall_s"] = time.perf_counter() - T0
    print(render(res))
    out = ROOT / "bench" / "results" / f"ledger-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted; temporary files and the PostgreSQL server were cleaned up")
        sys.exit(130)
