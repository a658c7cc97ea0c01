"""The ledger: one append-only log for the whole store, hash-chained and Merkle-logged.

Appends are serialized by one sequencer: on PostgreSQL a transaction-scoped advisory
lock, on SQLite the database write lock (`BEGIN IMMEDIATE`). Each append writes the
entries, their subject refs, the perfect subtree nodes they complete and a signed
checkpoint for the new size, in the caller's transaction: an event and the change it
records commit together or not at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, text
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


@dataclass(frozen=True)
class Appended:
    index: int
    entry: bytes
    leaf_hash: bytes
    chain_hash: bytes


class Ledger:
    def __init__(self, db: Database, signer: NoteSigner, origin: str):
        self.db = db
        self.signer = signer
        self.origin = origin

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier_key()

    # -- writing -------------------------------------------------------------------------

    def append(self, type: str, *, actor: str, subject: SubjectIds, **fields: Any) -> Appended:
        """Append one event in its own transaction; durable when this returns."""
        with self.db.write_session() as s:
            return self.append_in(s, type, actor=actor, subject=subject, **fields)

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
        if not entries:
            return []
        self._take_sequencer(session)
        size, chain, tree = self._head(session)
        appended: list[Appended] = []
        for entry in entries:
            data = canonical(entry)
            leaf = merkle.leaf_hash(data)
            chain = chain_hash(chain, leaf)
            index = size + len(appended)
            session.add(
                LedgerEntry(
                    idx=index,
                    entry=data,
                    leaf_hash=leaf,
                    chain_hash=chain,
                    type=str(entry["type"]),
                    at=_parse_at(str(entry["at"])),
                )
            )
            session.add_all(LedgerRef(ref=r, idx=index) for r in refs_of(entry))
            session.add_all(
                LedgerNode(level=level, position=pos, hash=h) for level, pos, h in tree.append(leaf)
            )
            appended.append(Appended(index, data, leaf, chain))
        new_size = size + len(appended)
        root = tree.root()
        note = sign_checkpoint(Checkpoint(self.origin, new_size, root), self.signer)
        session.add(
            SignedCheckpoint(tree_size=new_size, root_hash=root, note=note, created_at=clock.now())
        )
        session.flush()
        return appended

    def _take_sequencer(self, session: Session) -> None:
        if self.db.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SEQUENCER_LOCK})
        elif self.db.dialect == "sqlite":
            # The write session began with BEGIN IMMEDIATE, so it already holds the lock;
            # this makes sure the first statement has run and the lock is really taken.
            session.execute(text("SELECT 1"))
        else:
            raise LedgerError(f"no sequencer for database dialect {self.db.dialect}")

    def _head(self, session: Session) -> tuple[int, bytes, merkle.CompactRange]:
        last = session.execute(
            select(LedgerEntry.idx, LedgerEntry.chain_hash)
            .order_by(LedgerEntry.idx.desc())
            .limit(1)
        ).first()
        if last is None:
            return 0, ZERO_CHAIN, merkle.CompactRange()
        size = last.idx + 1
        nodes = self._nodes(session, merkle.perfect_subtrees(0, size))
        frontier = [nodes[n] for n in merkle.perfect_subtrees(0, size)]
        return size, last.chain_hash, merkle.CompactRange.from_frontier(size, frontier)

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
        self._check_size(size)
        with self.db.session() as s:
            nodes = self._nodes(s, merkle.perfect_subtrees(0, size))
        return merkle.range_hash(0, size, lambda lvl, pos: nodes[(lvl, pos)])

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size:
            raise ProofError(f"index {index} is not in a tree of size {size}")
        self._check_size(size)
        return self._proof(merkle.inclusion_proof_ranges(index, size))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if not 0 < first <= second:
            raise ProofError(f"no consistency proof from size {first} to size {second}")
        self._check_size(second)
        return self._proof(merkle.consistency_proof_ranges(first, second))

    def _check_size(self, size: int) -> None:
        current = self.size()
        if size > current:
            raise ProofError(f"tree size {size} is larger than the log ({current} entries)")

    def _proof(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        with self.db.session() as s:
            nodes = self._nodes(s, merkle.nodes_needed(ranges))
        return merkle.build_proof(ranges, nodes)

    @staticmethod
    def _nodes(session: Session, wanted: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Fetch perfect nodes in two queries: leaves from entries, the rest from nodes."""
        wanted = list(wanted)
        leaves = [pos for level, pos in wanted if level == 0]
        inner = [(level, pos) for level, pos in wanted if level > 0]
        found: dict[tuple[int, int], bytes] = {}
        if leaves:
            for idx, h in session.execute(
                select(LedgerEntry.idx, LedgerEntry.leaf_hash).where(LedgerEntry.idx.in_(leaves))
            ):
                found[(0, idx)] = h
        if inner:
            # One `level = L AND position IN (...)` term per level: both SQLite and
            # PostgreSQL answer each from the primary key. (A row-value IN makes SQLite
            # scan the whole table.)
            by_level: dict[int, list[int]] = {}
            for level, pos in inner:
                by_level.setdefault(level, []).append(pos)
            terms = [
                and_(LedgerNode.level == level, LedgerNode.position.in_(positions))
                for level, positions in by_level.items()
            ]
            for level, pos, h in session.execute(
                select(LedgerNode.level, LedgerNode.position, LedgerNode.hash).where(or_(*terms))
            ):
                found[(level, pos)] = h
        missing = [n for n in wanted if n not in found]
        if missing:
            raise LedgerError(
                f"ledger tree nodes missing: {missing[:5]}; run evidence verify ledger"
            )
        return found


def _parse_at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
