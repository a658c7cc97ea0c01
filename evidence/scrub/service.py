"""The scrubber: re-hash every stored object the database vouches for, and raise the alarm.

Bit rot, a bad disk, an operator's slip or a restore from the wrong backup all change or
lose bytes silently; nothing notices until the footage is needed in court. The scrubber reads
every object back, in key order, at a throttled rate, and compares its SHA-256 with the hash
recorded when it was stored, and that hash with the one the ledger's storing entry vouches
for (so a database whose hashes were rewritten to match swapped bytes is caught as well):

- originals `originals/{sha256}` of clips that are stored, ready or unplayable (not clips in
  flight, rejected or disposed of, nor clips whose disposal is approved: a disposal deletes
  the objects before it writes its tombstone),
- their derivatives (proxy, thumbnail, redactions) and ready court bundles.

Each batch of objects is one `scrub.batch` ledger entry that commits to the batch's hashes
(`sums_sha256`: the SHA-256 of the batch's lines in coreutils SHA256SUMS format), so the
ledger proves what was checked without one entry per object per day. A mismatch or a missing
object is an `integrity.failed` entry (once, not every pass), the clip's `integrity` column
("failed", shown in the API and the UI), a log line on `evidence.scrub`, and the
`evidence_integrity_failures` metric. An object that checks good again after a restore gets
`integrity.restored`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

import evidence.models  # noqa: F401  (every table: the ORM resolves clips -> devices etc.)
from evidence import clock
from evidence.bundles.models import Bundle
from evidence.clips.models import Clip, Derivative
from evidence.context import Context
from evidence.errors import ObjectNotFound
from evidence.ledger.entries import make_entry
from evidence.ledger.models import LedgerEntry, LedgerRef
from evidence.retention.models import Disposal, DisposalState
from evidence.scrub.models import ScrubCursor
from evidence.storage import ORIGINALS_PREFIX, ObjectStore

log = logging.getLogger("evidence.scrub")

ACTOR = "system:scrubber"
SCRUBBED_STATES = ("stored", "ready", "unplayable")
"""Clip states whose objects must exist: uploading/verifying have no original yet, rejected
never had one, disposed ones were deleted on purpose."""

RESTORE_HINT = "restore the object from backup: docs/backup.md, then run `evidence scrub`"
MB = 1_000_000  # rates are in MB/s (decimal, like disk and network figures)

FAILED, RESTORED, BATCH = "integrity.failed", "integrity.restored", "scrub.batch"


# --- what is scrubbed -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One object the database vouches for: where it is and what it must hash to."""

    key: str
    sha256: str
    kind: str  # "original", "derivative" or "bundle"
    clip_id: str | None = None
    bundle_id: str | None = None

    @property
    def subject(self) -> dict[str, str]:
        return {"clip": self.clip_id} if self.clip_id else {"bundle": self.bundle_id or ""}

    @property
    def ref(self) -> str:
        return f"clip:{self.clip_id}" if self.clip_id else f"bundle:{self.bundle_id}"


def _clip_scrubbed() -> ColumnElement[bool]:
    approved = select(Disposal.clip_id).where(Disposal.state == DisposalState.approved.value)
    return Clip.state.in_(SCRUBBED_STATES) & Clip.id.not_in(approved)


def _suffix_bounds(
    prefix: str, after: str, upto: str | None
) -> tuple[str | None, str | None] | None:
    """Turn key bounds `after < key <= upto` into bounds on the suffix of keys `prefix + s`.

    Lets originals be paged on the indexed `clips.sha256` column instead of a computed key.
    Returns None when no key with this prefix lies in the range.
    """
    if after < prefix:
        low = None
    elif after.startswith(prefix):
        low = after[len(prefix) :]
    else:  # after sorts above every key with this prefix
        return None
    if upto is None:
        high = None
    elif upto.startswith(prefix):
        high = upto[len(prefix) :]
    elif upto < prefix:
        return None
    else:  # upto sorts above every key with this prefix
        high = None
    return low, high


def _binary(session: Session, column: Any) -> Any:
    """Compare keys byte by byte: PostgreSQL's default collation ignores '/' and '-', which
    would make its `key > cursor` disagree with the key order we walk in."""
    if session.get_bind().dialect.name == "postgresql":
        return column.collate("C")
    return column


def next_targets(session: Session, after: str, limit: int, upto: str | None = None) -> list[Target]:
    """The next `limit` objects in key order with `after < key <= upto`."""
    found: list[Target] = []
    bounds = _suffix_bounds(ORIGINALS_PREFIX, after, upto)
    if bounds is not None:
        low, high = bounds
        q = select(Clip.id, Clip.sha256).where(_clip_scrubbed())
        if low is not None:
            q = q.where(Clip.sha256 > low)
        if high is not None:
            q = q.where(Clip.sha256 <= high)
        for clip_id, sha in session.execute(q.order_by(Clip.sha256).limit(limit)):
            found.append(Target(ORIGINALS_PREFIX + sha, sha, "original", clip_id=clip_id))
    dkey = _binary(session, Derivative.key)
    q = (
        select(Derivative.key, Derivative.sha256, Derivative.clip_id)
        .join(Clip, Clip.id == Derivative.clip_id)
        .where(_clip_scrubbed(), dkey > after)
    )
    if upto is not None:
        q = q.where(dkey <= upto)
    for key, sha, clip_id in session.execute(q.order_by(dkey).limit(limit)):
        found.append(Target(key, sha, "derivative", clip_id=clip_id))
    bkey = _binary(session, Bundle.key)
    q = select(Bundle.key, Bundle.sha256, Bundle.id).where(
        Bundle.state == "ready", Bundle.sha256.is_not(None), bkey > after
    )
    if upto is not None:
        q = q.where(bkey <= upto)
    for key, sha, bundle_id in session.execute(q.order_by(bkey).limit(limit)):
        found.append(Target(key, sha, "bundle", bundle_id=bundle_id))
    found.sort(key=lambda t: t.key)  # str order is code point order: UTF-8 byte order
    return found[:limit]


def count_targets(session: Session) -> int:
    """How many objects a full pass checks (for progress lines)."""
    originals = session.scalar(select(func.count()).select_from(Clip).where(_clip_scrubbed()))
    derivatives = session.scalar(
        select(func.count())
        .select_from(Derivative)
        .join(Clip, Clip.id == Derivative.clip_id)
        .where(_clip_scrubbed())
    )
    bundles = session.scalar(
        select(func.count())
        .select_from(Bundle)
        .where(Bundle.state == "ready", Bundle.sha256.is_not(None))
    )
    return int(originals or 0) + int(derivatives or 0) + int(bundles or 0)


# --- reading at a throttled rate ----------------------------------------------------------


class Throttle:
    """Keeps reading at or below `rate` bytes per second on average.

    After `consume(n)`, sleeps until the bytes read since the window began could have been
    read at `rate`. Idle time (database commits, a slow store) is not banked beyond `burst`
    seconds, so a pause does not turn into a burst that starves playback afterwards.
    Clock and sleep are injectable so the arithmetic is testable without waiting.
    """

    def __init__(
        self,
        rate_bytes_per_s: float,
        *,
        burst_s: float = 1.0,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate_bytes_per_s <= 0:
            raise ValueError("the scrub rate must be positive (EVIDENCE_SCRUB_RATE_MB_PER_S)")
        self.rate = rate_bytes_per_s
        self.burst_s = burst_s
        self._now = now
        self._sleep = sleep
        self._start = now()
        self._bytes = 0
        self.slept = 0.0

    def wait_for(self, at: float) -> float:
        """Seconds to sleep at time `at` so the window's bytes do not exceed the rate."""
        return self._start + self._bytes / self.rate - at

    def consume(self, n: int) -> None:
        self._bytes += n
        now = self._now()
        wait = self.wait_for(now)
        if wait > 0:
            self._sleep(wait)
            self.slept += wait
        elif wait < -self.burst_s:
            self._start, self._bytes = now, 0  # idle for a while: start a new window


@dataclass(frozen=True)
class Checked:
    target: Target
    actual: str | None  # None: the object is missing or could not be read
    size: int
    unreadable: bool = False  # present, but reading it failed (a bad sector, a damaged file)

    @property
    def problem(self) -> str | None:
        if self.unreadable:
            return "unreadable"
        if self.actual is None:
            return "missing"
        return None if self.actual == self.target.sha256 else "mismatch"


def check_object(store: ObjectStore, target: Target, throttle: Throttle) -> Checked:
    """Re-hash one object by streaming it (memory stays at a chunk)."""
    h = hashlib.sha256()
    size = 0
    try:
        with closing(store.open(target.key)) as chunks:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                throttle.consume(len(chunk))
    except ObjectNotFound:
        return Checked(target, None, 0)
    except ConnectionError:
        raise  # the storage is unreachable, not this object broken: stop the run
    except OSError as exc:
        log.error("scrub: reading %s failed: %s", target.key, exc)
        return Checked(target, None, size, unreadable=True)
    return Checked(target, h.hexdigest(), size)


def sums_lines(results: list[Checked]) -> str:
    """The batch's objects in coreutils SHA256SUMS format (`sha256sum -c` reads it)."""
    return "".join(f"{r.actual}  {r.target.key}\n" for r in results if r.actual is not None)


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    key: str
    problem: str  # "mismatch", "missing", "unreadable" or "unvouched"
    expected: str
    actual: str | None
    clip_id: str | None
    bundle_id: str | None
    new: bool  # False: already recorded as failed the same way (no new ledger entry)


@dataclass
class ScrubReport:
    total: int = 0  # objects a full pass covers, when the run began
    checked: int = 0
    bytes: int = 0
    batches: int = 0
    failures: list[Failure] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    finished_pass: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures


Progress = Callable[[ScrubReport, list[Failure]], None]


# --- recording a batch ----------------------------------------------------------------------


VOUCHING = ("clip.ingested", "derivative.created", "bundle.exported")
"""The entries that state an object's hash when it was stored: the scrubber checks the
database's expected hash against them, so a database whose hashes were rewritten (with the
objects swapped to match) is caught too, not only bytes that changed under it."""


def _ledger_vouched(session: Session, refs: list[str]) -> dict[str, set[str]]:
    """Object key -> the sha256 values the ledger's storing entries vouch for."""
    out: dict[str, set[str]] = {}
    if not refs:
        return out
    rows = session.scalars(
        select(LedgerEntry.entry)
        .join(LedgerRef, LedgerRef.idx == LedgerEntry.idx)
        .where(LedgerRef.ref.in_(refs), LedgerEntry.type.in_(VOUCHING))
    )
    for raw in rows:
        e = json.loads(raw)
        if e["type"] == "clip.ingested":
            key = e.get("original") or ORIGINALS_PREFIX + str(e.get("sha256"))
        else:
            key = e.get("key")
        if isinstance(key, str) and isinstance(e.get("sha256"), str):
            out.setdefault(key, set()).add(e["sha256"])
    return out


def _recorded_failures(session: Session, refs: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per subject ref, the keys whose latest integrity entry is `integrity.failed`.

    The ledger is the memory of what was already reported, so a pass does not report the
    same failure again, and a restore is noticed.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {ref: {} for ref in refs}
    if not refs:
        return out
    rows = session.execute(
        select(LedgerRef.ref, LedgerEntry.entry)
        .join(LedgerEntry, LedgerEntry.idx == LedgerRef.idx)
        .where(LedgerRef.ref.in_(refs), LedgerEntry.type.in_((FAILED, RESTORED)))
        .order_by(LedgerEntry.idx)
    )
    for ref, raw in rows:
        entry = json.loads(raw)
        if entry["type"] == FAILED:
            out[ref][entry["key"]] = entry
        else:
            out[ref].pop(entry["key"], None)
    return out


def describe(key: str, problem: str, expected: str, actual: str | None) -> str:
    if problem == "missing":
        return f"{key} is missing from the object store"
    if problem == "unreadable":
        return f"{key} could not be read back from the object store (an I/O error)"
    if problem == "unvouched":
        return (
            f"{key}: the database expects {expected}, a hash no ledger entry vouches for "
            "(the database's record was changed: verify the ledger, restore the database)"
        )
    return f"{key} hashes to {actual}, not the recorded {expected} (the stored bytes changed)"


def _clip_error(failed: dict[str, dict[str, Any]]) -> str:
    what = "; ".join(
        describe(k, e["problem"], e["expected"], e.get("actual")) for k, e in sorted(failed.items())
    )
    return f"{what}. What to do: {RESTORE_HINT}"


def _vouched_keys(session: Session, clip: Clip) -> set[str]:
    keys = set(session.scalars(select(Derivative.key).where(Derivative.clip_id == clip.id)))
    return keys | {ORIGINALS_PREFIX + clip.sha256}


def _still_scrubbed(session: Session, clip: Clip | None) -> bool:
    """A clip disposed of (or approved for disposal) since its objects were listed has lost
    them on purpose: that is not an integrity failure."""
    if clip is None or clip.state not in SCRUBBED_STATES:
        return False
    approved = session.scalar(
        select(func.count())
        .select_from(Disposal)
        .where(Disposal.clip_id == clip.id, Disposal.state == DisposalState.approved.value)
    )
    return not approved


def record_batch(
    ctx: Context, results: list[Checked], cursor: str | None
) -> tuple[list[Checked], list[Failure], list[str]]:
    """One transaction: failure/restore entries, the batch entry, clips' integrity, cursor.

    Returns the results that count (objects of clips disposed of meanwhile are dropped),
    the failures and the keys restored.
    """
    now = clock.now()
    with ctx.db.write_session() as s:
        clips: dict[str, Clip | None] = {}
        kept: list[Checked] = []
        for r in results:
            cid = r.target.clip_id
            if cid is not None:
                if cid not in clips:
                    clip = s.get(Clip, cid)
                    clips[cid] = clip if _still_scrubbed(s, clip) else None
                if clips[cid] is None:
                    continue
            kept.append(r)
        refs = sorted({r.target.ref for r in kept})
        recorded = _recorded_failures(s, refs)
        vouched = _ledger_vouched(s, refs)
        entries: list[dict[str, Any]] = []
        failures: list[Failure] = []
        restored: list[str] = []
        for r in kept:
            t, open_failures = r.target, recorded[r.target.ref]
            previous = open_failures.get(t.key)
            problem = r.problem or (None if t.sha256 in vouched.get(t.key, ()) else "unvouched")
            if problem is None:
                if previous is not None:
                    entries.append(
                        make_entry(
                            RESTORED, actor=ACTOR, subject=t.subject, key=t.key, sha256=t.sha256
                        )
                    )
                    del open_failures[t.key]
                    restored.append(t.key)
                continue
            same = previous is not None and (previous["problem"], previous.get("actual")) == (
                problem,
                r.actual,
            )
            failures.append(
                Failure(t.key, problem, t.sha256, r.actual, t.clip_id, t.bundle_id, new=not same)
            )
            if not same:
                entry = make_entry(
                    FAILED,
                    actor=ACTOR,
                    subject=t.subject,
                    key=t.key,
                    expected=t.sha256,
                    actual=r.actual,
                    problem=problem,
                )
                entries.append(entry)
                open_failures[t.key] = entry
        for cid, clip in clips.items():
            if clip is None:
                continue
            open_failures = recorded[f"clip:{cid}"]
            if open_failures:
                # A derivative deleted on purpose (its row is gone) no longer counts.
                vouched = _vouched_keys(s, clip)
                open_failures = {k: e for k, e in open_failures.items() if k in vouched}
            clip.integrity = "failed" if open_failures else "ok"
            clip.integrity_error = _clip_error(open_failures) if open_failures else None
            clip.integrity_checked_at = now
        if kept:
            entries.append(
                make_entry(
                    BATCH,
                    actor=ACTOR,
                    subject={},
                    objects=len(kept),
                    bytes=sum(r.size for r in kept),
                    first_key=kept[0].target.key,
                    last_key=kept[-1].target.key,
                    failures=len(failures),
                    sums_sha256=hashlib.sha256(sums_lines(kept).encode()).hexdigest(),
                )
            )
            ctx.ledger.append_entries(s, entries)
        if cursor is not None and results:
            _move_cursor(s, cursor, results[-1].target.key, now)
    return kept, failures, restored


def _move_cursor(
    session: Session, name: str, last_key: str, now: Any, new_pass: bool = False
) -> None:
    row = session.get(ScrubCursor, name)
    if row is None:
        row = ScrubCursor(name=name, last_key="", pass_started_at=now)
        session.add(row)
    row.last_key = last_key
    row.updated_at = now
    if new_pass:
        row.pass_started_at = now


def _load_cursor(ctx: Context, name: str) -> str:
    with ctx.db.write_session() as s:
        row = s.get(ScrubCursor, name)
        if row is None:
            now = clock.now()
            s.add(ScrubCursor(name=name, last_key="", pass_started_at=now, updated_at=now))
            return ""
        return row.last_key


def _start_pass(ctx: Context, name: str) -> None:
    with ctx.db.write_session() as s:
        _move_cursor(s, name, "", clock.now(), new_pass=True)


# --- the entry point ------------------------------------------------------------------------


def _batches(
    ctx: Context,
    start_after: str,
    batch_size: int,
    max_objects: int | None,
    cursor: str | None,
    report: ScrubReport,
) -> Iterator[list[Target]]:
    """Batches in key order from `start_after`; with a cursor, wraps once to the start and
    stops where it began, so one run never checks an object twice."""
    after, upto, wrapped = start_after, None, False
    remaining = max_objects
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        with ctx.db.session() as s:
            batch = next_targets(s, after, size, upto)
        if not batch:
            if upto is None:
                report.finished_pass = True  # reached the end of the key space
            if cursor is None or wrapped or start_after == "":
                return
            # Carry on from the start of a new pass, up to where this run began.
            _start_pass(ctx, cursor)
            after, upto, wrapped = "", start_after, True
            continue
        yield batch
        after = batch[-1].key
        if remaining is not None:
            remaining -= len(batch)
    if upto is None and after:
        with ctx.db.session() as s:
            at_end = not next_targets(s, after, 1)
        if at_end:
            # The run's budget ran out exactly at the end of the key space.
            report.finished_pass = True
            if cursor is not None:
                _start_pass(ctx, cursor)  # the next run starts a new pass


def scrub(
    ctx: Context,
    *,
    cursor: str | None = None,
    max_objects: int | None = None,
    batch_size: int | None = None,
    rate_mb_per_s: float | None = None,
    progress: Progress | None = None,
) -> ScrubReport:
    """Re-hash stored objects against their recorded SHA-256, in key order.

    Without `cursor`: one full pass from the start (the CLI). With a cursor name (the
    scheduler uses "scheduled"): carry on after where that cursor stopped, wrapping to the
    start (a new pass) at the end. `max_objects` bounds one run.
    """
    settings = ctx.settings
    batch_size = batch_size or settings.scrub_batch_size
    throttle = Throttle((rate_mb_per_s or settings.scrub_rate_mb_per_s) * MB)
    report = ScrubReport()
    with ctx.db.session() as s:
        report.total = count_targets(s)
    start_after = _load_cursor(ctx, cursor) if cursor is not None else ""
    for batch in _batches(ctx, start_after, batch_size, max_objects, cursor, report):
        results = [check_object(ctx.store, t, throttle) for t in batch]
        kept, failures, restored = record_batch(ctx, results, cursor)
        report.batches += 1 if kept else 0
        report.checked += len(kept)
        report.bytes += sum(r.size for r in kept)
        report.failures += failures
        report.restored += restored
        for f in failures:
            log.error(
                "integrity check failed: %s; %s %s; %s",
                describe(f.key, f.problem, f.expected, f.actual),
                "clip" if f.clip_id else "bundle",
                f.clip_id or f.bundle_id,
                RESTORE_HINT,
            )
        for key in restored:
            log.warning("integrity restored: %s hashes to its recorded SHA-256 again", key)
        if progress is not None:
            progress(report, failures)
    return report


# --- what the metrics report ----------------------------------------------------------------


@dataclass(frozen=True)
class IntegrityStatus:
    failed_clips: int
    failed_bundles: int
    last_batch_at: float | None  # Unix time of the latest scrub.batch entry

    @property
    def failures(self) -> int:
        return self.failed_clips + self.failed_bundles


def integrity_status(ctx: Context) -> IntegrityStatus:
    """Computed from the database, so any process (the API's /metrics) can report it."""
    with ctx.db.session() as s:
        clips = s.scalar(
            select(func.count())
            .select_from(Clip)
            .where(Clip.integrity == "failed", Clip.state.in_(SCRUBBED_STATES))
        )
        last = s.scalar(select(func.max(LedgerEntry.at)).where(LedgerEntry.type == BATCH))
        # Bundles have no integrity column: their open failures are in the ledger.
        refs = s.scalars(
            select(LedgerRef.ref)
            .distinct()
            .join(LedgerEntry, LedgerEntry.idx == LedgerRef.idx)
            .where(LedgerEntry.type == FAILED, LedgerRef.ref.like("bundle:%"))
        ).all()
        open_ = _recorded_failures(s, list(refs))
    return IntegrityStatus(
        failed_clips=int(clips or 0),
        failed_bundles=sum(1 for failed in open_.values() if failed),
        last_batch_at=last.timestamp() if last is not None else None,
    )
