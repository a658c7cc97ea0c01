"""The ledger read straight from the store's database (a live one or a restored backup), for
`evidence verify ledger --db`: what an auditor with database access can see, the stored leaf
and chain columns included. Read-only, and without the application's code paths: plain SQL
over the tables, checked by evidence.verify.ledger like any other source.

Apart from evidence.verify.ledger so that the verifier itself needs no SQLAlchemy.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import create_engine, text

from evidence.errors import EvidenceError, NotFound
from evidence.ledger import merkle
from evidence.verify.ledger import Row


class DatabaseSource:
    """Reads the tables directly, read-only, without the application's code paths."""

    def __init__(self, url: str, verifier_key: str | None):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.description = url.split("@")[-1]
        self._engine = create_engine(url)
        self._key = verifier_key

    def verifier_key(self) -> str:
        if not self._key:
            raise EvidenceError("verifying a database needs the verifier key: pass --key")
        return self._key

    def latest_checkpoint(self) -> str:
        return self._one("SELECT note FROM checkpoints ORDER BY tree_size DESC LIMIT 1", {})

    def checkpoint_covering(self, size: int) -> str | None:
        try:
            return self._one(
                "SELECT note FROM checkpoints WHERE tree_size >= :n ORDER BY tree_size LIMIT 1",
                {"n": size},
            )
        except NotFound:
            return None

    def _one(self, sql: str, params: dict[str, int]) -> str:
        with self._engine.connect() as conn:
            note = conn.execute(text(sql), params).scalar()
        if note is None:
            raise NotFound("no signed checkpoint in the database")
        return str(note)

    # Rows per read: large enough that a round trip is noise next to hashing the rows,
    # small enough that a batch of large entries stays a few megabytes.
    BATCH = 20_000
    # Threads (each with its own connection) reading alternate pages ahead of the hashing.
    # One is enough on two shared cores: a second measured no faster there
    # (docs/architecture.md); a bigger machine may set more.
    READERS = 1

    def rows(self, end: int) -> Iterator[Row]:
        """Entries in index order, read through the driver's cursor a page at a time.

        Page p is the primary-key range [p * BATCH, (p + 1) * BATCH) below `end`: the same
        rows, in the same order, as reading the whole range at once (an index that is
        missing is simply not in its page). A closed key range per page, rather than
        `idx >= last LIMIT n`, measured twice as fast on PostgreSQL. READERS threads, each
        with its own connection, read the pages ahead while the verifier hashes the page
        before, so the database's work and the hashing overlap (the driver waits without
        the GIL) instead of taking turns. Each reader holds at most the page it hands over
        and the one it is reading; an early stop (a failed check) stops them. No
        server-side cursor stays open.
        """
        mark = "?" if self._engine.dialect.name == "sqlite" else "%s"
        sql = (
            "SELECT idx, entry, leaf_hash, chain_hash FROM ledger_entries"
            f" WHERE idx >= {mark} AND idx < {mark} ORDER BY idx"
        )
        pages = -(-end // self.BATCH) if end > 0 else 0
        readers = max(1, min(self.READERS, pages))
        handed: list[queue.Queue[list[Any] | BaseException]] = [
            queue.Queue(1) for _ in range(readers)
        ]
        stop = threading.Event()

        def offer(k: int, item: list[Any] | BaseException) -> bool:
            while not stop.is_set():
                try:
                    handed[k].put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read(k: int) -> None:
            try:
                with self._engine.connect() as conn:
                    dbapi = conn.connection.dbapi_connection
                    if dbapi is None:
                        raise EvidenceError(
                            "the database connection closed while reading the ledger"
                        )
                    # psycopg: binary results hand bytea over as bytes, without hex decoding.
                    cursor = dbapi.cursor(binary=True) if mark == "%s" else dbapi.cursor()
                    try:
                        for p in range(k, pages, readers):
                            first = p * self.BATCH
                            cursor.execute(sql, (first, min(end, first + self.BATCH)))
                            if not offer(k, cursor.fetchall()):
                                return
                    finally:
                        cursor.close()
            except BaseException as exc:  # handed to the verifier's thread
                offer(k, exc)

        threads = [
            threading.Thread(target=read, args=(k,), name=f"ledger rows {k}", daemon=True)
            for k in range(readers)
        ]
        for t in threads:
            t.start()
        try:
            for p in range(pages):
                page = handed[p % readers].get()
                if isinstance(page, BaseException):
                    raise page
                # Both drivers return BLOB / bytea as bytes: the rows are Rows as read.
                yield from map(Row._make, page)
        finally:
            stop.set()
            for t in threads:
                t.join()

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        # The database holds the nodes; the proof is rebuilt from them like the API does.
        ranges = merkle.consistency_proof_ranges(first, second)
        wanted = merkle.nodes_needed(ranges)
        nodes: dict[tuple[int, int], bytes] = {}
        with self._engine.connect() as conn:
            for level, pos in wanted:
                if level == 0:
                    h = conn.execute(
                        text("SELECT leaf_hash FROM ledger_entries WHERE idx = :i"), {"i": pos}
                    ).scalar()
                else:
                    h = conn.execute(
                        text("SELECT hash FROM ledger_nodes WHERE level = :l AND position = :p"),
                        {"l": level, "p": pos},
                    ).scalar()
                if h is None:
                    raise NotFound(f"tree node ({level}, {pos}) is missing from the database")
                nodes[(level, pos)] = bytes(h)
        return merkle.build_proof(ranges, nodes)

    def close(self) -> None:
        self._engine.dispose()
