"""The ledger, to the letter of docs/ledger.md, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import threading

import pytest
import rfc8785
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from evidence.context import Context
from evidence.db import Database
from evidence.ledger import merkle
from evidence.ledger.keys import load_or_create_signer
from evidence.ledger.note import NoteVerifier, open_checkpoint
from evidence.ledger.service import Ledger


def fill(ledger: Ledger, n: int) -> None:
    for i in range(n):
        ledger.append("test.event", actor="user:tester", subject={"clip": f"c{i}"}, n=i)


def test_entries_are_rfc8785_and_hashes_follow_the_design(ctx: Context) -> None:
    ledger = ctx.ledger
    fill(ledger, 5)
    rows = ledger.entries(0, 10)
    assert [i for i, _ in rows] == list(range(5))
    chain = bytes(32)
    tree = merkle.InMemoryTree()
    for i, data in rows:
        obj = json.loads(data)
        assert data == rfc8785.dumps(obj)
        assert obj["type"] == "test.event" and obj["actor"] == "user:tester"
        assert obj["subject"] == {"clip": f"c{i}"} and obj["n"] == i
        assert obj["at"].endswith("Z")
        # The auditor's ten-line script: leaf and chain exactly as docs/ledger.md says.
        leaf = hashlib.sha256(b"\x00" + data).digest()
        chain = hashlib.sha256(chain + leaf).digest()
        tree.append(leaf)
    cp = open_checkpoint(ledger.latest_checkpoint(), NoteVerifier.from_vkey(ledger.verifier_key))
    assert cp.size == 5
    assert cp.root_hash == tree.root() == ledger.root(5)
    with ctx.db.session() as s:
        stored_chain = s.execute(
            text("SELECT chain_hash FROM ledger_entries WHERE idx = 4")
        ).scalar()
    assert bytes(stored_chain) == chain


def test_every_proof_verifies_against_signed_roots(ctx: Context) -> None:
    ledger = ctx.ledger
    fill(ledger, 37)
    leaves = [merkle.leaf_hash(e) for _, e in ledger.entries(0, 37)]
    verifier = NoteVerifier.from_vkey(ledger.verifier_key)
    for size in (1, 2, 3, 8, 13, 32, 37):
        root = open_checkpoint(ledger.checkpoint_covering(size), verifier).root_hash
        assert root == ledger.root(size)
        for index in range(size):
            merkle.verify_inclusion(
                leaves[index], index, size, ledger.inclusion_proof(index, size), root
            )
        for first in range(1, size + 1):
            merkle.verify_consistency(
                first, size, ledger.consistency_proof(first, size), ledger.root(first), root
            )


def test_proofs_cost_a_constant_number_of_queries(sqlite_url: str, tmp_path) -> None:
    from tests.fixtures.databases import make_settings

    ctx = Context(make_settings(tmp_path, sqlite_url))
    ledger = ctx.ledger
    with ctx.db.write_session() as s:
        ledger.append_entries(
            s,
            [
                {
                    "type": "bulk",
                    "at": "2026-01-01T00:00:00.000000Z",
                    "actor": "system:test",
                    "subject": {},
                    "n": i,
                }
                for i in range(3000)
            ],
        )
    statements: list[str] = []
    event.listen(
        ctx.db.engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, *_: statements.append(sql) if sql.startswith("SELECT") else None,
    )
    for index, size in ((0, 1), (1234, 3000), (2999, 3000), (17, 2048)):
        statements.clear()
        ledger.inclusion_proof(index, size)
        assert len(statements) <= 3, statements
    statements.clear()
    ledger.consistency_proof(1000, 2999)
    assert len(statements) <= 3


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_refs", "ledger_nodes", "checkpoints"])
def test_database_refuses_update_and_delete(ctx: Context, table: str) -> None:
    fill(ctx.ledger, 4)
    for sql in (f"UPDATE {table} SET {_column(table)} = {_column(table)}", f"DELETE FROM {table}"):
        with pytest.raises(DBAPIError, match="append-only"):
            with ctx.db.write_session() as s:
                s.execute(text(sql))
    assert ctx.ledger.size() == 4


def _column(table: str) -> str:
    return {
        "ledger_entries": "type",
        "ledger_refs": "ref",
        "ledger_nodes": "hash",
        "checkpoints": "note",
    }[table]


def test_entry_and_domain_change_commit_together(ctx: Context) -> None:
    with pytest.raises(RuntimeError):
        with ctx.db.write_session() as s:
            ctx.ledger.append_in(s, "will.roll.back", actor="system:test", subject={})
            raise RuntimeError("the caller failed after appending")
    assert ctx.ledger.size() == 0
    ctx.ledger.append("kept", actor="system:test", subject={})
    assert ctx.ledger.size() == 1


def test_custody_index_finds_entries_by_subject(ctx: Context) -> None:
    ctx.ledger.append("a", actor="system:test", subject={"clip": "X"})
    ctx.ledger.append("b", actor="system:test", subject={"clip": "Y"})
    ctx.ledger.append("c", actor="system:test", subject={"case": "K", "clip": ["X", "Y"]})
    about_x = [json.loads(e)["type"] for _, e in ctx.ledger.entries_about("clip:X")]
    assert about_x == ["a", "c"]


def test_concurrent_threads_append_without_gaps(ctx: Context) -> None:
    threads = [threading.Thread(target=fill, args=(ctx.ledger, 15)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_consistent(ctx.ledger, 90)


def _append_in_process(url: str, key_path: str, origin: str, n: int) -> None:
    ledger = Ledger(
        Database(url), load_or_create_signer(__import__("pathlib").Path(key_path), origin), origin
    )
    fill(ledger, n)


def test_concurrent_processes_append_without_gaps(ctx: Context) -> None:
    ledger = ctx.ledger  # creates the key before the workers load it
    key_path = str(ctx.settings.resolved_ledger_key_path())
    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(target=_append_in_process, args=(ctx.db.url, key_path, ledger.origin, 12))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert_consistent(ledger, 36)


def assert_consistent(ledger: Ledger, n: int) -> None:
    rows = ledger.entries(0, n + 10)
    assert [i for i, _ in rows] == list(range(n))
    tree = merkle.InMemoryTree()
    for _, data in rows:
        tree.append(merkle.leaf_hash(data))
    cp = open_checkpoint(ledger.latest_checkpoint(), NoteVerifier.from_vkey(ledger.verifier_key))
    assert (cp.size, cp.root_hash) == (n, tree.root())
    # Every intermediate checkpoint is a prefix of the final tree.
    for size in range(1, n + 1):
        assert ledger.root(size) == tree.root(size)


def test_signing_key_is_private_and_stable(ctx: Context) -> None:
    key1 = ctx.ledger.verifier_key
    path = ctx.settings.resolved_ledger_key_path()
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_signer(path, "ignored").verifier_key() == key1
    assert path.with_suffix(".pub").read_text().strip() == key1
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_signer(path, "x")
