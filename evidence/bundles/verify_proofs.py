#!/usr/bin/env python3
"""Check every inclusion proof in ledger/entries.jsonl against ledger/checkpoint.txt's root.

Shipped inside every court bundle; needs Python 3 and nothing else (standard library only),
so a court can run it without the evidence store's software:

    python3 verify_proofs.py [BUNDLE_DIRECTORY]

One line per entry, then a summary; exit status 1 if any proof fails. It does not check the
checkpoint's signature: VERIFY.txt does that with openssl, before this step. The algorithm
is RFC 9162 section 2.1.3.2; leaves are SHA-256(0x00 || entry), nodes SHA-256(0x01 || l || r).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

CHECKPOINT = "ledger/checkpoint.txt"
ENTRIES = "ledger/entries.jsonl"


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_proof(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 2.1.3.2); ValueError if malformed."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of {size} entries")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is shorter than the tree is deep")
    return r


def read_checkpoint(text: str) -> tuple[str, int, bytes]:
    """(origin, tree size, root hash) from the signed note's first three lines."""
    lines = text.split("\n")
    if len(lines) < 3:
        raise ValueError(f"{CHECKPOINT} is not a checkpoint (fewer than three lines)")
    return lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)


def check_line(line: str, size: int, root: bytes) -> tuple[str, bool, str]:
    """(what, ok, why) for one line of entries.jsonl."""
    row = json.loads(line)
    index = int(row["index"])
    entry = base64.b64decode(row["entry"], validate=True)
    proof = [base64.b64decode(h, validate=True) for h in row["hashes"]]
    got = root_from_proof(index, size, leaf_hash(entry), proof)
    if got != root:
        return (
            f"entry {index}",
            False,
            "its proof leads to another root: the entry or its proof was changed",
        )
    kind = json.loads(entry).get("type", "?")
    return f"entry {index}", True, f"{kind}, included in the checkpoint of {size} entries"


def _name(line: str, n: int) -> str:
    """'entry INDEX' when the line still says which entry it is, else its line number."""
    try:
        return f"entry {int(json.loads(line)['index'])} (line {n})"
    except (ValueError, KeyError, TypeError):
        return f"line {n}"


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path(".")
    try:
        origin, size, root = read_checkpoint((folder / CHECKPOINT).read_text(encoding="utf-8"))
        lines = (folder / ENTRIES).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        print(f"FAIL  cannot read the ledger files: {exc}")
        return 1
    failed = 0
    for n, line in enumerate(lines, 1):
        try:
            what, ok, why = check_line(line, size, root)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            what, ok, why = _name(line, n), False, f"unreadable or malformed entry or proof ({exc})"
        failed += not ok
        print(f"{'OK  ' if ok else 'FAIL'}  {what}: {why}")
    if not lines:
        print(f"FAIL  {ENTRIES} holds no entries")
        return 1
    if failed:
        print(
            f"FAILED: {failed} of {len(lines)} entries are not proven to be in {origin} "
            f"at size {size}"
        )
        return 1
    print(
        f"OK: all {len(lines)} entries are included in {origin} at size {size} "
        f"(root {base64.b64encode(root).decode()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
