"""What goes in a bundle, read from the database and the ledger pinned at one tree size.

Everything here is a pure function of (case, pinned tree size, options): no clock, no
bundle id, no randomness, so building a bundle again gives a byte-identical manifest.json.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import or_, select

from evidence import clock
from evidence.accounts.models import Device, User
from evidence.bundles.layout import CHECKPOINT, ENTRIES, FORMAT, LEDGER_KEY
from evidence.cameras.models import ClipName
from evidence.cases.models import Case, CaseItem, Share, ShareExhibit
from evidence.clips.models import Clip, ClipState, Derivative
from evidence.context import Context
from evidence.errors import Disposed, NotFound
from evidence.ledger import catalogue
from evidence.ledger.note import NoteVerifier, open_checkpoint

# Entries that are someone looking at or taking footage: the continuity statement lists them
# as accesses (everything else is custody: docking, verification, derivation, sharing).
ACCESS_TYPES = catalogue.ACCESS


@dataclass(frozen=True)
class MediaFile:
    """A stored object copied into the ZIP under `path`; its hash is checked on the way."""

    path: str
    key: str
    sha256: str
    size: int


@dataclass
class Plan:
    manifest: dict[str, Any]
    media: list[MediaFile]
    checkpoint: str
    ledger_key: str
    entry_lines: list[dict[str, Any]]  # {"index", "entry", "hashes"} in index order
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)  # parsed, for the statement
    manifest_sha256: str = ""  # set once the builder has rendered it


def safe_ref(ref: str) -> str:
    """An exhibit reference as a path segment ("PC1234/1" -> "PC1234-1")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-.") or "exhibit"


def _ext(name: str | None) -> str:
    suffix = PurePosixPath(name or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".bin"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


@dataclass(frozen=True)
class ShareScope:
    """What a bundle made for one share carries: its exhibits (None: the whole case), and
    those whose original stays out (the recipient has their redacted copies only)."""

    share_id: str
    clip_ids: frozenset[str] | None
    withheld: frozenset[str]


def share_scope(s: Any, share_id: str) -> ShareScope:
    share = s.get(Share, share_id)
    if share is None:
        raise NotFound(f"no share {share_id}")
    rows = s.execute(
        select(ShareExhibit.clip_id, ShareExhibit.redacted_only).where(
            ShareExhibit.share_id == share_id
        )
    ).all()
    return ShareScope(
        share_id,
        None if share.whole_case else frozenset(c for c, _ in rows),
        frozenset(c for c, r in rows if r),
    )


WITHHELD = "disclosed to the share's recipient as its redacted copy only"


def plan_bundle(
    ctx: Context,
    case_id: str,
    tree_size: int,
    include_proxies: bool,
    include_redactions: bool = False,
    share_id: str | None = None,
) -> Plan:
    """Collect the case, its exhibits and their ledger entries as of `tree_size`.

    Derivatives recorded by then are listed (with their recipes) either way; their files are
    carried when asked: proxies and thumbnails with `include_proxies`, `redaction-N` copies
    with `include_redactions`. With `share_id`, only that share's exhibits, and for each one
    it gives as redacted only, its redacted copies instead of the original (and no proxy)."""
    ledger = ctx.ledger
    checkpoint = ledger.checkpoint_covering(tree_size)
    cp = open_checkpoint(checkpoint, NoteVerifier.from_vkey(ledger.verifier_key))
    if cp.size != tree_size:
        raise NotFound(f"no checkpoint for exactly {tree_size} entries")
    with ctx.db.session() as s:
        case = s.get(Case, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        scope = share_scope(s, share_id) if share_id else None
        rows = s.execute(
            select(CaseItem, Clip)
            .join(Clip, Clip.id == CaseItem.clip_id)
            .where(CaseItem.case_id == case_id)
            .order_by(CaseItem.added_at, CaseItem.id)
        ).all()
        devices = {d.id: d.name for d in s.scalars(select(Device))}
        # Officers are named in the statement by their account as well as their number.
        officers = {
            u.officer_id: u.username
            for u in s.scalars(
                select(User).where(
                    User.officer_id.in_([c.officer_id for _, c in rows if c.officer_id] or [""])
                )
            )
        }
        # Every name each exhibit was docked under (twins included), first docked first.
        docked_names: dict[str, list[tuple[Any, str]]] = {}
        for n in s.scalars(select(ClipName).where(ClipName.clip_id.in_([c.id for _, c in rows]))):
            docked_names.setdefault(n.clip_id, []).append((n.first_docked_at, n.filename))
        derivative_rows = {
            (d.clip_id, d.kind): d
            for d in s.scalars(
                select(Derivative).where(Derivative.clip_id.in_([c.id for _, c in rows]))
            )
        }
        case_info = {"id": case.id, "title": case.title, "reference": case.reference}
        exhibits_src = [(item, clip) for item, clip in rows]

    indices: set[int] = set()
    parsed: dict[int, dict[str, Any]] = {}
    raw: dict[int, bytes] = {}

    def pinned(ref: str) -> list[int]:
        out = []
        for idx, data in ledger.entries_about(ref):
            if idx < tree_size:
                raw[idx], parsed[idx] = data, json.loads(data)
                out.append(idx)
        return out

    case_entries = pinned(f"case:{case_id}")
    indices.update(case_entries)
    refs = pinned_refs(case_id, [(i, parsed[i]) for i in case_entries])
    pinned_at = max((parsed[i]["at"] for i in case_entries), default=None)
    exhibits: list[dict[str, Any]] = []
    media: list[MediaFile] = []
    used: set[str] = set()
    for _item, clip in exhibits_src:
        if clip.id not in refs:
            continue  # added to the case after the bundle was requested
        if scope is not None and scope.clip_ids is not None and clip.id not in scope.clip_ids:
            continue  # not in the share this bundle is for
        withheld = scope is not None and clip.id in scope.withheld
        ref = refs[clip.id] or f"EX/{len(exhibits) + 1}"
        folder = safe_ref(ref)
        while folder in used:  # two refs that differ only in punctuation
            folder += "_"
        used.add(folder)
        clip_entries = pinned(f"clip:{clip.id}")
        indices.update(clip_entries)
        disposed = _disposal(clip, ref, clip_entries, parsed)
        original = MediaFile(
            f"media/{folder}/original{_ext(clip.filename)}",
            f"originals/{clip.sha256}",
            clip.sha256,
            clip.size,
        )
        if disposed is None and not withheld:
            media.append(original)
        ingested = [i for i in clip_entries if parsed[i]["type"] == "clip.ingested"]
        derivatives = []
        for i in clip_entries:
            e = parsed[i]
            if e["type"] != "derivative.created":
                continue
            d: dict[str, Any] = {
                "kind": e["kind"],
                "sha256": e["sha256"],
                "size": e["size"],
                "recipe": e.get("recipe"),
                "created_at": e["at"],
                "ledger_index": i,
                "file": None,
            }
            if (
                "redaction" in e
            ):  # boxes, mute ranges, reason and who asked (evidence/redactions.py)
                d["redaction"] = e["redaction"]
            row = derivative_rows.get((clip.id, e["kind"]))
            wanted = include_redactions if is_redaction(e["kind"]) else include_proxies
            if e.get("watermark"):  # a recipient's copy: listed, never carried in a bundle
                wanted = False
            if withheld:  # the redacted copies stand for it; a proxy would show what was hidden
                wanted = is_redaction(e["kind"])
            if wanted and disposed is None and row is not None and row.sha256 == e["sha256"]:
                path = f"media/{folder}/{safe_ref(e['kind'])}{_kind_ext(e['kind'])}"
                d["file"] = path
                media.append(MediaFile(path, row.key, row.sha256, row.size))
            derivatives.append(d)
        history = attribution_history(clip_entries, parsed)
        current = (
            history[-1]
            if history
            else {
                "officer": {"id": clip.officer_id, "how": None},
                "camera": {"serial": clip.camera_serial, "how": None},
            }
        )
        exhibits.append(
            {
                "exhibit_ref": ref,
                "clip_id": clip.id,
                "file": None if disposed or withheld else original.path,
                "sha256": clip.sha256,
                "size": clip.size,
                "original_filename": clip.filename,
                # Names docked up to the pin (a twin docked after the request is not in it).
                "original_filenames": [
                    name
                    for at, name in sorted(docked_names.get(clip.id, []))
                    if pinned_at is None or clock.rfc3339(at) <= pinned_at
                ]
                or [clip.filename or clip.id],
                "officer_id": current["officer"]["id"],
                "device": {"id": clip.device_id, "name": devices.get(clip.device_id or "")},
                "camera_serial": current["camera"]["serial"],
                # Who recorded it and how the store knows, as the pinned ledger entries say, with
                # every earlier attribution an evidence officer corrected (`attribution_history`).
                "officer": {
                    **current["officer"],
                    "username": officers.get(current["officer"]["id"]),
                },
                "camera": current["camera"],
                "attribution_history": history,
                "recorded_at": clock.rfc3339(clip.recorded_at) if clip.recorded_at else None,
                "ingested_at": clock.rfc3339(clip.ingested_at),
                "state": "disposed" if disposed else clip.state,
                "disposed": disposed,
                **({"withheld": {"reason": WITHHELD}} if withheld else {}),
                "media": {
                    "duration_ms": clip.duration_ms,
                    "container": clip.container,
                    "video_codec": clip.video_codec,
                    "audio_codec": clip.audio_codec,
                    "width": clip.width,
                    "height": clip.height,
                    "frame_rate": clip.frame_rate,
                },
                "ingested_entry": ingested[0] if ingested else None,
                "ledger_entries": clip_entries,
                "derivatives": derivatives,
            }
        )

    proofs = ledger.inclusion_proofs(indices, tree_size)  # one query for every entry
    entry_lines = [
        {"index": i, "entry": _b64(raw[i]), "hashes": [_b64(h) for h in proofs[i]]}
        for i in sorted(indices)
    ]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "case": case_info,
        # Who asked for this bundle and for whom the case was shared, as the pinned ledger
        # entries say; and the people those entries name (a statement names people).
        "bundle": {
            **this_bundle(case_entries, parsed),
            **({"for_share": scope.share_id} if scope else {}),
        },
        "people": people_named(
            ctx,
            [parsed[i] for i in sorted(indices)],
            sorted(
                {ex["officer"]["id"] for ex in exhibits if ex["officer"]["id"]}
                | {
                    h["officer"]["id"]
                    for ex in exhibits
                    for h in ex["attribution_history"]
                    if h["officer"]["id"]
                }
            ),
        ),
        "ledger": {
            "origin": cp.origin,
            "tree_size": cp.size,
            "root_hash": _b64(cp.root_hash),
            "checkpoint": CHECKPOINT,
            "key": LEDGER_KEY,
            "entries": ENTRIES,
        },
        "exhibits": exhibits,
        "files": [],  # filled by the builder once every other file's bytes are known
    }
    return Plan(manifest, media, checkpoint, ledger.verifier_key, entry_lines, parsed)


def this_bundle(case_entries: list[int], parsed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The request this bundle answers (the newest pinned `bundle.requested`: the pin ends
    with it) and the shares of the case standing at the pin, with their recipients."""
    requests = [i for i in case_entries if parsed[i]["type"] == "bundle.requested"]
    last = parsed[requests[-1]] if requests else {}
    shares: dict[str, dict[str, Any]] = {}
    disclosures: dict[str, dict[str, Any]] = {}
    for i in case_entries:
        e = parsed[i]
        share = (e.get("subject") or {}).get("share")
        if e["type"] == "share.created" and isinstance(share, str):
            shares[share] = {
                "recipient": e.get("recipient"),
                "expires_at": e.get("expires_at"),
                "shared_by": e.get("actor"),
                "at": e.get("at"),
                "ledger_index": i,
                **({"organisation": e["organisation"]} if e.get("organisation") else {}),
            }
            disclosures[share] = {
                **shares[share],
                **{k: e[k] for k in DISCLOSURE_FIELDS if e.get(k) is not None},
            }
        elif e["type"] == "share.revoked" and share in shares:
            del shares[share]
        if e["type"] == "share.revoked" and share in disclosures:
            disclosures[share]["revoked_at"] = e.get("at")
    return {
        "requested_by": last.get("actor"),
        "requested_at": last.get("at"),
        "ledger_index": requests[-1] if requests else None,
        "shares": [v for v in shares.values() if (v["expires_at"] or "") > (last.get("at") or "")],
        # Every disclosure up to the pin, ended or not: to whom each exhibit went, and when.
        **({"disclosures": list(disclosures.values())} if disclosures else {}),
    }


# What a `share.created` entry says of a disclosure beyond its recipient and dates (entries
# from before organisations and purposes have none of these).
DISCLOSURE_FIELDS = (
    "organisation",
    "organisation_kind",
    "purpose",
    "legal_basis",
    "exhibits",
    "redacted_only",
)


def people_named(
    ctx: Context, entries: list[dict[str, Any]], officer_ids: list[str]
) -> dict[str, Any]:
    """actor ("user:jbrown") -> {name, role, officer_id} for every person the entries name as
    actor or recipient, and every attributed officer ("officer:4711")."""
    usernames = {e["actor"][5:] for e in entries if str(e.get("actor", "")).startswith("user:")}
    usernames |= {e["recipient"] for e in entries if isinstance(e.get("recipient"), str)}
    with ctx.db.session() as s:
        users = list(
            s.scalars(
                select(User).where(
                    or_(
                        User.username.in_(sorted(usernames) or [""]),
                        User.officer_id.in_(sorted(set(officer_ids)) or [""]),
                    )
                )
            )
        )
    out: dict[str, Any] = {}
    for u in sorted(users, key=lambda u: u.username):
        person = {"name": u.full_name or u.username, "role": u.role, "officer_id": u.officer_id}
        if u.username in usernames:
            out[f"user:{u.username}"] = person
        if u.officer_id in officer_ids:
            out[f"officer:{u.officer_id}"] = person
    return out


ATTRIBUTION_TYPES = ("clip.ingested", "clip.attributed")


def attribution_history(
    clip_entries: list[int], parsed: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The clip's attributions in ledger order: the one made at ingest (`clip.ingested`'s
    `attribution`), then each correction (`clip.attributed`: previous and new values, who
    and why). Each item: ledger_index, at, actor, reason, officer {id, how}, camera {serial,
    how}; a part an evidence officer changed has `how` None and `reattributed` {by, at,
    reason, ledger_index}, a part left alone keeps what it was."""
    out: list[dict[str, Any]] = []
    for i in clip_entries:
        e = parsed[i]
        if e["type"] == "clip.ingested" and isinstance(e.get("attribution"), dict):
            officer = e["attribution"].get("officer") or {}
            camera = e["attribution"].get("camera") or {}
            out.append(
                {
                    "ledger_index": i,
                    "at": e.get("at"),
                    "actor": e.get("actor"),
                    "reason": None,
                    "officer": {"id": officer.get("id"), "how": officer.get("how")},
                    "camera": {"serial": camera.get("serial"), "how": camera.get("how")},
                }
            )
        elif e["type"] == "clip.attributed" and isinstance(e.get("new"), dict):
            before = (
                out[-1]
                if out
                else {"officer": {"id": None, "how": None}, "camera": {"serial": None, "how": None}}
            )
            change = {
                "by": e.get("actor"),
                "at": e.get("at"),
                "reason": e.get("reason"),
                "ledger_index": i,
            }
            officer_id, serial = e["new"].get("officer_id"), e["new"].get("camera_serial")
            officer = (
                before["officer"]
                if officer_id == before["officer"]["id"]
                else {"id": officer_id, "how": None, "reattributed": change}
            )
            camera = (
                before["camera"]
                if serial == before["camera"]["serial"]
                else {"serial": serial, "how": None, "reattributed": change}
            )
            out.append(
                {
                    "ledger_index": i,
                    "at": e.get("at"),
                    "actor": e.get("actor"),
                    "reason": e.get("reason"),
                    "officer": officer,
                    "camera": camera,
                }
            )
    return out


def _disposal(
    clip: Clip, ref: str, clip_entries: list[int], parsed: dict[int, dict[str, Any]]
) -> dict[str, Any] | None:
    """The exhibit's tombstone, if the clip was disposed of before the bundle's checkpoint:
    the bundle then carries its record and the tombstone, not its (deleted) bytes."""
    tomb = next((i for i in clip_entries if parsed[i]["type"] == "clip.disposed"), None)
    if tomb is None:
        if clip.state == ClipState.disposed:
            raise Disposed(
                f"exhibit {ref} (clip {clip.id}) was disposed of after this bundle "
                "was requested, so its bytes are gone; request a new bundle"
            )
        return None
    e = parsed[tomb]
    return {
        "at": e["at"],
        "ledger_index": tomb,
        "rule": e.get("rule"),
        "reason": e.get("reason"),
        "approved_by": e.get("approved_by"),
    }


REF_TYPES = ("case.exhibit_added", "exhibit.referenced")


def pinned_refs(case_id: str, entries: list[tuple[int, dict[str, Any]]]) -> dict[str, str]:
    """clip id -> its exhibit reference as the ledger recorded it (added, then any edits), from
    the pinned entries only: an edit made after the request does not change the bundle."""
    refs: dict[str, str] = {}
    for _, e in sorted(entries, key=lambda x: x[0]):
        subject = e.get("subject", {})
        clip = subject.get("clip")
        if e.get("type") in REF_TYPES and subject.get("case") == case_id and isinstance(clip, str):
            refs[clip] = str(e.get("exhibit_ref") or "")
    return refs


def is_redaction(kind: str) -> bool:
    return kind.startswith("redaction-")


def _kind_ext(kind: str) -> str:
    """Derived objects are stored without a suffix; a court's player wants one."""
    return ".jpg" if kind == "thumbnail" else ".mp4"


def entries_jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, sort_keys=True).encode() + b"\n" for line in lines)


def render_manifest(manifest: dict[str, Any]) -> bytes:
    """Sorted keys, fixed indentation, trailing newline: the same dict, the same bytes."""
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def file_entry(path: str, data: bytes) -> dict[str, Any]:
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def sha256sums(hashes: dict[str, str]) -> bytes:
    """coreutils format: `<hex>  <path>` (two spaces: text mode), sorted by path."""
    return "".join(f"{hashes[p]}  {p}\n" for p in sorted(hashes)).encode()
