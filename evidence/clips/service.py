"""Finding, reading and annotating clips, always through the access policy.

Every read of footage (proxy, original, thumbnail) is a ledger entry naming who, what,
when, why and from where.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from evidence import audit, clock
from evidence.access import (
    Principal,
    bookmark_filter,
    check_reason,
    client_address,
    clip_filter_parts,
    custody_entry_visible,
    custody_entry_withheld,
    derivative_visible,
    recipient_context,
    recipient_copy,
    require,
    side,
    visible_clip,
    without,
)
from evidence.cameras.models import ClipName
from evidence.cases.models import CaseItem
from evidence.clips import fulltext, paging
from evidence.clips.models import Bookmark, Clip, ClipTag, Derivative
from evidence.context import Context
from evidence.errors import Disposed, InvalidInput, NotFound
from evidence.ledger import merkle
from evidence.ledger.models import LedgerEntry, LedgerRef
from evidence.retention import service as retention
from evidence.storage import ObjectInfo, original_key

_TAG = re.compile(r"^[\w][\w .:/-]{0,63}$")


@dataclass(frozen=True)
class SearchFilters:
    officer_id: str | None = None
    device_id: str | None = None
    recorded_from: dt.datetime | None = None
    recorded_to: dt.datetime | None = None
    case_id: str | None = None
    category: str | None = None
    tag: str | None = None
    text: str | None = None
    state: str | None = None


@dataclass(frozen=True)
class ClipPage:
    """One page of a clip list (evidence/clips/paging.py): its clips' summaries, the cursor
    of the next (older) page or None at the end, and, where the list counts (the unattributed
    queue), how many clips match, counted up to paging.COUNT_CAP + 1 ("1,000+")."""

    items: list[dict[str, Any]]
    next_before: str | None
    count: int | None = None


def search(
    ctx: Context,
    principal: Principal,
    f: SearchFilters,
    *,
    before: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> ClipPage:
    """The clips `principal` may see that match `f`, newest recorded first, one page after
    the cursor `before` (docs/search.md). No count: counting every match is the slow part."""
    require(principal, "clips.search")
    paging.check_limit(limit)
    cursor = paging.Cursor.decode(before) if before else None
    where: list[ColumnElement[bool]] = []
    if f.officer_id:
        where.append(Clip.officer_id == f.officer_id)
    if f.device_id:
        where.append(Clip.device_id == f.device_id)
    if f.recorded_from:
        where.append(Clip.recorded_at >= f.recorded_from)
    if f.recorded_to:
        where.append(Clip.recorded_at < f.recorded_to)
    if f.case_id:
        where.append(Clip.id.in_(select(CaseItem.clip_id).where(CaseItem.case_id == f.case_id)))
    if f.category:
        where.append(Clip.category == f.category)
    if f.tag:
        where.append(Clip.id.in_(select(ClipTag.clip_id).where(ClipTag.tag == f.tag)))
    if f.state:
        where.append(Clip.state == f.state)
    parts = clip_filter_parts(principal, footage=False)
    with ctx.db.session() as s:
        if f.text:
            where.append(fulltext.text_match(s, principal, f.text))
        page = paging.newest_first(s, parts, where, before=cursor, limit=limit)
        tags = _tags_of(s, [c.id for c in page.clips])
        items = [summary(c, tags.get(c.id, [])) for c in page.clips]
        return ClipPage(items, page.next_before)


def _tags_of(s: Session, clip_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if clip_ids:
        for clip_id, tag in s.execute(
            select(ClipTag.clip_id, ClipTag.tag)
            .where(ClipTag.clip_id.in_(clip_ids))
            .order_by(ClipTag.tag)
        ):
            out.setdefault(clip_id, []).append(tag)
    return out


def _iso(t: dt.datetime | None) -> str | None:
    return clock.rfc3339(t) if t else None


def summary(c: Clip, tags: list[str]) -> dict[str, Any]:
    return {
        "id": c.id,
        "filename": c.filename,
        "state": c.state,
        "sha256": c.sha256,
        "size": c.size,
        "officer_id": c.officer_id,
        "device_id": c.device_id,
        "camera_serial": c.camera_serial,
        "recorded_at": _iso(c.recorded_at),
        "ingested_at": _iso(c.ingested_at),
        "category": c.category,
        "tags": tags,
        "duration_ms": c.duration_ms,
        "width": c.width,
        "height": c.height,
        "playable": c.state in ("stored", "ready"),
    }


def detail(ctx: Context, principal: Principal, clip_id: str) -> dict[str, Any]:
    """Metadata, hashes, integrity and the custody timeline (its ledger entries), with what
    the policy lets `principal` read: others' viewings for auditors only, bookmark notes of
    their own side only, hold reasons for those who oversee holds
    (evidence.access.custody_entry_visible, custody_entry_withheld, bookmark_filter)."""
    require(principal, "clips.read")
    with ctx.db.session() as s:
        clip = visible_clip(s, principal, clip_id, footage=False)
        tags = _tags_of(s, [clip.id]).get(clip.id, [])
        derivatives = [
            d
            for d in s.scalars(select(Derivative).where(Derivative.clip_id == clip.id))
            if derivative_visible(s, principal, d.kind)
        ]
        bookmarks = s.scalars(
            select(Bookmark)
            .where(Bookmark.clip_id == clip.id, bookmark_filter(principal))
            .order_by(Bookmark.at_ms)
        ).all()
        rows = s.execute(
            select(LedgerEntry.idx, LedgerEntry.entry, LedgerEntry.leaf_hash)
            .join(LedgerRef, LedgerRef.idx == LedgerEntry.idx)
            .where(LedgerRef.ref == f"clip:{clip.id}")
            .order_by(LedgerEntry.idx)
        ).all()
        out = summary(clip, tags)
        out["retention"] = retention.retention_of(ctx, s, clip, principal)
        out["names"] = list(
            s.scalars(
                select(ClipName.filename)
                .where(ClipName.clip_id == clip.id)
                .order_by(ClipName.first_docked_at, ClipName.filename)
            )
        )
        out["camera_how"], out["officer_how"] = clip.camera_how, clip.officer_how
    size = ctx.ledger.size()
    custody = [_custody_item(idx, entry, leaf, size) for idx, entry, leaf in rows]
    integrity = _integrity(clip, custody)  # from every entry, before any is withheld
    readable = {b.id for b in bookmarks}
    custody = [c for c in custody if custody_entry_visible(principal, c["entry"], readable)]
    custody = [_withhold(c, custody_entry_withheld(principal, c["entry"])) for c in custody]
    out.update(
        {
            "container": clip.container,
            "video_codec": clip.video_codec,
            "audio_codec": clip.audio_codec,
            "frame_rate": clip.frame_rate,
            "rotation": clip.rotation,
            "gps": clip.gps,
            "sidecar": clip.sidecar,
            "media_error": clip.media_error,
            "original": {
                "key": original_key(clip.sha256),
                "sha256": clip.sha256,
                "size": clip.size,
            },
            "derivatives": [
                {
                    "kind": d.kind,
                    "sha256": d.sha256,
                    "size": d.size,
                    "recipe": d.recipe,
                    "created_at": _iso(d.created_at),
                }
                for d in derivatives
            ],
            "bookmarks": [
                {"id": b.id, "at_ms": b.at_ms, "note": b.note, "created_at": _iso(b.created_at)}
                for b in bookmarks
            ],
            "integrity": integrity,
            "custody": custody,
        }
    )
    return out


def _withhold(item: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    if not fields:
        return item
    out = {**item, "entry": without(item["entry"], fields), "withheld": fields}
    if "actor" in fields:  # the person is withheld too, not only their words
        out["actor"] = None
    return out


def _custody_item(index: int, entry: bytes, leaf: bytes, tree_size: int) -> dict[str, Any]:
    data = json.loads(entry)
    return {
        "index": index,
        "type": data.get("type"),
        "at": data.get("at"),
        "actor": data.get("actor"),
        "entry": data,
        "leaf_hash": base64.b64encode(leaf).decode(),
        "leaf_matches": merkle.leaf_hash(entry) == leaf,
        "proof": f"/api/v1/ledger/proofs/inclusion?index={index}&tree_size={tree_size}",
    }


def _integrity(clip: Clip, custody: list[dict[str, Any]]) -> dict[str, Any]:
    ingested = [c for c in custody if c["type"] == "clip.ingested"]
    vouched = bool(ingested) and ingested[0]["entry"].get("sha256") == clip.sha256
    ok = vouched and all(c["leaf_matches"] for c in custody)
    # The scrubber's verdict on the stored bytes (evidence/scrub/service.py): a stored object
    # that no longer hashes right, or is gone, outranks what the ledger says about the hash.
    scrub = {
        "status": clip.integrity,  # "unchecked", "ok" or "failed"
        "checked_at": _iso(clip.integrity_checked_at),
        "error": clip.integrity_error,
    }
    if clip.integrity == "failed":
        return {
            "status": "FAILED",
            "detail": f"the stored bytes failed the integrity check: {clip.integrity_error}",
            "scrub": scrub,
        }
    detail = (
        "the original's SHA-256 was verified at ingest and is committed in the ledger"
        if ok
        else "not yet verified"
        if not ingested
        else "the ledger does not vouch for this clip's recorded hash"
    )
    return {
        "status": "verified" if ok else ("pending" if not ingested else "MISMATCH"),
        "detail": detail,
        "scrub": scrub,
    }


# -- footage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Footage:
    key: str
    info: ObjectInfo
    media_type: str
    filename: str


FOOTAGE_KINDS = {
    "proxy": ("clip.viewed", "video/mp4"),
    "original": ("clip.downloaded", "application/octet-stream"),
    "thumbnail": ("clip.thumbnail_viewed", "image/jpeg"),
}
# A redacted copy (evidence/redactions.py) plays like the proxy and is recorded like it, as
# `clip.viewed`; the entry's `object` names which one was played.
REDACTION_KIND = re.compile(r"^redaction-[1-9][0-9]{0,8}$")
WATERMARK_KIND = re.compile(r"^watermark-[0-9a-f]{20}$")


def _footage_kind(kind: str) -> tuple[str, str]:
    if REDACTION_KIND.match(kind) or WATERMARK_KIND.match(kind):
        return FOOTAGE_KINDS["proxy"]
    if kind not in FOOTAGE_KINDS:
        raise InvalidInput(
            f"no footage kind {kind!r}: proxy, original, thumbnail, redaction-N or a "
            "share's watermark-…"
        )
    return FOOTAGE_KINDS[kind]


def open_footage(
    ctx: Context,
    principal: Principal,
    clip_id: str,
    kind: str,
    *,
    reason: str | None,
    source_ip: str | None,
) -> Footage:
    """Check access, record it in the ledger, and say where the bytes are.

    Proxies and originals need a reason; a thumbnail is recorded with the reason
    "browsing" since it is shown in search results.
    """
    require(principal, "clips.view_footage")
    entry_type, media_type = _footage_kind(kind)
    why = "browsing" if kind == "thumbnail" else check_reason(reason, ctx.settings.access_reasons)
    with ctx.db.session() as s:
        # A recipient given the exhibit as redacted only may have a redacted copy, nothing
        # else made from the original (its proxy and thumbnail show what was redacted).
        clip = visible_clip(
            s, principal, clip_id, footage=not recipient_copy(s, principal, clip_id, kind)
        )
        via = recipient_context(s, principal, clip_id=clip_id)
        if clip.disposed_at is not None:
            raise Disposed(
                f"clip {clip_id} was disposed of on {clock.rfc3339(clip.disposed_at)} under the "
                "retention policy; its bytes are gone. Its record and tombstone remain in the "
                "ledger."
            )
        key, filename, sha256 = _footage_key(s, clip, kind)
    info = ctx.store.stat(key)
    # The proxy and a redaction are two viewings (the object differs); Range requests are one.
    if not audit.recently_recorded(ctx, principal.user_id, entry_type, ("clip", clip_id), why, key):
        ctx.ledger.append(
            entry_type,
            actor=principal.actor,
            subject={
                "clip": clip_id,
                "user": principal.user_id,
                **({"share": via["share"]} if via else {}),
            },
            role=principal.role.value,
            reason=why,
            source_ip=client_address(source_ip),
            object=key,
            sha256=sha256,
            **({"organisation": via["organisation"], "purpose": via["purpose"]} if via else {}),
        )
    return Footage(key, info, media_type, filename)


def _footage_key(s: Session, clip: Clip, kind: str) -> tuple[str, str, str]:
    """(object key, download file name, the SHA-256 the ledger records for it)."""
    stem = (clip.filename or clip.id).rsplit(".", 1)[0]
    if kind == "original":
        return original_key(clip.sha256), clip.filename or f"{clip.id}.bin", clip.sha256
    d = s.scalar(select(Derivative).where(Derivative.clip_id == clip.id, Derivative.kind == kind))
    if d is None:
        raise NotFound(f"clip {clip.id} has no {kind} (state: {clip.state})")
    return d.key, f"{stem}-{kind}{'.jpg' if kind == 'thumbnail' else '.mp4'}", d.sha256


# -- annotations -----------------------------------------------------------------------------


def set_category(ctx: Context, principal: Principal, clip_id: str, category: str) -> None:
    require(principal, "clips.categorise")
    if category not in ctx.settings.categories:
        raise InvalidInput(
            f"unknown category {category!r}; choose one of: {', '.join(ctx.settings.categories)}"
        )
    with ctx.db.write_session() as s:
        clip = visible_clip(s, principal, clip_id, footage=False)
        old = clip.category
        if old == category:
            return
        clip.category = category
        ctx.ledger.append_in(
            s,
            "clip.categorised",
            actor=principal.actor,
            subject={"clip": clip.id, "user": principal.user_id},
            category=category,
            previous=old,
        )
        if clip.state in retention.LIVE_STATES:
            retention.schedule_in(ctx, s, clip, actor=principal.actor)
    retention.lock_original(ctx, clip_id)


def add_tag(ctx: Context, principal: Principal, clip_id: str, tag: str) -> list[str]:
    require(principal, "clips.tag")
    tag = tag.strip()
    if not _TAG.match(tag):
        raise InvalidInput(
            "a tag is 1-64 letters, digits, spaces or . : / - (e.g. an incident number)"
        )
    with ctx.db.write_session() as s:
        clip = visible_clip(s, principal, clip_id, footage=False)
        if s.get(ClipTag, (clip.id, tag)) is None:
            s.add(
                ClipTag(clip_id=clip.id, tag=tag, added_by=principal.user_id, added_at=clock.now())
            )
            ctx.ledger.append_in(
                s,
                "clip.tagged",
                actor=principal.actor,
                subject={"clip": clip.id, "user": principal.user_id},
                tag=tag,
            )
        s.flush()
        return _tags_of(s, [clip.id]).get(clip.id, [])


def remove_tag(ctx: Context, principal: Principal, clip_id: str, tag: str) -> None:
    require(principal, "clips.tag")
    with ctx.db.write_session() as s:
        clip = visible_clip(s, principal, clip_id, footage=False)
        row = s.get(ClipTag, (clip.id, tag))
        if row is None:
            raise NotFound(f"clip has no tag {tag!r}")
        s.delete(row)
        ctx.ledger.append_in(
            s,
            "clip.untagged",
            actor=principal.actor,
            subject={"clip": clip.id, "user": principal.user_id},
            tag=tag,
        )


def add_bookmark(
    ctx: Context, principal: Principal, clip_id: str, at_ms: int, note: str
) -> dict[str, Any]:
    require(principal, "clips.bookmark")
    note = note.strip()
    if not 1 <= len(note) <= 2000 or at_ms < 0:
        raise InvalidInput("a bookmark needs a time (ms, >= 0) and a note of 1-2000 characters")
    with ctx.db.write_session() as s:
        clip = visible_clip(s, principal, clip_id, footage=True)
        if clip.duration_ms is not None and at_ms > clip.duration_ms:
            raise InvalidInput(f"the clip is only {clip.duration_ms} ms long")
        b = Bookmark(
            clip_id=clip.id,
            user_id=principal.user_id,
            at_ms=at_ms,
            note=note,
            created_at=clock.now(),
        )
        s.add(b)
        s.flush()
        # The permanent log commits to the note by its hash, not its words: the note is
        # for its author's side only (evidence.access.side), and bundles carry the log.
        ctx.ledger.append_in(
            s,
            "clip.bookmarked",
            actor=principal.actor,
            subject={"clip": clip.id, "user": principal.user_id},
            bookmark=b.id,
            at_ms=at_ms,
            side=side(principal.role),
            note_sha256=hashlib.sha256(note.encode()).hexdigest(),
        )
        return {"id": b.id, "at_ms": at_ms, "note": note, "created_at": _iso(b.created_at)}
