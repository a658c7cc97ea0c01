"""The ledger's entries and proofs, and its entries as the audit views list them
(evidence/ledger/service.py, evidence/audit.py)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from api.schemas import Out


class RawEntryOut(Out):
    index: int
    entry: str  # the entry's bytes (RFC 8785 canonical JSON), base64


class EntriesOut(Out):
    entries: list[RawEntryOut]


class InclusionProofOut(Out):
    index: int
    tree_size: int
    hashes: list[str]  # base64, RFC 9162 §2.1.3


class ConsistencyProofOut(Out):
    first: int
    second: int
    hashes: list[str]  # base64, RFC 9162 §2.1.4


class LedgerEntryOut(Out):
    """One ledger entry, decoded, with its index. The facts beside the four fields every
    entry has differ by type (evidence/ledger/catalogue.py), so this model alone admits
    fields it does not name: they are the entry as the ledger committed to it."""

    model_config = ConfigDict(extra="allow")

    index: int
    type: str
    at: str
    actor: str
    subject: dict[str, Any]


class LedgerEntriesOut(Out):
    items: list[LedgerEntryOut]
