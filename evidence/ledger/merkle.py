"""RFC 9162 §2.1 Merkle tree hashing, proofs and their verification (RFC 6962 compatible).

The tree is the one Certificate Transparency uses, so any RFC 6962 / RFC 9162 verifier
(Go's `transparency-dev/merkle`, `golang.org/x/mod/sumdb/tlog`, sigstore) can check what
this ledger publishes:

    leaf_hash(d)  = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH({})       = SHA-256("")

Storage model. The ledger never stores a whole tree. It stores *perfect nodes*: the node
at `(level, position)` is MTH of the 2**level leaves
`[position * 2**level, (position + 1) * 2**level)`, and level 0 holds the leaf hashes.
A perfect node never changes once its last leaf is appended, which is what makes the
store append-only. Every hash a proof needs is MTH of a leaf range `[start, end)`, and
each such range is a right fold of at most O(log n) perfect nodes, so a proof costs
O(log n) reads that can be fetched in one query (`nodes_needed`).

All functions here are pure; `CompactRange` is what the sequencer keeps between appends
and `InMemoryTree` is a reference tree for tests, the offline verifier and benchmarks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from evidence.errors import LedgerError, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "InMemoryTree",
    "build_proof",
    "consistency_proof_ranges",
    "inclusion_proof_ranges",
    "leaf_hash",
    "node_hash",
    "nodes_needed",
    "perfect_subtrees",
    "range_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 digest, and so in every leaf, node and root hash."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 §2.1.1): the root of the empty tree."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

Range = tuple[int, int]
"""A leaf range `[start, end)`."""

Node = tuple[int, int]
"""A perfect node's address `(level, position)`."""


# -- hashing (RFC 9162 §2.1.1) ------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d0}) = SHA-256(0x00 || d0), RFC 9162 §2.1.1.

    The 0x00 / 0x01 domain separation stops a leaf being passed off as an inner node
    (a second-preimage attack on the tree).
    """
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), RFC 9162 §2.1.1."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k such that k < n <= 2k (RFC 9162 §2.1.1's split point); n must be > 1."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(what: str, value: bytes) -> None:
    # Vectors deliberately pass 9-byte "hashes" and empty strings; a verifier that only
    # compared bytes could be fooled into hashing garbage of the wrong shape.
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ProofError(f"{what} must be a {HASH_SIZE}-byte hash, got {size}")


def _check_size(what: str, value: int) -> None:
    # bool is an int; a size of True is a bug, not a tree of one leaf.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"{what} must be a non-negative integer, got {value!r}")


# -- perfect nodes and ranges ---------------------------------------------------------------


def perfect_subtrees(start: int, end: int) -> list[Node]:
    """The perfect nodes whose right fold is MTH(D[start:end]), left to right.

    MTH of n leaves splits at the largest power of two k < n (RFC 9162 §2.1.1), so it is
    the right fold of the perfect subtrees for the binary digits of n, largest first.
    They are *stored* nodes only if each starts on a multiple of its own size; that holds
    when `start` is a multiple of the largest one, which is true of every range an RFC
    9162 proof uses (start is aligned to a power of two >= end - start) and of [0, size).
    """
    _check_size("range start", start)
    _check_size("range end", end)
    if end < start:
        raise ProofError(f"range [{start}, {end}) is reversed")
    if end == start:
        return []
    top = (end - start).bit_length() - 1
    if start % (1 << top):
        raise ProofError(
            f"range [{start}, {end}) is not made of aligned perfect subtrees: "
            f"start is not a multiple of {1 << top}"
        )
    nodes: list[Node] = []
    pos = start
    for level in range(top, -1, -1):
        if (end - start) >> level & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def range_hash(start: int, end: int, perfect: Callable[[int, int], bytes]) -> bytes:
    """MTH(D[start:end]) from stored perfect nodes: H(s1, H(s2, ... H(sk-1, sk))).

    `perfect(level, position)` returns a stored node. An empty range is MTH({}).
    """
    nodes = perfect_subtrees(start, end)
    if not nodes:
        return EMPTY_ROOT
    acc = perfect(*nodes[-1])
    for level, pos in reversed(nodes[:-1]):
        acc = node_hash(perfect(level, pos), acc)
    return acc


def inclusion_proof_ranges(index: int, size: int) -> list[Range]:
    """The leaf range of each audit-path hash for leaf `index` in a tree of `size`.

    RFC 9162 §2.1.3.1: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k, and
    PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k. The sibling found at the top is
    appended last, so walking down from the root and reversing gives proof order
    (leaf to root).
    """
    _check_size("leaf index", index)
    _check_size("tree size", size)
    if index >= size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    top_down: list[Range] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if m < k:
            top_down.append((start + k, end))
            end = start + k
        else:
            top_down.append((start, start + k))
            start, m = start + k, m - k
    return top_down[::-1]


def consistency_proof_ranges(first: int, second: int) -> list[Range]:
    """The leaf range of each consistency-proof hash from tree size `first` to `second`.

    RFC 9162 §2.1.4.1: PROOF(m, D[n]) = SUBPROOF(m, D[n], true), where
    SUBPROOF(m, D[m], true) = {}, SUBPROOF(m, D[m], false) = {MTH(D[m])}, and for m < n
    SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) if m <= k, else
    SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]).
    As with PATH, the outermost hash comes last, so collect top-down and reverse.
    """
    _check_size("first tree size", first)
    _check_size("second tree size", second)
    if first == 0 or first > second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    top_down: list[Range] = []
    start, end, m, complete = 0, second, first, True
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            top_down.append((start + k, end))
            end = start + k
        else:
            top_down.append((start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        # The old tree's subtree [start, start + m) is not a prefix of the whole new
        # tree, so the verifier cannot take it from first_root and needs it here.
        top_down.append((start, start + m))
    return top_down[::-1]


def nodes_needed(ranges: Iterable[Range]) -> list[Node]:
    """Every perfect node the ranges fold over, each once, in first-use order.

    One set for one database query. For any RFC 9162 proof this has O(log n) entries:
    at most one range (the one on the tree's right edge) is not itself perfect.
    """
    seen: dict[Node, None] = {}
    for start, end in ranges:
        for node in perfect_subtrees(start, end):
            seen.setdefault(node, None)
    return list(seen)


def build_proof(ranges: Iterable[Range], nodes: Mapping[Node, bytes]) -> list[bytes]:
    """The proof hashes for `ranges` (from the *_proof_ranges functions) given `nodes`."""

    def perfect(level: int, pos: int) -> bytes:
        try:
            return nodes[(level, pos)]
        except KeyError:
            raise LedgerError(f"tree node (level {level}, position {pos}) is missing") from None

    return [range_hash(start, end, perfect) for start, end in ranges]


# -- verification (RFC 9162 §2.1.3.2, §2.1.4.2) -----------------------------------------------


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf` (a leaf hash) is at `index` in the tree of `size` with `root`.

    Exactly RFC 9162 §2.1.3.2. Raises ProofError saying why it failed.
    """
    _check_size("leaf index", index)
    _check_size("tree size", size)
    if index >= size:  # step 1
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash("leaf hash", leaf)
    _check_hash("root hash", root)
    for i, p in enumerate(proof):
        _check_hash(f"inclusion proof hash {i}", p)

    fn, sn, r = index, size - 1, bytes(leaf)  # steps 2, 3
    for p in proof:  # step 4
        if sn == 0:
            raise ProofError(
                f"inclusion proof is too long for leaf {index} of {size} ({len(proof)} hashes)"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # If fn is a left child it is the last node of its level (fn == sn): climb
            # past the levels where it has no right sibling, as the tree is not perfect.
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # step 5
        raise ProofError(
            f"inclusion proof is too short for leaf {index} of {size} ({len(proof)} hashes)"
        )
    if r != root:
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the root of tree size {size}"
        )


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> None:
    """Check that the tree of size `first` is a prefix of the tree of size `second`.

    Exactly RFC 9162 §2.1.4.2, plus the edge cases it leaves open, decided as
    transparency-dev/merkle does: first == 0 is always rejected (every tree extends the
    empty tree, so such a proof proves nothing and is a sign of a confused caller), and
    first == second needs an empty proof and equal roots. Raises ProofError.
    """
    _check_size("first tree size", first)
    _check_size("second tree size", second)
    if first == 0:
        raise ProofError("a consistency proof from the empty tree (size 0) is meaningless")
    if first > second:
        raise ProofError(f"first tree size {first} is larger than second tree size {second}")
    if first == second:
        # Nothing is hashed here, so the roots are compared as given (the upstream
        # vectors expect equal roots of any length to pass).
        if proof:
            raise ProofError(f"consistency proof between equal sizes {first} must be empty")
        if first_root != second_root:
            raise ProofError(f"trees of the same size {first} have different roots")
        return

    _check_hash("first root hash", first_root)
    _check_hash("second root hash", second_root)
    for i, c in enumerate(proof):
        _check_hash(f"consistency proof hash {i}", c)
    if not proof:  # step 1
        raise ProofError(f"consistency proof from {first} to {second} is empty")

    path = list(proof)
    if first & (first - 1) == 0:  # step 2
        # The old tree is a perfect subtree of the new one, so the proof leaves its
        # root out: the verifier already holds it.
        path.insert(0, bytes(first_root))
    fn, sn = first - 1, second - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise ProofError(f"consistency proof from {first} to {second} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:  # as in verify_inclusion
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # step 7
        raise ProofError(f"consistency proof from {first} to {second} is too short")
    if fr != first_root:
        raise ProofError(f"consistency proof does not lead to the root of tree size {first}")
    if sr != second_root:
        raise ProofError(f"consistency proof does not lead to the root of tree size {second}")


# -- incremental tree -----------------------------------------------------------------------


class CompactRange:
    """The right edge of the tree: enough to append and compute roots in O(log n) memory.

    Holds the hashes of `perfect_subtrees(0, size)`, one per set bit of `size`, largest
    first. Appending a leaf merges equal-sized subtrees like a binary counter carries.
    """

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_frontier(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Resume from the stored perfect nodes `perfect_subtrees(0, size)`, in order."""
        _check_size("tree size", size)
        want = size.bit_count()
        if len(hashes) != want:
            raise LedgerError(
                f"a tree of size {size} has {want} frontier hashes, got {len(hashes)}"
            )
        for i, h in enumerate(hashes):
            if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
                raise LedgerError(f"frontier hash {i} is not a {HASH_SIZE}-byte hash")
        cr = cls()
        cr._size = size
        cr._hashes = [bytes(h) for h in hashes]
        return cr

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    def frontier(self) -> list[bytes]:
        """The hashes of `perfect_subtrees(0, size)`, left to right."""
        return list(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash; return the perfect nodes (level >= 1) it completes.

        Returned as `(level, position, hash)`, lowest level first. Level 0 (the leaf
        itself) is not returned: the ledger keeps leaf hashes with the entries.
        """
        if not isinstance(leaf_hash, bytes | bytearray) or len(leaf_hash) != HASH_SIZE:
            raise LedgerError(f"leaf hash must be {HASH_SIZE} bytes")
        acc = bytes(leaf_hash)
        size = self._size
        completed: list[tuple[int, int, bytes]] = []
        level = 0
        # Each trailing 1 bit of the old size is a subtree of 2**level leaves that the
        # new leaf (index `size`) completes into one of 2**(level+1): the node holding
        # leaf `size` at that level.
        while size >> level & 1:
            acc = node_hash(self._hashes.pop(), acc)
            level += 1
            completed.append((level, size >> level, acc))
        self._hashes.append(acc)
        self._size = size + 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, keeping no completed nodes: a verifier's fast path.

        The same binary-counter fold as `append`, without building its list of completed
        nodes for each leaf (a full verify folds a million leaves).
        """
        hashes, size, sha256 = self._hashes, self._size, hashlib.sha256
        for leaf in leaf_hashes:
            if len(leaf) != HASH_SIZE:
                raise LedgerError(f"leaf hash must be {HASH_SIZE} bytes")
            acc, carry = bytes(leaf), size
            while carry & 1:
                acc = sha256(_NODE_PREFIX + hashes.pop() + acc).digest()
                carry >>= 1
            hashes.append(acc)
            size += 1
        self._size = size

    def root(self) -> bytes:
        """MTH(D[0:size]); EMPTY_ROOT for the empty tree."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc


class InMemoryTree:
    """Every perfect node in memory; proofs go through the same range functions as the DB.

    For tests, the offline verifier and benchmarks, not for the ledger itself.
    """

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash; return its index."""
        if not isinstance(leaf_hash, bytes | bytearray) or len(leaf_hash) != HASH_SIZE:
            raise LedgerError(f"leaf hash must be {HASH_SIZE} bytes")
        self._levels[0].append(bytes(leaf_hash))
        level = 0
        # Built bottom-up from the stored levels (not via CompactRange) so the two can
        # be tested against each other.
        while len(self._levels[level]) % 2 == 0:
            below = self._levels[level]
            if len(self._levels) == level + 1:
                self._levels.append([])
            self._levels[level + 1].append(node_hash(below[-2], below[-1]))
            level += 1
        return self.size - 1

    def append_entry(self, entry: bytes) -> int:
        """Append the leaf hash of `entry`; return its index."""
        return self.append(leaf_hash(entry))

    def node(self, level: int, position: int) -> bytes:
        """The perfect node at `(level, position)`, if it is complete."""
        if 0 <= level < len(self._levels) and 0 <= position < len(self._levels[level]):
            return self._levels[level][position]
        raise LedgerError(f"tree node (level {level}, position {position}) does not exist")

    def nodes(self) -> dict[Node, bytes]:
        """Every complete perfect node, level 0 included."""
        return {(lv, p): h for lv, row in enumerate(self._levels) for p, h in enumerate(row)}

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]) for any size up to the current one (default: current)."""
        size = self.size if size is None else size
        self._check_size(size)
        return range_hash(0, size, self.node)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 audit path for leaf `index` in the tree of `size`."""
        self._check_size(size)
        return self._proof(inclusion_proof_ranges(index, size))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 consistency proof from size `first` to size `second`."""
        self._check_size(second)
        return self._proof(consistency_proof_ranges(first, second))

    def _check_size(self, size: int) -> None:
        _check_size("tree size", size)
        if size > self.size:
            raise ProofError(f"tree size {size} is larger than the tree ({self.size} leaves)")

    def _proof(self, ranges: list[Range]) -> list[bytes]:
        needed = nodes_needed(ranges)
        return build_proof(ranges, {n: self.node(*n) for n in needed})
