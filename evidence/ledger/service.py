"""The ledger: one append-only log for the whole store, hash-chained and Merkle-logged.

Appends are serialized by one sequencer: on PostgreSQL a transaction-scoped advisory
lock, on SQLite the database write lock (`BEGIN IMMEDIATE`). Each append writes the
entries, their subject refs, the perfect subtree nodes they complete and a signed
checkpoint for the new size, in the caller's transaction: an event and the change it
records commit together or not at all.

The write path (docs/architecture.md, "The ledger's write path"):
- the sequencer keeps the head (size, last chain hash, Merkle frontier) in memory and,
  holding the lock, checks it against the database's last entry: one primary-key read.
  If another process appended, or a caller's transaction rolled back after appending,
  the last entry differs and the head is read again from the tables;
- rows go in as Core executemany inserts (no ORM objects), four statements per append;
- `append` (an event in its own transaction) is group-committed: concurrent callers in
  one process queue their entries, one of them writes the whole queue in one transaction
  with one signed checkpoint, and each returns once that commit is durable.
  `append_in` and `append_entries` are never batched: they stay in the caller's
  transaction.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.orm import Session

from evidence import clock
from evidence.db import Database
from evidence.errors import LedgerError, NotFound, ProofError
from evidence.ledger import merkle
from evidence.ledger.chain import ZERO_CHAIN, chain_hash
from evidence.ledger.entries import SubjectIds, canonical, make_entry, refs_of
from evidence.ledger.models import LedgerEntry, LedgerNode, LedgerRef, SignedCheckpoint
from evidence.ledger.note import Checkpoint, NoteSigner, sign_checkpoint

# Any constant works; it only has to be the same for every writer of this database.
_SEQUENCER_LOCK = 0x65766964656E6365 & 0x7FFFFFFFFFFFFFFF

# Nodes fetched per proof query: far below SQLite's 32,766 bound parameters, and a batch
# of proofs for a bundle of thousands of entries still takes a handful of queries.
_NODES_PER_QUERY = 4000

_LAST_ENTRY = text("SELECT idx, chain_hash FROM ledger_entries ORDER BY idx DESC LIMIT 1")
_PG_LOCK = "SELECT pg_advisory_xact_lock(%s)"
_PG_LAST_ENTRY = "SELECT idx, chain_hash FROM ledger_entries ORDER BY idx DESC LIMIT 1"
_PG_INSERTS = (
    "INSERT INTO ledger_entries (idx, entry, leaf_hash, chain_hash, type, at)"
    " VALUES (%s, %s, %s, %s, %s, %s)",
    "INSERT INTO ledger_refs (ref, idx) VALUES (%s, %s)",
    "INSERT INTO ledger_nodes (level, position, hash) VALUES (%s, %s, %s)",
    "INSERT INTO checkpoints (tree_size, root_hash, note, created_at) VALUES (%s, %s, %s, %s)",
)

# PostgreSQL: one fixed text for every proof, so that psycopg prepares it on a connection
# after a few uses (prepare_threshold) and later proofs skip parsing and planning.
_PG_NODES = (
    "SELECT 0::smallint, e.idx, e.leaf_hash FROM ledger_entries e"
    " WHERE e.idx = ANY(%(leaves)s::bigint[])"
    " UNION ALL"
    " SELECT n.level, n.position, n.hash FROM ledger_nodes n"
    " JOIN unnest(%(levels)s::smallint[], %(positions)s::bigint[]) AS w(level, position)"
    " ON n.level = w.level AND n.position = w.position"
)


@dataclass(frozen=True)
class Appended:
    index: int
    entry: bytes
    leaf_hash: bytes
    chain_hash: bytes


@dataclass(frozen=True)
class _Head:
    """What the sequencer remembers between appends: enough to append without reading."""

    size: int
    chain: bytes
    frontier: tuple[bytes, ...]

    def tree(self) -> merkle.CompactRange:
        return merkle.CompactRange.from_frontier(self.size, self.frontier)


@dataclass(frozen=True)
class _Prepared:
    """An entry made ready to append: everything that does not depend on the head.

    Made before the sequencer is taken (for `append`, by the caller's own thread while a
    batch is being written), so that the lock is held only for what needs the head.
    """

    data: bytes
    leaf: bytes
    refs: list[str]
    type: str
    at: dt.datetime

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> _Prepared:
        data = canonical(entry)
        return cls(
            data,
            merkle.leaf_hash(data),
            refs_of(entry),
            str(entry["type"]),
            _parse_at(str(entry["at"])),
        )


class _Pending:
    """One `append` waiting for its group's commit, or for its turn to lead the next."""

    def __init__(self, entry: _Prepared):
        self.entry = entry
        self.lead = False  # set before `woken` when this caller is to write the next batch
        self.woken = threading.Event()
        self.result: Appended | None = None
        self.error: BaseException | None = None

    def outcome(self) -> Appended:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class _GroupCommit:
    """Leader/follower batching of standalone appends within one process.

    A caller queues its entry; if no batch is being written it becomes the leader, takes
    the queue and writes it with `write_batch` (one transaction); the others wait for that
    commit, each on its own event, so a commit wakes each of its callers once and nobody
    else. Entries queued meanwhile form the next batch, led by the first of them.

    The callers of one batch all return together and most append again at once, so a
    leader that finds fewer entries queued than its predecessor wrote waits up to
    `gather_s` for them (PostgreSQL's commit_delay, for the same reason): otherwise the
    batches alternate between one entry and the rest, and the log pays twice the commits.
    A lone caller has a predecessor batch of one and never waits.
    """

    def __init__(
        self,
        write_batch: Callable[[list[_Prepared]], list[Appended]],
        gather_s: float = 0.002,
    ):
        self._write_batch = write_batch
        self._gather_s = gather_s
        self._cond = threading.Condition()  # only a gathering leader waits on it
        self._queue: list[_Pending] = []
        self._writing = False
        self._last_batch = 1

    def submit(self, entry: _Prepared) -> Appended:
        mine = _Pending(entry)
        with self._cond:
            self._queue.append(mine)
            mine.lead = not self._writing
            self._writing = True
            self._cond.notify()  # a gathering leader counts the queue again
        if not mine.lead:
            mine.woken.wait()
        if mine.lead:
            self._lead()
        return mine.outcome()

    def _lead(self) -> None:
        with self._cond:
            deadline = time.monotonic() + self._gather_s
            while len(self._queue) < self._last_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._queue = self._queue, []
            self._last_batch = len(batch)
        try:
            results = self._write_batch([p.entry for p in batch])
        except BaseException as exc:  # every caller in the batch learns its append failed
            for p in batch:
                p.error = exc
        else:
            for p, r in zip(batch, results, strict=True):
                p.result = r
        finally:
            with self._cond:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._writing = False
                else:
                    successor.lead = True
            for p in batch:
                p.lead = False
                p.woken.set()
            if successor is not None:
                successor.woken.set()


class Ledger:
    def __init__(self, db: Database, signer: NoteSigner, origin: str):
        self.db = db
        self.signer = signer
        self.origin = origin
        # Written only by the holder of the sequencer lock; a stale value is caught by
        # `_current_head`, so it may run ahead of a transaction that later rolls back.
        self._head_cache: _Head | None = None
        self._group = _GroupCommit(self._append_batch)
        # Proofs read committed, immutable rows with one statement: on PostgreSQL they run
        # in autocommit, which saves the BEGIN and the ROLLBACK round trips around it.
        self._reader = (
            db.engine.execution_options(isolation_level="AUTOCOMMIT")
            if db.dialect == "postgresql"
            else db.engine
        )

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier_key()

    # -- writing -------------------------------------------------------------------------

    def append(self, type: str, *, actor: str, subject: SubjectIds, **fields: Any) -> Appended:
        """Append one event in its own transaction; durable when this returns.

        Concurrent calls in this process share one transaction and one checkpoint (group
        commit); if that transaction fails, every call in it raises.
        """
        entry = make_entry(type, actor=actor, subject=subject, **fields)
        return self._group.submit(_Prepared.of(entry))

    def _append_batch(self, entries: list[_Prepared]) -> list[Appended]:
        with self.db.write_session() as s:
            return self._append_prepared(s, entries)

    def append_in(
        self, session: Session, type: str, *, actor: str, subject: SubjectIds, **fields: Any
    ) -> Appended:
        """Append one event inside the caller's write transaction (commits with it)."""
        entry = make_entry(type, actor=actor, subject=subject, **fields)
        return self.append_entries(session, [entry])[0]

    def append_entries(
        self, session: Session, entries: Sequence[Mapping[str, Any]]
    ) -> list[Appended]:
        """Append entry objects in order, then sign one checkpoint for the new size."""
        return self._append_prepared(session, [_Prepared.of(e) for e in entries])

    def _append_prepared(self, session: Session, entries: list[_Prepared]) -> list[Appended]:
        if not entries:
            return []
        head = self._current_head(session)
        tree = head.tree()
        chain = head.chain
        appended: list[Appended] = []
        rows = _Rows()
        for entry in entries:
            chain = chain_hash(chain, entry.leaf)
            index = head.size + len(appended)
            rows.entries.append((index, entry.data, entry.leaf, chain, entry.type, entry.at))
            rows.refs.extend((r, index) for r in entry.refs)
            rows.nodes.extend(tree.append(entry.leaf))
            appended.append(Appended(index, entry.data, entry.leaf, chain))
        root = tree.root()
        note = sign_checkpoint(Checkpoint(self.origin, tree.size, root), self.signer)
        rows.checkpoint = (tree.size, root, note, clock.now())
        if self.db.dialect == "postgresql":
            _insert_pipelined(session, rows)
        else:
            _insert_core(session, rows)
        self._head_cache = _Head(tree.size, chain, tuple(tree.frontier()))
        return appended

    def _current_head(self, session: Session) -> _Head:
        """Take the sequencer, then the head: from memory if the last entry is the one known.

        The last entry is read in a statement after the lock was granted (on PostgreSQL a
        new snapshot), so it is the committed one. Its chain hash commits to every entry
        before it, so an equal (index, chain hash) means the whole log is the one the
        cached frontier was computed over; anything else (another process appended, a
        caller's transaction rolled back) reads the head again from the tables.
        """
        last = self._lock_and_read_last(session)
        cached = self._head_cache
        if last is None:
            head = _Head(0, ZERO_CHAIN, ())
        elif cached is not None and cached.size == last[0] + 1 and cached.chain == last[1]:
            return cached
        else:
            head = self._read_head(session, last[0] + 1, last[1])
        self._head_cache = head
        return head

    def _lock_and_read_last(self, session: Session) -> tuple[int, bytes] | None:
        if self.db.dialect == "postgresql":
            # One round trip: the lock, then (its own statement, so a snapshot taken
            # after the lock is granted) the last entry.
            dbapi = _driver_connection(session)
            with dbapi.pipeline() as pipeline:
                dbapi.execute(_PG_LOCK, (_SEQUENCER_LOCK,))
                cursor = dbapi.execute(_PG_LAST_ENTRY)
                pipeline.sync()
                row = cursor.fetchone()
        elif self.db.dialect == "sqlite":
            # The write session began with BEGIN IMMEDIATE, so this first statement runs
            # holding the database write lock: the sequencer.
            row = session.execute(_LAST_ENTRY).first()
        else:
            raise LedgerError(f"no sequencer for database dialect {self.db.dialect}")
        return None if row is None else (int(row[0]), bytes(row[1]))

    def _read_head(self, session: Session, size: int, chain: bytes) -> _Head:
        subtrees = merkle.perfect_subtrees(0, size)
        nodes = _fetch_nodes(session.connection(), self.db.dialect, subtrees)
        return _Head(size, chain, tuple(nodes[n] for n in subtrees))

    # -- reading -------------------------------------------------------------------------

    def size(self) -> int:
        with self.db.session() as s:
            n = s.scalar(select(func.max(LedgerEntry.idx)))
            return 0 if n is None else n + 1

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """Canonical entry bytes for `start <= index < end`."""
        if start < 0 or end < start:
            raise ProofError(f"bad entry range [{start}, {end})")
        with self.db.session() as s:
            rows = s.execute(
                select(LedgerEntry.idx, LedgerEntry.entry)
                .where(LedgerEntry.idx >= start, LedgerEntry.idx < end)
                .order_by(LedgerEntry.idx)
            )
            return [(r.idx, r.entry) for r in rows]

    def entries_about(self, ref: str) -> list[tuple[int, bytes]]:
        """Every entry whose subject includes `ref` ("clip:<id>"), in log order."""
        with self.db.session() as s:
            rows = s.execute(
                select(LedgerEntry.idx, LedgerEntry.entry)
                .join(LedgerRef, LedgerRef.idx == LedgerEntry.idx)
                .where(LedgerRef.ref == ref)
                .order_by(LedgerEntry.idx)
            )
            return [(r.idx, r.entry) for r in rows]

    def latest_checkpoint(self) -> str:
        with self.db.session() as s:
            note = s.scalar(
                select(SignedCheckpoint.note).order_by(SignedCheckpoint.tree_size.desc()).limit(1)
            )
        if note is None:
            raise NotFound("the ledger is empty: no checkpoint has been signed yet")
        return note

    def checkpoint_covering(self, size: int) -> str:
        """The earliest signed checkpoint whose tree holds at least `size` entries."""
        with self.db.session() as s:
            note = s.scalar(
                select(SignedCheckpoint.note)
                .where(SignedCheckpoint.tree_size >= size)
                .order_by(SignedCheckpoint.tree_size)
                .limit(1)
            )
        if note is None:
            raise NotFound(f"no checkpoint covers {size} entries yet")
        return note

    def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        nodes = self._fetch(merkle.perfect_subtrees(0, size), size)
        return merkle.range_hash(0, size, lambda lvl, pos: nodes[(lvl, pos)])

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.inclusion_proofs([index], size)[index]

    def inclusion_proofs(self, indices: Iterable[int], size: int) -> dict[int, list[bytes]]:
        """Inclusion proofs for many leaves in one tree: one query per few thousand nodes.

        The proofs of nearby leaves share most of their nodes (a bundle's or a clip's
        entries), and each node is read once.
        """
        wanted = sorted(set(indices))
        for index in wanted:
            if not 0 <= index < size:
                raise ProofError(f"index {index} is not in a tree of size {size}")
        ranges = {i: merkle.inclusion_proof_ranges(i, size) for i in wanted}
        if not ranges:
            return {}
        nodes = self._fetch(merkle.nodes_needed(r for rs in ranges.values() for r in rs), size)
        return {i: merkle.build_proof(rs, nodes) for i, rs in ranges.items()}

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if not 0 < first <= second:
            raise ProofError(f"no consistency proof from size {first} to size {second}")
        ranges = merkle.consistency_proof_ranges(first, second)
        return merkle.build_proof(ranges, self._fetch(merkle.nodes_needed(ranges), second))

    def _fetch(self, wanted: list[merkle.Node], size: int) -> dict[merkle.Node, bytes]:
        """The perfect nodes `wanted` of the tree of `size`, and proof that it exists.

        The last leaf of that tree is read with them: the log holds at least `size`
        entries exactly when it is there, so the size check costs no query of its own.
        """
        last_leaf = (0, size - 1)
        with self._reader.connect() as conn:
            try:
                return _fetch_nodes(conn, self.db.dialect, [*wanted, last_leaf])
            except _MissingNodes as exc:
                if last_leaf not in exc.missing:
                    raise
        current = self.size()
        raise ProofError(f"tree size {size} is larger than the log ({current} entries)")


@dataclass
class _Rows:
    """The rows one append writes, as tuples in each table's column order."""

    entries: list[tuple[int, bytes, bytes, bytes, str, dt.datetime]] = field(default_factory=list)
    refs: list[tuple[str, int]] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    checkpoint: tuple[int, bytes, str, dt.datetime] | None = None

    def per_table(self) -> list[list[tuple[Any, ...]]]:
        """Entries first (refs point at them), then refs, nodes and the checkpoint."""
        assert self.checkpoint is not None
        return [self.entries, self.refs, self.nodes, [self.checkpoint]]


def _driver_connection(session: Session) -> Any:
    dbapi = session.connection().connection.dbapi_connection
    if dbapi is None:
        raise LedgerError("the database connection closed during an append; try again")
    return dbapi


def _insert_pipelined(session: Session, rows: _Rows) -> None:
    """PostgreSQL: every row of the append in one psycopg pipeline, one round trip.

    In the caller's transaction (the session's connection); nothing is committed here.
    """
    dbapi = _driver_connection(session)
    with dbapi.pipeline(), dbapi.cursor() as cursor:
        for sql, params in zip(_PG_INSERTS, rows.per_table(), strict=True):
            if params:
                cursor.executemany(sql, params)


def _insert_core(session: Session, rows: _Rows) -> None:
    """SQLite: Core executemany inserts (the column types store datetimes as SQLite does)."""
    conn = session.connection()
    tables = (LedgerEntry, LedgerRef, LedgerNode, SignedCheckpoint)
    for model, params in zip(tables, rows.per_table(), strict=True):
        if params:
            columns = [c.name for c in model.__table__.columns]
            conn.execute(insert(model.__table__), [dict(zip(columns, p)) for p in params])


class _MissingNodes(LedgerError):
    def __init__(self, missing: list[merkle.Node]):
        super().__init__(f"ledger tree nodes missing: {missing[:5]}; run evidence verify ledger")
        self.missing = missing


def _fetch_nodes(
    conn: Connection, dialect: str, wanted: Iterable[merkle.Node]
) -> dict[merkle.Node, bytes]:
    """Perfect nodes by address, leaves (level 0) from entries and the rest from nodes.

    Plain driver SQL, one statement per `_NODES_PER_QUERY` nodes, each answered from the
    primary keys on both engines. Raises _MissingNodes naming what is not stored.
    """
    wanted = list(dict.fromkeys(wanted))
    found: dict[merkle.Node, bytes] = {}
    for k in range(0, len(wanted), _NODES_PER_QUERY):
        chunk = wanted[k : k + _NODES_PER_QUERY]
        if dialect == "postgresql":
            rows = conn.exec_driver_sql(_PG_NODES, _pg_params(chunk))
        else:
            sql, params = _sqlite_nodes_query(chunk)
            rows = conn.exec_driver_sql(sql, params)
        for level, pos, h in rows:
            found[(level, pos)] = bytes(h)
    missing = [n for n in wanted if n not in found]
    if missing:
        raise _MissingNodes(missing)
    return found


def _pg_params(nodes: list[merkle.Node]) -> dict[str, list[int]]:
    inner = [(lv, pos) for lv, pos in nodes if lv > 0]
    return {
        "leaves": [pos for lv, pos in nodes if lv == 0],
        "levels": [lv for lv, _ in inner],
        "positions": [pos for _, pos in inner],
    }


def _sqlite_nodes_query(nodes: list[merkle.Node]) -> tuple[str, tuple[int, ...]]:
    # One `level = ? AND position IN (...)` select per level, joined by UNION ALL: SQLite
    # answers each from the primary key (a row-value IN would scan the whole table).
    by_level: dict[int, list[int]] = {}
    for level, pos in nodes:
        by_level.setdefault(level, []).append(pos)
    parts: list[str] = []
    params: list[int] = []
    for level, positions in sorted(by_level.items()):
        marks = ",".join("?" * len(positions))
        if level == 0:
            parts.append(f"SELECT 0, idx, leaf_hash FROM ledger_entries WHERE idx IN ({marks})")
        else:
            parts.append(
                "SELECT level, position, hash FROM ledger_nodes"
                f" WHERE level = ? AND position IN ({marks})"
            )
            params.append(level)
        params.extend(positions)
    return " UNION ALL ".join(parts), tuple(params)


def _parse_at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
