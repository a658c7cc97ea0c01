"""The ledger's hash chain, alongside its Merkle tree: each entry's chain hash commits to
every entry before it. Pure (hashlib only): the writer (evidence.ledger.service) and the
offline verifier (evidence.verify.ledger) compute it with the same function.
"""

from __future__ import annotations

import hashlib

ZERO_CHAIN = bytes(32)
"""chain[-1]: the chain hash before the first entry."""


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    """chain[i] = SHA-256(chain[i-1] || leaf[i]), with chain[-1] = 32 zero bytes."""
    return hashlib.sha256(previous + leaf).digest()
