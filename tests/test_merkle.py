"""evidence.ledger.merkle against RFC 9162 examples, upstream golden vectors, a real CT log
and properties over random trees. Vector provenance: tests/vectors/merkle/README.md."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence.errors import LedgerError, ProofError
from evidence.ledger import merkle
from evidence.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    InMemoryTree,
    build_proof,
    consistency_proof_ranges,
    inclusion_proof_ranges,
    leaf_hash,
    node_hash,
    nodes_needed,
    perfect_subtrees,
    range_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors" / "merkle"
TESTDATA = VECTORS / "testdata"
ARGON = VECTORS / "golang-mod-sumdb-tlog-argon2020"


def props(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def b64(value: str | None) -> bytes:
    """Go encoding/json []byte: standard base64; null and "" are empty."""
    return base64.b64decode(value) if value else b""


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def tree_of(size: int, seed: bytes = b"") -> InMemoryTree:
    tree = InMemoryTree()
    for i in range(size):
        tree.append_entry(seed + i.to_bytes(4, "big"))
    return tree


def flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# -- upstream golden vectors (transparency-dev/merkle testdata) -----------------------------

INCLUSION_FILES = sorted((TESTDATA / "inclusion").rglob("*.json"))
CONSISTENCY_FILES = sorted((TESTDATA / "consistency").rglob("*.json"))


def test_all_vector_files_present() -> None:
    # A silently missing directory would make the parametrized tests vacuous.
    assert len(INCLUSION_FILES) + len(CONSISTENCY_FILES) == 196
    assert sum(load(p)["wantErr"] is False for p in INCLUSION_FILES) == 6
    assert sum(load(p)["wantErr"] is False for p in CONSISTENCY_FILES) == 6


@pytest.mark.parametrize(
    "path", INCLUSION_FILES, ids=lambda p: str(p.relative_to(TESTDATA / "inclusion"))
)
def test_inclusion_vector(path: Path) -> None:
    v = load(path)
    args = (b64(v["leafHash"]), v["leafIdx"], v["treeSize"], [b64(h) for h in v["proof"] or []])
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args, b64(v["root"]))
    else:
        verify_inclusion(*args, b64(v["root"]))


@pytest.mark.parametrize(
    "path", CONSISTENCY_FILES, ids=lambda p: str(p.relative_to(TESTDATA / "consistency"))
)
def test_consistency_vector(path: Path) -> None:
    v = load(path)
    args = (v["size1"], v["size2"], [b64(h) for h in v["proof"] or []], b64(v["root1"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args, b64(v["root2"]))
    else:
        verify_consistency(*args, b64(v["root2"]))


# -- the RFC 6962 reference tree ---------------------------------------------------------------

REF = load(VECTORS / "rfc6962-reference-hashes.json")
REF_LEAVES = [bytes.fromhex(h) for h in REF["leaf_inputs_hex"]]


def test_hasher_known_answers() -> None:
    want = [bytes.fromhex(k["want"]) for k in REF["rfc6962_hasher_known_answers"]]
    assert EMPTY_ROOT == want[0] == hashlib.sha256(b"").digest()
    assert leaf_hash(b"") == want[1]
    assert leaf_hash(b"L123456") == want[2]
    assert node_hash(b"N123", b"N456") == want[3]


def test_reference_roots_at_every_size() -> None:
    tree, compact = InMemoryTree(), CompactRange()
    assert tree.root() == compact.root() == bytes.fromhex(REF["root_hashes_by_tree_size"]["0"])
    for size, data in enumerate(REF_LEAVES, start=1):
        tree.append_entry(data)
        compact.append(leaf_hash(data))
        want = bytes.fromhex(REF["root_hashes_by_tree_size"][str(size)])
        assert tree.root() == compact.root() == want
    for size in range(9):
        assert tree.root(size).hex() == REF["root_hashes_by_tree_size"][str(size)]


def test_reference_node_hashes() -> None:
    tree = InMemoryTree()
    for data in REF_LEAVES:
        tree.append_entry(data)
    want = {
        (level, pos): bytes.fromhex(h)
        for level, row in enumerate(REF["node_hashes_by_level"])
        for pos, h in enumerate(row)
    }
    assert tree.nodes() == want


# -- RFC 9162 §2.1.5 worked examples (the 7-leaf tree) ----------------------------------------
# Names from the RFC figure: a..f,d6 leaves; g=[0,2) h=[2,4) i=[4,6) j=[6,7) k=[0,4) l=[4,7).


@pytest.mark.parametrize(
    ("index", "want"),
    [
        (0, [(1, 2), (2, 4), (4, 7)]),  # [b, h, l]
        (3, [(2, 3), (0, 2), (4, 7)]),  # [c, g, l]
        (4, [(5, 6), (6, 7), (0, 4)]),  # [f, j, k]
        (6, [(4, 6), (0, 4)]),  # [i, k]
    ],
)
def test_rfc_inclusion_examples(index: int, want: list[tuple[int, int]]) -> None:
    assert inclusion_proof_ranges(index, 7) == want


@pytest.mark.parametrize(
    ("first", "want"),
    [
        (3, [(2, 3), (3, 4), (0, 2), (4, 7)]),  # [c, d, g, l]
        (4, [(4, 7)]),  # [l]
        (6, [(4, 6), (6, 7), (0, 4)]),  # [i, j, k]
    ],
)
def test_rfc_consistency_examples(first: int, want: list[tuple[int, int]]) -> None:
    assert consistency_proof_ranges(first, 7) == want


def test_equal_sizes_have_empty_consistency_proof() -> None:
    assert consistency_proof_ranges(5, 5) == []
    assert tree_of(5).consistency_proof(5, 5) == []


# -- range arithmetic ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "want"),
    [
        (0, 0, []),
        (0, 1, [(0, 0)]),
        (0, 7, [(2, 0), (1, 2), (0, 6)]),
        (0, 8, [(3, 0)]),
        (4, 7, [(1, 2), (0, 6)]),
        (8, 13, [(2, 2), (0, 12)]),
        (6, 7, [(0, 6)]),
        (0, 10**6, [(19, 0), (18, 2), (17, 6), (16, 14), (14, 60), (9, 1952), (6, 15624)]),
    ],
)
def test_perfect_subtrees(start: int, end: int, want: list[tuple[int, int]]) -> None:
    assert perfect_subtrees(start, end) == want
    # Every node covers its own slice of [start, end), in order, without gaps.
    pos = start
    for level, p in want:
        assert p << level == pos
        pos += 1 << level
    assert pos == end


@pytest.mark.parametrize(
    ("start", "end"), [(3, 5), (2, 6), (1, 3), (5, 4), (-1, 2), (0, -1), (True, 3)]
)
def test_perfect_subtrees_rejects_unaligned_or_bad_ranges(start: int, end: int) -> None:
    with pytest.raises(ProofError):
        perfect_subtrees(start, end)


def test_range_hash_matches_direct_mth() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(13)]

    def mth(hashes: list[bytes]) -> bytes:  # RFC 9162 §2.1.1, recursively
        if len(hashes) == 1:
            return hashes[0]
        k = 1 << ((len(hashes) - 1).bit_length() - 1)
        return node_hash(mth(hashes[:k]), mth(hashes[k:]))

    tree = InMemoryTree()
    for h in leaves:
        tree.append(h)
    for start, end in [(0, 13), (8, 13), (12, 13), (0, 5), (4, 7), (8, 11)]:
        assert range_hash(start, end, tree.node) == mth(leaves[start:end])
    assert range_hash(0, 0, tree.node) == EMPTY_ROOT


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (6, 5), (-1, 5)])
def test_inclusion_ranges_reject_bad_requests(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        inclusion_proof_ranges(index, size)


@pytest.mark.parametrize(("first", "second"), [(0, 0), (0, 5), (6, 5), (-1, 5)])
def test_consistency_ranges_reject_bad_requests(first: int, second: int) -> None:
    with pytest.raises(ProofError):
        consistency_proof_ranges(first, second)


def test_tree_rejects_proofs_beyond_its_size() -> None:
    tree = tree_of(5)
    with pytest.raises(ProofError):
        tree.inclusion_proof(0, 6)
    with pytest.raises(ProofError):
        tree.consistency_proof(2, 6)
    with pytest.raises(ProofError):
        tree.root(6)


def test_build_proof_reports_missing_node() -> None:
    ranges = inclusion_proof_ranges(5, 8)
    nodes = tree_of(8).nodes()
    del nodes[nodes_needed(ranges)[-1]]
    with pytest.raises(LedgerError, match="missing"):
        build_proof(ranges, nodes)


N_BIG = 10**6
BIG_SAMPLE = [0, 1, 2, 3, 511, 512, 65_535, 65_536, 524_287, 524_288, 999_935, 999_998, 999_999]


def _assert_log_cost(ranges: list[tuple[int, int]], size: int) -> None:
    needed = nodes_needed(ranges)
    assert len(needed) == len(set(needed))
    assert len(needed) <= 2 * math.ceil(math.log2(size)) + 2
    for level, pos in needed:  # only nodes that are complete in a tree of `size`
        assert (pos + 1) << level <= size


@pytest.mark.parametrize("index", BIG_SAMPLE + list(range(7, N_BIG, 99_991)))
def test_inclusion_nodes_needed_is_logarithmic(index: int) -> None:
    _assert_log_cost(inclusion_proof_ranges(index, N_BIG), N_BIG)


@pytest.mark.parametrize("first", [f for f in BIG_SAMPLE if f] + list(range(7, N_BIG, 99_991)))
def test_consistency_nodes_needed_is_logarithmic(first: int) -> None:
    _assert_log_cost(consistency_proof_ranges(first, N_BIG), N_BIG)


def test_nodes_needed_deduplicates() -> None:
    ranges = inclusion_proof_ranges(5, 13) + inclusion_proof_ranges(6, 13)
    needed = nodes_needed(ranges)
    assert len(needed) == len(set(needed))
    assert set(needed) == {n for r in ranges for n in perfect_subtrees(*r)}


# -- a real Certificate Transparency log (Google Argon 2020, ~2^30 leaves) ---------------------

STH = load(ARGON / "sth.json")
ARGON_ROOT = b64(STH["sha256_root_hash"])
ARGON_OLD_SIZE = 3_654_490  # constant in golang/mod sumdb/tlog/ct_test.go
ARGON_OLD_ROOT = b64("AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ=")


def _argon_inclusion() -> tuple[bytes, int, list[bytes]]:
    entry = b64(load(ARGON / "entries.json")["entries"][0]["leaf_input"])
    proof = load(ARGON / "proof.json")
    return leaf_hash(entry), proof["leaf_index"], [b64(h) for h in proof["audit_path"]]


def test_argon2020_inclusion() -> None:
    leaf, index, path = _argon_inclusion()
    assert (index, STH["tree_size"], len(path)) == (10000, 961_984_013, 30)
    assert len(path) == len(inclusion_proof_ranges(index, STH["tree_size"]))
    verify_inclusion(leaf, index, STH["tree_size"], path, ARGON_ROOT)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index + 1, STH["tree_size"], path, ARGON_ROOT)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, STH["tree_size"], path[:-1], ARGON_ROOT)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, STH["tree_size"], [flip(path[0], 0), *path[1:]], ARGON_ROOT)


def test_argon2020_consistency() -> None:
    path = [b64(h) for h in load(ARGON / "consistency.json")["consistency"]]
    assert len(path) == len(consistency_proof_ranges(ARGON_OLD_SIZE, STH["tree_size"]))
    verify_consistency(ARGON_OLD_SIZE, STH["tree_size"], path, ARGON_OLD_ROOT, ARGON_ROOT)
    with pytest.raises(ProofError):
        verify_consistency(ARGON_OLD_SIZE + 1, STH["tree_size"], path, ARGON_OLD_ROOT, ARGON_ROOT)
    with pytest.raises(ProofError):
        verify_consistency(ARGON_OLD_SIZE, STH["tree_size"], path, ARGON_ROOT, ARGON_OLD_ROOT)
    with pytest.raises(ProofError):
        verify_consistency(ARGON_OLD_SIZE, STH["tree_size"], path[:-1], ARGON_OLD_ROOT, ARGON_ROOT)


# -- verifier input checks ----------------------------------------------------------------------


def test_verify_rejects_wrong_length_hashes() -> None:
    tree = tree_of(6)
    proof, root, leaf = tree.inclusion_proof(2, 6), tree.root(), tree.node(0, 2)
    verify_inclusion(leaf, 2, 6, proof, root)
    with pytest.raises(ProofError, match="32-byte"):
        verify_inclusion(leaf + b"\0", 2, 6, proof, root)
    with pytest.raises(ProofError, match="32-byte"):
        verify_inclusion(leaf, 2, 6, [*proof[:-1], proof[-1][:31]], root)
    with pytest.raises(ProofError, match="32-byte"):
        verify_inclusion(leaf, 2, 6, proof, root + b"\0")
    cproof = tree.consistency_proof(3, 6)
    verify_consistency(3, 6, cproof, tree.root(3), root)
    with pytest.raises(ProofError, match="32-byte"):
        verify_consistency(3, 6, cproof, tree.root(3)[:16], root)


def test_verify_consistency_rejects_empty_start_and_reversed_sizes() -> None:
    tree = tree_of(4)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 4, [], EMPTY_ROOT, tree.root())
    with pytest.raises(ProofError, match="larger"):
        verify_consistency(4, 2, [], tree.root(), tree.root(2))


# -- properties over random trees ---------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=300)
seeds = st.binary(max_size=8)


def test_every_proof_verifies_exhaustively_small() -> None:
    tree = tree_of(64)
    for second in range(1, 65):
        root = tree.root(second)
        for index in range(second):
            proof = tree.inclusion_proof(index, second)
            verify_inclusion(tree.node(0, index), index, second, proof, root)
        for first in range(1, second + 1):
            proof = tree.consistency_proof(first, second)
            verify_consistency(first, second, proof, tree.root(first), root)


@props(40)
@given(size=sizes, seed=seeds)
def test_every_inclusion_and_consistency_proof_verifies(size: int, seed: bytes) -> None:
    tree = tree_of(size, seed)
    root = tree.root()
    for index in range(size):
        verify_inclusion(tree.node(0, index), index, size, tree.inclusion_proof(index, size), root)
    for first in range(1, size + 1):
        verify_consistency(first, size, tree.consistency_proof(first, size), tree.root(first), root)


@props(60)
@given(size=sizes, seed=seeds, data=st.data())
def test_flipping_any_bit_breaks_inclusion(size: int, seed: bytes, data: st.DataObject) -> None:
    tree = tree_of(size, seed)
    index = data.draw(st.integers(0, size - 1), label="index")
    leaf, proof, root = tree.node(0, index), tree.inclusion_proof(index, size), tree.root()
    verify_inclusion(leaf, index, size, proof, root)
    for bit in range(256):
        with pytest.raises(ProofError):
            verify_inclusion(flip(leaf, bit), index, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof, flip(root, bit))
        for i in range(len(proof)):
            bad = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, bad, root)


@props(60)
@given(size=st.integers(2, 300), seed=seeds, data=st.data())
def test_flipping_any_bit_breaks_consistency(size: int, seed: bytes, data: st.DataObject) -> None:
    tree = tree_of(size, seed)
    first = data.draw(st.integers(1, size - 1), label="first")
    proof, old, new = tree.consistency_proof(first, size), tree.root(first), tree.root()
    verify_consistency(first, size, proof, old, new)
    for bit in range(256):
        with pytest.raises(ProofError):
            verify_consistency(first, size, proof, flip(old, bit), new)
        with pytest.raises(ProofError):
            verify_consistency(first, size, proof, old, flip(new, bit))
        for i in range(len(proof)):
            bad = [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
            with pytest.raises(ProofError):
                verify_consistency(first, size, bad, old, new)


@props(40)
@given(size=st.integers(0, 300), seed=seeds)
def test_compact_range_matches_in_memory_tree(size: int, seed: bytes) -> None:
    tree, compact = InMemoryTree(), CompactRange()
    reported: dict[tuple[int, int], bytes] = {}
    assert compact.root() == tree.root() == EMPTY_ROOT
    for i in range(size):
        h = leaf_hash(seed + i.to_bytes(4, "big"))
        tree.append(h)
        for level, pos, node in compact.append(h):
            assert level >= 1
            assert (level, pos) not in reported
            assert node == tree.node(level, pos)
            reported[(level, pos)] = node
        assert compact.size == tree.size == i + 1
        assert compact.root() == tree.root()
        assert compact.frontier() == [tree.node(*n) for n in perfect_subtrees(0, i + 1)]
    # Everything the ledger must store above the leaves, and nothing else.
    assert reported == {k: v for k, v in tree.nodes().items() if k[0] >= 1}


@props(30)
@given(size=st.integers(0, 200), more=st.integers(1, 70), seed=seeds)
def test_compact_range_resumes_from_frontier(size: int, more: int, seed: bytes) -> None:
    tree = tree_of(size + more, seed)
    compact = CompactRange()
    for i in range(size):
        compact.append(tree.node(0, i))
    resumed = CompactRange.from_frontier(size, compact.frontier())
    assert resumed.size == size and resumed.root() == tree.root(size)
    for i in range(size, size + more):
        assert resumed.append(tree.node(0, i)) == compact.append(tree.node(0, i))
    assert resumed.root() == compact.root() == tree.root()


def test_compact_range_rejects_bad_frontier_and_leaves() -> None:
    frontier = CompactRange.from_frontier(0, []).frontier()
    assert frontier == []
    h = leaf_hash(b"x")
    with pytest.raises(LedgerError):
        CompactRange.from_frontier(3, [h])  # size 3 needs 2 hashes
    with pytest.raises(LedgerError):
        CompactRange.from_frontier(2, [h[:31]])
    with pytest.raises(LedgerError):
        CompactRange().append(b"short")
    with pytest.raises(LedgerError):
        InMemoryTree().append(b"short")


def test_compact_range_reports_completed_nodes() -> None:
    compact = CompactRange()
    leaves = [leaf_hash(bytes([i])) for i in range(8)]
    got = [[(lv, p) for lv, p, _ in compact.append(h)] for h in leaves]
    assert got == [[], [(1, 0)], [], [(1, 1), (2, 0)], [], [(1, 2)], [], [(1, 3), (2, 1), (3, 0)]]


def test_compact_range_extend_folds_like_append() -> None:
    # The verifier's batch fold, from every starting size to every batch length up to 40.
    leaves = [leaf_hash(bytes([i])) for i in range(80)]
    for start in range(40):
        for count in (0, 1, 2, 3, 7, 8, 40):
            one, many = CompactRange(), CompactRange()
            for h in leaves[:start]:
                one.append(h)
                many.append(h)
            for h in leaves[start : start + count]:
                one.append(h)
            many.extend(leaves[start : start + count])
            assert (many.size, many.frontier(), many.root()) == (
                one.size,
                one.frontier(),
                one.root(),
            )
    with pytest.raises(LedgerError):
        CompactRange().extend([leaves[0], b"short"])


# -- an independent implementation --------------------------------------------------------------


def test_roots_and_inclusion_paths_match_pymerkle() -> None:
    # pymerkle's default (security on) hashes leaves as SHA-256(0x00||d) and nodes as
    # SHA-256(0x01||l||r) and splits trees as RFC 9162 does, so roots and inclusion
    # paths must agree. Its consistency proofs use their own path layout: not compared.
    pymerkle = pytest.importorskip("pymerkle")
    theirs = pymerkle.InmemoryTree(algorithm="sha256")
    ours = InMemoryTree()
    for i in range(70):
        theirs.append_entry(b"entry %d" % i)
        ours.append_entry(b"entry %d" % i)
    for size in [0, 1, 2, 3, 5, 8, 13, 31, 32, 33, 64, 70]:
        assert theirs.get_root(size) == ours.root(size)
    for size in [1, 7, 33, 70]:
        for index in range(size):
            # pymerkle counts leaves from one and puts the leaf hash first in `path`.
            path = theirs.prove_inclusion(index + 1, size).path
            assert path == [ours.node(0, index), *ours.inclusion_proof(index, size)]


def test_module_exports() -> None:
    assert merkle.HASH_SIZE == 32
    assert set(merkle.__all__) <= set(dir(merkle))
