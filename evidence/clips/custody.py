"""The "verified" marks on a clip's custody timeline, computed on the server (the clip page
shows them; the check lives in the core so any front end gets the same answer).

For each ledger entry of the timeline (from `evidence.clips.service.detail`): the stored leaf
hash must equal SHA-256(0x00 || entry bytes) (`leaf_matches`, computed by the service), and
its RFC 9162 inclusion proof, fetched from the ledger service, must lead to the root hash of
the latest signed checkpoint, whose Ed25519 signature is checked first with the log's own
verifier key. Nothing here trusts the browser; the page shows the result and the checkpoint
it was checked against, so a reader can repeat the check offline (docs/ledger.md).

An online check (it reads the store's ledger through a Context), so it lives beside the
clips rather than in evidence.verify, whose modules run offline.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from evidence.context import Context
from evidence.errors import LedgerError, NotFound
from evidence.ledger import merkle
from evidence.ledger.note import open_checkpoint


@dataclass
class CustodyCheck:
    tree_size: int = 0
    root_hash: str = ""  # base64, as in the checkpoint
    key_name: str = ""
    verified: dict[int, bool] = field(default_factory=dict)
    why_not: dict[int, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def all_verified(self) -> bool:
        return self.error is None and bool(self.verified) and all(self.verified.values())


def check_custody(ctx: Context, custody: list[dict[str, Any]]) -> CustodyCheck:
    ledger = ctx.ledger
    try:
        verifier = ledger.signer.verifier()
        checkpoint = open_checkpoint(ledger.latest_checkpoint(), verifier, origin=ledger.origin)
    except (LedgerError, NotFound) as exc:
        return CustodyCheck(error=f"the latest checkpoint could not be verified: {exc}")
    out = CustodyCheck(
        checkpoint.size, base64.b64encode(checkpoint.root_hash).decode(), verifier.name
    )
    # One batch of proofs for every entry the checkpoint covers (one query, shared nodes).
    covered = [int(i["index"]) for i in custody if int(i["index"]) < checkpoint.size]
    proofs: dict[int, list[bytes]] = {}
    unread = ""
    try:
        proofs = ledger.inclusion_proofs(covered, checkpoint.size)
    except LedgerError as exc:  # each entry then says why it is not verified
        unread = str(exc)
    for item in custody:
        index = int(item["index"])
        if not item.get("leaf_matches"):
            out.verified[index] = False
            out.why_not[index] = "the stored leaf hash is not the hash of the entry's bytes"
            continue
        if index >= checkpoint.size:
            out.verified[index] = False
            out.why_not[index] = "appended after the latest checkpoint: reload to check it"
            continue
        if index not in proofs:
            out.verified[index] = False
            out.why_not[index] = unread
            continue
        try:
            merkle.verify_inclusion(
                base64.b64decode(item["leaf_hash"]),
                index,
                checkpoint.size,
                proofs[index],
                checkpoint.root_hash,
            )
        except LedgerError as exc:  # ProofError is a LedgerError
            out.verified[index] = False
            out.why_not[index] = str(exc)
        else:
            out.verified[index] = True
    return out
