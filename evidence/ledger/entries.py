"""What a ledger entry is: a JSON object, canonicalised by RFC 8785 before hashing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from evidence import clock

SubjectIds = Mapping[str, str | list[str]]


def make_entry(type: str, *, actor: str, subject: SubjectIds, **fields: Any) -> dict[str, Any]:
    """An entry object with the fields every entry has.

    `actor` names who did it ("user:alice", "device:dock-3", "system:worker");
    `subject` maps kinds to ids ({"clip": id, "case": id}); `fields` carry the hashes and
    facts the entry vouches for.
    """
    if not type or not actor:
        raise ValueError("a ledger entry needs a type and an actor")
    reserved = {"type", "at", "actor", "subject"} & fields.keys()
    if reserved:
        raise ValueError(f"reserved entry fields given as data: {sorted(reserved)}")
    entry: dict[str, Any] = {
        "type": type,
        "at": clock.rfc3339(clock.now()),
        "actor": actor,
        "subject": {k: v for k, v in subject.items()},
    }
    entry.update(fields)
    return entry


def canonical(entry: Mapping[str, Any]) -> bytes:
    """RFC 8785 (JCS) bytes: the exact bytes the leaf hash commits to."""
    return rfc8785.dumps(entry)


def refs_of(entry: Mapping[str, Any]) -> list[str]:
    """The custody-index keys of an entry: "kind:id" for every subject id."""
    refs: list[str] = []
    for kind, ids in dict(entry.get("subject", {})).items():
        for one in [ids] if isinstance(ids, str) else list(ids):
            refs.append(f"{kind}:{one}")
    return sorted(set(refs))


def parse(entry_bytes: bytes) -> dict[str, Any]:
    return json.loads(entry_bytes)
