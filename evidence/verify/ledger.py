"""`evidence verify ledger`: recompute every leaf, the chain and the root, check signatures.

The source is either the HTTP API (what anyone outside can see) or the database itself
(what an auditor with access to a backup can see, including the stored leaf and chain
columns). Either way the verifier trusts only the verifier key and, when given, a
checkpoint the auditor saved earlier.

Offline by construction: this module imports no database or web code. The API source
imports httpx when it is opened; the database source lives apart, in
evidence.verify.ledger_db (SQLAlchemy), imported only by whoever reads a database
(tests/test_verify_offline.py, and the contracts in pyproject.toml's [tool.importlinter]).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple, Protocol

from evidence.errors import EvidenceError, NotFound
from evidence.ledger import merkle
from evidence.ledger.chain import ZERO_CHAIN, chain_hash
from evidence.ledger.note import Checkpoint, NoteVerifier, open_checkpoint
from evidence.verify.report import Report

if TYPE_CHECKING:
    import httpx


class Row(NamedTuple):
    """One entry as a source gives it (a tuple: a full verify makes a million of them)."""

    index: int
    entry: bytes
    leaf_hash: bytes | None = None  # as stored, when the source exposes it
    chain_hash: bytes | None = None


class LedgerSource(Protocol):
    description: str

    def verifier_key(self) -> str: ...
    def latest_checkpoint(self) -> str: ...
    def checkpoint_covering(self, size: int) -> str | None: ...
    def rows(self, end: int) -> Iterator[Row]: ...
    def consistency_proof(self, first: int, second: int) -> list[bytes]: ...


REFUSAL_HINTS = {
    401: "; sign in again for a fresh token (EVIDENCE_TOKEN or --token): it may have expired",
    403: "; reading the ledger needs an auditor's or evidence officer's account",
}


def problem_detail(resp: httpx.Response) -> str:
    """The server's own words: an RFC 9457 problem's detail (or title), else its text."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    text = body.get("detail") or body.get("title") if isinstance(body, dict) else None
    if not isinstance(text, str):
        text = resp.text.strip() or resp.reason_phrase or "no detail"
    return text[:300]


class ApiSource:
    """Reads the ledger through the public routes (docs/ledger.md)."""

    PAGE = 1000

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0):
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.description = base_url
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def _get(self, path: str, **params: int) -> httpx.Response:
        resp = self._http.get(f"/api/v1/ledger/{path}", params=params)
        if resp.status_code == 404:
            raise NotFound(problem_detail(resp))
        if resp.status_code >= 400:
            raise EvidenceError(
                f"the server refused (HTTP {resp.status_code}): {problem_detail(resp)}"
                + REFUSAL_HINTS.get(resp.status_code, "")
            )
        return resp

    def verifier_key(self) -> str:
        return self._get("key").text.strip()

    def latest_checkpoint(self) -> str:
        return self._get("checkpoint").text

    def checkpoint_covering(self, size: int) -> str | None:
        try:
            return self._get("checkpoint", size=size).text
        except NotFound:
            return None

    def rows(self, end: int) -> Iterator[Row]:
        start = 0
        while start < end:
            page = self._get("entries", start=start, end=min(end, start + self.PAGE)).json()
            if not page["entries"]:
                return
            for item in page["entries"]:
                yield Row(item["index"], base64.b64decode(item["entry"]))
            start = page["entries"][-1]["index"] + 1

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        body = self._get("proofs/consistency", first=first, second=second).json()
        return [base64.b64decode(h) for h in body["hashes"]]


def verify_ledger(
    source: LedgerSource,
    report: Report,
    *,
    key: str | None = None,
    saved_checkpoint: str | None = None,
) -> Report:
    """Run every check; the report says which passed and names the first bad entry."""
    if key is None:
        key = source.verifier_key()
        report.note(
            f"verifier key taken from {source.description}; pin it with --key to rule out a "
            "substituted key"
        )
    try:
        verifier = NoteVerifier.from_vkey(key)
    except EvidenceError as exc:
        report.add("verifier key", False, str(exc))
        return report
    report.add("verifier key", True, key)

    try:
        latest = open_checkpoint(source.latest_checkpoint(), verifier)
    except NotFound as exc:
        report.add("latest checkpoint", False, f"{exc}: nothing vouches for this ledger")
        return report
    except EvidenceError as exc:
        report.add("latest checkpoint signature", False, str(exc))
        return report
    report.add("latest checkpoint signature", True, f"{latest.origin}, {latest.size} entries")

    saved = _open_saved(saved_checkpoint, verifier, latest, report)
    targets = {latest.size: latest}
    if saved is not None and saved.size < latest.size:
        targets[saved.size] = saved

    walked = _walk(source, latest.size, targets, report)
    if walked is False:
        _pinpoint(source, verifier, latest, report)
    if walked is not None and saved is not None:
        _check_consistency(source, saved, latest, report)
    return report


def _open_saved(
    text_: str | None, verifier: NoteVerifier, latest: Checkpoint, report: Report
) -> Checkpoint | None:
    if text_ is None:
        return None
    try:
        saved = open_checkpoint(text_, verifier)
    except EvidenceError as exc:
        report.add("saved checkpoint signature", False, str(exc))
        return None
    report.add("saved checkpoint signature", True, f"{saved.size} entries")
    if saved.origin != latest.origin:
        report.add("saved checkpoint origin", False, f"{saved.origin!r} is not {latest.origin!r}")
        return None
    if saved.size > latest.size:
        report.add(
            "log only grew",
            False,
            f"the saved checkpoint has {saved.size} entries but the log now signs only "
            f"{latest.size}: entries from index {latest.size} were removed",
        )
        return None
    return saved


_FOLD_BATCH = 4096
"""Leaves hashed and checked before they are folded into the tree together."""


def _walk(
    source: LedgerSource, size: int, targets: dict[int, Checkpoint], report: Report
) -> bool | None:
    """Stream every entry once: contiguity, stored leaf and chain columns, roots at targets.

    Returns None when a row-level check already named the bad entry, else whether the
    recomputed root matches the latest checkpoint.
    """
    tree = merkle.CompactRange()
    chain = ZERO_CHAIN
    expected = 0
    # Leaves are folded into the tree a batch at a time (CompactRange.extend), and always
    # before a root is compared, so every check still sees the tree at its own size.
    pending: list[bytes] = []
    leaf_hash, next_chain = merkle.leaf_hash, chain_hash  # locals: this loop runs per entry
    for index, entry, stored_leaf, stored_chain in source.rows(size):
        if index != expected:
            report.add(
                "entries contiguous",
                False,
                f"entry {expected} is missing (the next entry present is {index})",
            )
            return None
        leaf = leaf_hash(entry)
        if stored_leaf is not None and stored_leaf != leaf:
            report.add(
                "leaf hashes",
                False,
                f"entry {index}: its bytes do not hash to the stored leaf hash (altered)",
            )
            return None
        chain = next_chain(chain, leaf)
        if stored_chain is not None and stored_chain != chain:
            report.add(
                "hash chain",
                False,
                f"entry {index}: chain hash breaks here (entry altered, removed or "
                "moved at this index)",
            )
            return None
        pending.append(leaf)
        expected += 1
        if expected in targets and expected != size:
            tree.extend(pending)
            pending.clear()
            _check_root(tree.root(), targets[expected], "saved checkpoint", report)
        elif len(pending) >= _FOLD_BATCH:
            tree.extend(pending)
            pending.clear()
    tree.extend(pending)
    if expected < size:
        report.add(
            "entries present",
            False,
            f"the checkpoint signs {size} entries but only {expected} exist: "
            f"entry {expected} onwards removed",
        )
        return None
    report.add("entries", True, f"{expected} entries read, every leaf and chain hash recomputed")
    return _check_root(tree.root(), targets[size], "latest checkpoint", report)


def _check_root(root: bytes, cp: Checkpoint, what: str, report: Report) -> bool:
    ok = root == cp.root_hash
    detail = (
        "matches"
        if ok
        else (
            f"recomputed {base64.b64encode(root).decode()} but {what} signs "
            f"{base64.b64encode(cp.root_hash).decode()}"
        )
    )
    return report.add(f"root at size {cp.size} ({what})", ok, detail)


def _pinpoint(
    source: LedgerSource, verifier: NoteVerifier, latest: Checkpoint, report: Report
) -> None:
    """Binary-search the signed checkpoints for the first entry that no longer matches.

    If entry i was altered, every root over more than i entries changes and every root
    over i or fewer does not, so "root differs at size s" is monotone in s.
    """
    tree = merkle.InMemoryTree()
    for row in source.rows(latest.size):
        tree.append(merkle.leaf_hash(row.entry))
    good, bad = 0, latest.size
    while bad - good > 1:
        note = source.checkpoint_covering((good + bad) // 2 or 1)
        if note is None:
            break
        try:
            cp = open_checkpoint(note, verifier)
        except EvidenceError as exc:
            report.add("historical checkpoint signature", False, str(exc))
            break
        if cp.size >= bad or cp.size <= good:
            break
        if tree.root(cp.size) == cp.root_hash:
            good = cp.size
        else:
            bad = cp.size
    where = f"entry {good}" if bad - good == 1 else f"an entry in [{good}, {bad})"
    report.add("first bad entry", False, f"{where} differs from what was signed")


def _check_consistency(
    source: LedgerSource, saved: Checkpoint, latest: Checkpoint, report: Report
) -> None:
    try:
        proof = source.consistency_proof(saved.size, latest.size)
        merkle.verify_consistency(saved.size, latest.size, proof, saved.root_hash, latest.root_hash)
    except EvidenceError as exc:
        report.add(f"consistency {saved.size} -> {latest.size}", False, str(exc))
        return
    report.add(
        f"consistency {saved.size} -> {latest.size}",
        True,
        "the log only grew since the saved checkpoint",
    )
