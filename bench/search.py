#!/usr/bin/env python3
"""Search benchmark: clip search at 10^6 clips on SQLite and PostgreSQL (docs/search.md).

A benchmark, not a test: nothing here asserts a timing. It loads realistic rows (officers,
recording times over three years, categories, states, incident tags, bookmark notes, cases,
camera serials and file names) straight into a migrated database (executemany on SQLite,
COPY on PostgreSQL, in batches; the search indexes are kept in step as they load, by the
triggers and GIN indexes of migration 0015), then runs every filter the UI offers and their
combinations as an evidence officer and as an officer (the row rule) through the search
service, as the UI calls it (a page of 24), and the next (older) page. It prints p50 and p99 per
query, the baseline in the same run (one clip read by its id) and each p99 as a ratio of it,
and the query plan (EXPLAIN) of every statement a search runs. With --old, the search as it
was (LIKE '%q%', OFFSET, a count of every match, `OR id IN (...)`) runs a few rounds too.

    python bench/search.py --rows 100000            # while developing
    nice python bench/search.py                     # 10^6 clips, both engines

The raw figures go to bench/results/search-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `evidence` and `tests.fixtures` without an install

from sqlalchemy import event, func, or_, select  # noqa: E402

from evidence.access import Principal  # noqa: E402
from evidence.accounts.models import Role  # noqa: E402
from evidence.accounts.service import create_user  # noqa: E402
from evidence.cameras.models import ClipName  # noqa: E402
from evidence.clips import service  # noqa: E402
from evidence.clips.models import Bookmark, Clip, ClipTag  # noqa: E402
from evidence.clips.service import SearchFilters  # noqa: E402
from evidence.config import Settings  # noqa: E402
from evidence.context import Context  # noqa: E402
from evidence.migrate import upgrade  # noqa: E402

PAGE = 24  # the UI's page
OFFICERS = 500
CATEGORIES = ["evidential", "non-evidential", "training", "complaint", "rtc", "public-order"]
STATES = ["ready"] * 94 + ["stored"] * 3 + ["unplayable"] * 2 + ["verifying"]
CAMERAS = ["AXON", "BWV", "VB400", "REVEAL"]
NOTES = [
    "suspect drops the knife by the bins",
    "van leaves towards the ring road",
    "victim gives her account to PC",
    "second male enters from the left",
    "caution given, no reply",
    "vehicle registration visible",
    "crowd gathers outside the pub",
    "officer asks for backup",
]
START = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
SPAN_S = 3 * 365 * 86400
SEED = 14


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the rows -------------------------------------------------------------------------------


def generate(n: int, eo_id: str, officer_user: str) -> dict[str, list[tuple]]:
    """Rows for n clips, deterministic for a seed. Times are UTC datetimes."""
    rnd = random.Random(SEED)
    clips, names, tags, notes, items = [], [], [], [], []
    for i in range(n):
        clip_id = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        officer = rnd.randrange(OFFICERS)
        officer_id = f"PC{officer:04d}" if rnd.random() > 0.01 else None  # 1% unattributed
        maker = CAMERAS[officer % len(CAMERAS)]
        serial = f"{maker}-{officer * 7 + rnd.randrange(3):05d}"
        at = START + dt.timedelta(seconds=rnd.randrange(SPAN_S))
        recorded = at if rnd.random() > 0.02 else None  # 2% never probed
        filename = f"{maker}_{at:%Y%m%d_%H%M%S}_{i:07d}.MP4"
        clips.append(
            (
                clip_id,
                hashlib.sha256(i.to_bytes(8, "big")).hexdigest(),
                rnd.randrange(10**6, 10**9),
                rnd.choice(STATES),
                filename,
                officer_id,
                serial,
                recorded,
                at + dt.timedelta(hours=rnd.randrange(1, 48)),
                rnd.choice(CATEGORIES) if rnd.random() > 0.3 else None,
            )
        )
        names.append((clip_id, filename, at))
        if rnd.random() < 0.2:
            tags.append((clip_id, f"INC-{at.year}-{rnd.randrange(5000):04d}", eo_id, at))
        if rnd.random() < 0.05:
            note = f"{rnd.choice(NOTES)} at {rnd.randrange(60)}:{rnd.randrange(60):02d}"
            notes.append((str(uuid.UUID(int=rnd.getrandbits(128))), clip_id, eo_id, 1000, note, at))
    # Cases of ten clips each, one for every 500 clips; the officer works on two of them.
    cases = [(f"case-{k:06d}", f"R v Bench {k}", f"URN {k}", eo_id, START) for k in range(n // 500)]
    for k, case in enumerate(cases):
        for j in range(10):
            clip_id = clips[(k * 500 + j * 37) % n][0]
            items.append((f"item-{k:06d}-{j}", case[0], clip_id, eo_id, START))
    members = [(c[0], officer_user, eo_id, START) for c in cases[:2]]
    return {
        "clips": clips,
        "clip_names": names,
        "clip_tags": tags,
        "bookmarks": notes,
        "cases": cases,
        "case_items": items,
        "case_members": members,
    }


COLUMNS = {
    "clips": "id, sha256, size, state, filename, officer_id, camera_serial, recorded_at, "
    "ingested_at, category",
    "clip_names": "clip_id, filename, first_docked_at",
    "clip_tags": "clip_id, tag, added_by, added_at",
    "bookmarks": "id, clip_id, user_id, at_ms, note, created_at",
    "cases": "id, title, reference, created_by, created_at",
    "case_items": "id, case_id, clip_id, added_by, added_at",
    "case_members": "case_id, user_id, added_by, added_at",
}


def _sqlite_value(v: object) -> object:
    # SQLAlchemy's storage format for DateTime on SQLite, which the comparisons rely on.
    return v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, dt.datetime) else v


def load(ctx: Context, rows: dict[str, list[tuple]], batch: int) -> float:
    """Insert every row in batches; returns the seconds taken (the indexes included)."""
    t0 = time.perf_counter()
    raw = ctx.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        for table, data in rows.items():
            cols = COLUMNS[table]
            for start in range(0, len(data), batch):
                chunk = data[start : start + batch]
                if ctx.db.dialect == "sqlite":
                    # The store's connections leave transactions to SQLAlchemy (autocommit
                    # in the driver): without a BEGIN every row would be its own fsync.
                    cur.execute("BEGIN")
                    marks = ", ".join("?" * len(chunk[0]))
                    cur.executemany(
                        f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                        [tuple(_sqlite_value(v) for v in r) for r in chunk],
                    )
                else:
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        for r in chunk:
                            copy.write_row(r)
                raw.commit()
            log(f"  {table}: {len(data):,} rows")
        if ctx.db.dialect == "sqlite":
            cur.execute("ANALYZE")
        else:
            raw.commit()
            driver = raw.driver_connection
            driver.autocommit = True  # VACUUM runs outside a transaction
            driver.execute("VACUUM ANALYZE")
            driver.autocommit = False
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - t0


# -- the queries ----------------------------------------------------------------------------


def queries(rows: dict[str, list[tuple]]) -> dict[str, SearchFilters]:
    """Every filter of the UI, alone and combined, with values taken from the data."""
    clip = rows["clips"][len(rows["clips"]) // 3]
    tag = rows["clip_tags"][len(rows["clip_tags"]) // 2][1]
    case = rows["cases"][0][0]
    month = (dt.datetime(2024, 5, 1, tzinfo=dt.UTC), dt.datetime(2024, 6, 1, tzinfo=dt.UTC))
    day = (dt.datetime(2024, 5, 7, tzinfo=dt.UTC), dt.datetime(2024, 5, 8, tzinfo=dt.UTC))
    F = SearchFilters
    return {
        "newest (no filter)": F(),
        "officer": F(officer_id="PC0007"),
        "from-to (a month)": F(recorded_from=month[0], recorded_to=month[1]),
        "category": F(category="complaint"),
        "state": F(state="unplayable"),
        "tag": F(tag=tag),
        "case": F(case_id=case),
        "text: file name part": F(text=clip[4][5:20]),
        "text: camera serial": F(text=clip[6]),
        "text: note words": F(text="drops the knife"),
        "text: incident prefix": F(text="INC-2024-01"),
        "text: no match": F(text="zzqxj"),
        "text: sha256": F(text=clip[1]),
        "officer + from-to": F(officer_id="PC0007", recorded_from=month[0], recorded_to=month[1]),
        "category + from-to (a day)": F(category="rtc", recorded_from=day[0], recorded_to=day[1]),
        "category + state": F(category="training", state="stored"),
        "text + from-to": F(text="backup", recorded_from=month[0], recorded_to=month[1]),
        "text + category": F(text="knife", category="evidential"),
        "tag + text": F(tag=tag, text="INC"),
        "case + category": F(case_id=case, category="evidential"),
        "officer + category + state": F(officer_id="PC0007", category="rtc", state="ready"),
        "all but case": F(
            officer_id="PC0007",
            recorded_from=month[0],
            recorded_to=month[1],
            category="evidential",
            state="ready",
            tag=tag,
            text="INC",
        ),
    }


@contextmanager
def statements(ctx: Context) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements run inside the block, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append((statement, parameters))

    event.listen(ctx.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", record)


def explain(ctx: Context, statement: str, parameters: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if ctx.db.dialect == "sqlite" else "EXPLAIN "
    raw = ctx.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(prefix + statement, parameters)
        rows = cur.fetchall()
        raw.rollback()
    finally:
        raw.close()
    if ctx.db.dialect == "sqlite":
        return "\n".join(f"    {r[1]:>3} {r[3]}" for r in rows)
    return "\n".join(f"    {r[0]}" for r in rows)


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p99(ms: list[float]) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def old_search(ctx: Context, who: Principal, f: SearchFilters) -> None:
    """The search as it was before migration 0015: one WHERE with `OR id IN (...)`, LIKE
    '%q%' on lower(...), a count of every match and an OFFSET page (the comparison)."""
    from evidence.access import clip_filter

    where = [clip_filter(who, footage=False)]
    if f.officer_id:
        where.append(Clip.officer_id == f.officer_id)
    if f.text:
        like = f"%{f.text.lower()}%"
        where.append(
            or_(
                func.lower(Clip.filename).like(like),
                func.lower(Clip.camera_serial).like(like),
                Clip.id.in_(
                    select(ClipName.clip_id).where(func.lower(ClipName.filename).like(like))
                ),
                Clip.id.in_(select(ClipTag.clip_id).where(func.lower(ClipTag.tag).like(like))),
                Clip.id.in_(select(Bookmark.clip_id).where(func.lower(Bookmark.note).like(like))),
            )
        )
    with ctx.db.session() as s:
        s.scalar(select(func.count()).select_from(Clip).where(*where))
        s.scalars(
            select(Clip)
            .where(*where)
            .order_by(Clip.recorded_at.desc().nulls_last(), Clip.ingested_at.desc())
            .offset(PAGE)
            .limit(PAGE)
        ).all()


def bench_engine(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    eo = create_user(ctx, "bench_eo", "evidence_officer", "correct horse battery staple")
    pc = create_user(
        ctx, "bench_pc", "officer", "correct horse battery staple", officer_id="PC0042"
    )
    people = {
        "evidence officer": Principal(eo.id, eo.username, Role.evidence_officer),
        "officer": Principal(pc.id, pc.username, Role.officer, "PC0042"),
    }
    log(f"{ctx.db.dialect}: generating {args.rows:,} clips")
    rows = generate(args.rows, eo.id, pc.id)
    log(f"{ctx.db.dialect}: loading")
    load_s = load(ctx, rows, args.batch)
    log(f"{ctx.db.dialect}: loaded in {load_s:.0f} s")
    some = rows["clips"][len(rows["clips"]) // 2][0]

    def by_id() -> None:
        with ctx.db.session() as s:
            s.execute(select(Clip).where(Clip.id == some)).scalar_one()

    timed(by_id, 20)  # warm
    baseline = median(timed(by_id, max(50, args.rounds)))
    out: dict[str, Any] = {"rows": args.rows, "load_s": load_s, "baseline_ms": baseline}
    out["queries"] = results = []
    print(f"\n== {ctx.db.dialect}, {args.rows:,} clips, loaded in {load_s:.0f} s ==")
    print(f"baseline (one clip by id): p50 {baseline:.2f} ms; ratio = p99 / baseline")
    print("page 1 as the UI asks for it; older: the next page, from page 1's cursor")
    print(
        f"{'query':<30} {'as':<17} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}"
        f" {'older p50':>10} {'older p99':>10}"
    )
    for name, f in queries(rows).items():
        for who_name, who in people.items():

            def run(f: SearchFilters = f, who: Principal = who) -> str | None:
                return service.search(ctx, who, f, limit=PAGE).next_before

            def older(f: SearchFilters = f, who: Principal = who) -> None:
                service.search(ctx, who, f, limit=PAGE, before=cursor)

            timed(run, 2)  # warm the caches, as a running store has them
            with statements(ctx) as seen:
                cursor = run()
            ms = timed(run, args.rounds)
            old_ms = timed(older, args.rounds) if cursor else [0.0]
            p50v, p99v = median(ms), p99(ms)
            flag = "" if max(p99v, p99(old_ms)) <= 100 else "  > 100 ms"
            print(
                f"{name:<30} {who_name:<17} {p50v:>8.1f} {p99v:>8.1f} "
                f"{p99v / baseline:>7.0f} {median(old_ms):>10.1f} {p99(old_ms):>10.1f}{flag}"
            )
            plans = [explain(ctx, st, params) for st, params in seen]
            if args.explain:
                for (st, _), plan in zip(seen, plans, strict=True):
                    print(f"  -- {' '.join(st.split())[:150]}\n{plan}")
            results.append(
                {
                    "query": name,
                    "as": who_name,
                    "p50_ms": p50v,
                    "p99_ms": p99v,
                    "older_p50_ms": median(old_ms),
                    "older_p99_ms": p99(old_ms),
                    "plans": plans,
                }
            )
    if args.old:
        print("\nthe search as it was (count of every match, OFFSET, LIKE, OR id IN):")
        for name in ("newest (no filter)", "text: note words", "officer"):
            f = queries(rows)[name]
            for who_name, who in people.items():
                ms = timed(lambda f=f, who=who: old_search(ctx, who, f), 3)
                print(f"{name:<30} {who_name:<17} {median(ms):>8.1f} {max(ms):>8.1f} (3 rounds)")
                results.append({"query": f"old: {name}", "as": who_name, "p50_ms": median(ms)})
    return out


@contextmanager
def postgres(tmp: Path) -> Iterator[Any]:
    """The tests' throwaway server, its files under `tmp` (stopped and deleted after)."""
    from tests.fixtures.postgres import throwaway_postgres

    tmp.chmod(0o711)  # the postgres user must reach its data directory inside
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp)
    try:
        with throwaway_postgres() as server:
            tempfile.tempdir = saved
            yield server
    finally:
        tempfile.tempdir = saved


def context_for(tmp: Path, url: str) -> Context:
    upgrade(url)
    return Context(Settings(data_dir=tmp / "var", database_url=url, storage_backend="local"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="clips to load")
    ap.add_argument("--rounds", type=int, default=30, help="runs of each query")
    ap.add_argument("--batch", type=int, default=20_000, help="rows per load transaction")
    ap.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--no-explain", dest="explain", action="store_false")
    ap.add_argument("--old", action="store_true", help="also time the search as it was")
    args = ap.parse_args()
    started = dt.datetime.now(dt.UTC)
    res: dict[str, Any] = {"started": started.isoformat(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="bench-search-") as name:
        tmp = Path(name)
        if args.engine in ("sqlite", "both"):
            ctx = context_for(tmp / "sqlite", f"sqlite:///{tmp / 'sqlite' / 'evidence.db'}")
            res["sqlite"] = bench_engine(ctx, args)
            ctx.db.dispose()
        if args.engine in ("postgresql", "both"):
            with postgres(tmp) as server:
                ctx = context_for(tmp / "pg", server.create_database())
                res["postgresql"] = bench_engine(ctx, args)
                ctx.db.dispose()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "bench" / "results" / f"search-{args.engine}-{stamp}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    log(f"figures in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
