"""The ledger's write path: the sequencer's cached head, group commit, batch proofs.

On SQLite and PostgreSQL. Each test checks the result the way an auditor would: the chain
and the roots recomputed from the stored entries (evidence.verify over the database).
"""

from __future__ import annotations

import base64
import threading

import pytest

from evidence.clips.custody import check_custody
from evidence.context import Context
from evidence.db import Database
from evidence.errors import ProofError
from evidence.ledger import merkle
from evidence.ledger.entries import make_entry
from evidence.ledger.note import NoteVerifier, open_checkpoint
from evidence.ledger.service import Appended, Ledger, _GroupCommit, _Prepared
from evidence.verify.ledger import verify_ledger
from evidence.verify.ledger_db import DatabaseSource
from evidence.verify.report import Report


def append(ledger: Ledger, n: int, tag: str = "t") -> list[Appended]:
    return [
        ledger.append("test.event", actor="system:test", subject={"clip": f"{tag}{i}"}, n=i)
        for i in range(n)
    ]


def assert_verifies(ctx: Context, size: int) -> None:
    """The verifier accepts the whole log, and the latest checkpoint signs `size` entries."""
    source = DatabaseSource(ctx.db.url, ctx.ledger.verifier_key)
    try:
        report = verify_ledger(source, Report(), key=ctx.ledger.verifier_key)
    finally:
        source.close()
    assert report.ok, [c.line() for c in report.checks]
    verifier = NoteVerifier.from_vkey(ctx.ledger.verifier_key)
    assert open_checkpoint(ctx.ledger.latest_checkpoint(), verifier).size == size
    assert [i for i, _ in ctx.ledger.entries(0, size + 5)] == list(range(size))


def test_concurrent_appends_are_group_committed_into_one_gapless_chain(ctx: Context) -> None:
    results: list[Appended] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(8)

    def writer(k: int) -> None:
        try:
            gate.wait()
            results.extend(append(ctx.ledger, 25, tag=f"w{k}-"))
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # Every caller got its own index, and what it was told is what is stored.
    assert sorted(r.index for r in results) == list(range(200))
    stored = dict(ctx.ledger.entries(0, 200))
    assert all(stored[r.index] == r.entry for r in results)
    assert_verifies(ctx, 200)


def test_an_append_rolled_back_with_its_caller_leaves_no_trace(ctx: Context) -> None:
    append(ctx.ledger, 3)
    with pytest.raises(RuntimeError, match="caller failed"):
        with ctx.db.write_session() as s:
            gone = ctx.ledger.append_in(s, "will.roll.back", actor="system:test", subject={})
            assert gone.index == 3
            raise RuntimeError("the caller failed after appending")
    assert ctx.ledger.size() == 3
    # The sequencer remembered index 3 as written; it must notice the rollback and reuse it.
    again = ctx.ledger.append("kept", actor="system:test", subject={})
    assert again.index == 3
    assert again.chain_hash != gone.chain_hash
    append(ctx.ledger, 2, tag="after")
    assert_verifies(ctx, 6)


def test_another_writer_moving_the_head_is_noticed(ctx: Context) -> None:
    ours = ctx.ledger
    append(ours, 4)
    # Another process: its own engine and its own remembered head, the same signing key.
    other_db = Database(ctx.db.url)
    try:
        other = Ledger(other_db, ours.signer, ours.origin)
        assert [a.index for a in append(other, 3, tag="other")] == [4, 5, 6]
    finally:
        other_db.dispose()
    # Our cached head says 4 entries; the database has 7.
    nxt = ours.append("after.other", actor="system:test", subject={})
    assert nxt.index == 7
    assert_verifies(ctx, 8)
    tree = merkle.InMemoryTree()
    for _, data in ours.entries(0, 8):
        tree.append_entry(data)
    assert all(ours.root(size) == tree.root(size) for size in range(1, 9))


def test_batch_proofs_equal_single_proofs(ctx: Context) -> None:
    ledger = ctx.ledger
    append(ledger, 45)
    leaves = [merkle.leaf_hash(e) for _, e in ledger.entries(0, 45)]
    for size in (1, 2, 17, 32, 45):
        batch = ledger.inclusion_proofs(range(size), size)
        assert sorted(batch) == list(range(size))
        for index, proof in batch.items():
            assert proof == ledger.inclusion_proof(index, size)
            merkle.verify_inclusion(leaves[index], index, size, proof, ledger.root(size))
    assert ledger.inclusion_proofs([], 45) == {}
    with pytest.raises(ProofError, match="larger than the log"):
        ledger.inclusion_proofs([3], 46)
    with pytest.raises(ProofError, match="not in a tree of size 10"):
        ledger.inclusion_proofs([3, 10], 10)


def test_the_clip_pages_custody_check_verifies_every_entry_from_one_batch(ctx: Context) -> None:
    append(ctx.ledger, 20)
    rows = ctx.ledger.entries(0, 20)
    custody = [
        {
            "index": i,
            "leaf_hash": base64.b64encode(merkle.leaf_hash(e)).decode(),
            "leaf_matches": True,
        }
        for i, e in rows
        if i % 3 == 0
    ]
    # A leaf hash the page got wrong is named, and only that entry fails.
    custody[2]["leaf_hash"] = base64.b64encode(bytes(32)).decode()
    check = check_custody(ctx, custody)
    assert check.error is None and check.tree_size == 20
    assert check.verified == {i: i != 6 for i in range(0, 20, 3)}
    assert "does not lead to the root" in check.why_not[6]


def test_a_failed_group_commit_fails_every_caller_in_it_and_only_them() -> None:
    # The batching itself, with a writer that holds the first batch until five more callers
    # have queued behind it, then fails the second batch.
    release, batches = threading.Event(), []

    def write_batch(items: list[_Prepared]) -> list[Appended]:
        batches.append(len(items))
        if len(batches) == 1:
            assert release.wait(30)
        elif len(batches) == 2:
            raise RuntimeError("the database went away mid-commit")
        return [Appended(i, item.data, item.leaf, item.leaf) for i, item in enumerate(items)]

    group = _GroupCommit(write_batch)
    outcome: dict[str, object] = {}

    def caller(name: str) -> None:
        entry = make_entry("t", actor="system:test", subject={"clip": name})
        try:
            outcome[name] = group.submit(_Prepared.of(entry))
        except RuntimeError as exc:
            outcome[name] = exc

    first = threading.Thread(target=caller, args=("first",))
    first.start()
    while not batches:
        threading.Event().wait(0.01)
    rest = [threading.Thread(target=caller, args=(f"c{k}",)) for k in range(5)]
    for t in rest:
        t.start()
    threading.Event().wait(0.3)  # they queue behind the batch being written
    release.set()
    for t in [first, *rest]:
        t.join(30)
    assert batches[:2] == [1, 5]
    assert isinstance(outcome["first"], Appended)
    errors = [outcome[f"c{k}"] for k in range(5)]
    assert all(isinstance(e, RuntimeError) and "went away" in str(e) for e in errors)
    # The group recovers: the next caller writes its own batch.
    caller("after")
    assert isinstance(outcome["after"], Appended) and batches[-1] == 1
