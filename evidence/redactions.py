"""Redacted copies of a clip: solid black boxes over parts of the picture, silence over parts
of the sound (docs/media.md, "Redactions"). The original is never changed.

An evidence officer asks for one with a reason (`request_redaction`). The request is its
`redaction.requested` ledger entry, which carries every parameter and names the derivative
it will become (`redaction-N`, the clip's N-th request); there is no other pending record.
A worker then makes it (`make_redaction`), reading the parameters back from that entry, so
what is made is exactly what was recorded: from the original, re-hashed on the way, stored
write-once at `derived/{clip_id}/redaction-N`, with its Derivative row and a
`derivative.created` entry (recipe, boxes, mute ranges, reason) in one transaction. Running
it twice does nothing twice: the kind is unique per clip.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evidence import clock, outbox, queue
from evidence.access import Principal, require, visible_clip
from evidence.clips.derivatives import record_derivative
from evidence.clips.models import Clip, ClipState, Derivative
from evidence.context import Context
from evidence.errors import Conflict, Disposed, HashMismatch, InvalidInput, MediaError, NotFound
from evidence.ingest.service import WORKER, local_copy
from evidence.ledger.models import LedgerEntry, LedgerRef
from evidence.media.redaction import check_redaction, display_size, redact
from evidence.storage import original_key

REQUESTED = "redaction.requested"
FAILED = "redaction.failed"
KIND_PREFIX = "redaction-"
REASON_MIN, REASON_MAX = 5, 500


def request_redaction(
    ctx: Context,
    principal: Principal,
    clip_id: str,
    boxes: list[dict[str, Any]],
    mute: list[dict[str, Any]],
    reason: str,
) -> dict[str, Any]:
    """Record the request (`redaction.requested`) and name the derivative it will make.

    The work (`make_redaction(clip_id, kind)`) goes to the outbox with the request. Boxes
    are checked against the picture as shown (rotation applied) and ranges against the
    clip's duration.
    """
    require(principal, "clips.redact")
    why = _check_reason(reason)
    with ctx.db.write_session() as s:
        clip = visible_clip(s, principal, clip_id, footage=True)
        _check_redactable(clip)
        width, height = display_size(clip.width or 0, clip.height or 0, clip.rotation or 0)
        checked_boxes, checked_mute = check_redaction(
            boxes,
            mute,
            width=width,
            height=height,
            duration_ms=clip.duration_ms,
            has_audio=clip.audio_codec is not None,
        )
        # Numbering is per clip: lock the clip's row (PostgreSQL; SQLite's write lock is
        # already held) so two requests at once cannot both take the same N.
        s.execute(select(Clip.id).where(Clip.id == clip.id).with_for_update())
        kind = f"{KIND_PREFIX}{_requests_so_far(s, clip.id) + 1}"
        appended = ctx.ledger.append_in(
            s,
            REQUESTED,
            actor=principal.actor,
            subject={"clip": clip.id, "user": principal.user_id},
            kind=kind,
            boxes=[b.as_dict() for b in checked_boxes],
            mute=[m.as_dict() for m in checked_mute],
            reason=why,
            role=principal.role.value,
            frame={"width": width, "height": height},
        )
        outbox.add(s, queue.MAKE_REDACTION, clip.id, kind)
    return {"clip_id": clip_id, "kind": kind, "state": "queued", "ledger_index": appended.index}


def _check_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not REASON_MIN <= len(text) <= REASON_MAX:
        raise InvalidInput(
            f"a redaction needs a reason of {REASON_MIN}-{REASON_MAX} characters: why these "
            "parts must be hidden (e.g. 'face of a bystander, not relevant to the charge')"
        )
    return text


def _check_redactable(clip: Clip) -> None:
    if clip.disposed_at is not None or clip.state == ClipState.disposed:
        raise Disposed(
            f"clip {clip.id} was disposed of under the retention policy; "
            "there is nothing left to redact"
        )
    if clip.state not in (ClipState.stored, ClipState.ready):
        raise Conflict(
            f"clip {clip.id} is {clip.state}, not playable: a redaction is made "
            "from a playable original"
        )


def _request_rows(s: Session, clip_id: str) -> list[tuple[int, bytes]]:
    rows = s.execute(
        select(LedgerEntry.idx, LedgerEntry.entry)
        .join(LedgerRef, LedgerRef.idx == LedgerEntry.idx)
        .where(LedgerRef.ref == f"clip:{clip_id}", LedgerEntry.type == REQUESTED)
        .order_by(LedgerEntry.idx)
    )
    return [(idx, entry) for idx, entry in rows]


def _requests_so_far(s: Session, clip_id: str) -> int:
    return (
        s.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .join(LedgerRef, LedgerRef.idx == LedgerEntry.idx)
            .where(LedgerRef.ref == f"clip:{clip_id}", LedgerEntry.type == REQUESTED)
        )
        or 0
    )


def requested(ctx: Context, clip_id: str, kind: str) -> tuple[int, dict[str, Any]]:
    """(ledger index, entry) of the request that names `kind` for this clip."""
    with ctx.db.session() as s:
        for idx, raw in _request_rows(s, clip_id):
            entry = json.loads(raw)
            if entry.get("kind") == kind:
                return idx, entry
    raise NotFound(f"no redaction {kind} was requested for clip {clip_id}")


def make_redaction(
    ctx: Context,
    clip_id: str,
    kind: str,
    *,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """The worker's job: make the requested redaction once. Idempotent: a redaction already
    recorded is returned as it is; a failure is recorded (`redaction.failed`) and raised."""
    done = _existing(ctx, clip_id, kind)
    if done is not None:
        return done
    index, request = requested(ctx, clip_id, kind)
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
        if clip is None:
            raise NotFound(f"no clip {clip_id}")
        _check_redactable(clip)
        sha256, filename = clip.sha256, clip.filename
    try:
        with local_copy(ctx, original_key(sha256), filename) as (path, actual):
            if actual != sha256:
                raise HashMismatch(
                    f"the original of clip {clip_id} hashes to {actual}, not the {sha256} the "
                    "ledger vouches for: no redaction is made from it (run evidence scrub)",
                    expected=sha256,
                    actual=actual,
                )
            out = path.parent / f"{kind}.mp4"
            recipe = redact(
                path,
                out,
                boxes=request["boxes"],
                mute=request["mute"],
                input_sha256=sha256,
                progress=progress,
            )
            key = f"derived/{clip_id}/{kind}"
            with out.open("rb") as f:
                # Write-once: a redelivered task makes the same bytes (the recipe is
                # deterministic) and may not replace what the ledger vouches for.
                stored = ctx.store.put(
                    key, f, expected_sha256=recipe.output_sha256, write_once=True
                )
    except (MediaError, InvalidInput, HashMismatch) as exc:
        ctx.ledger.append(
            FAILED,
            actor=WORKER,
            subject={"clip": clip_id},
            kind=kind,
            request_index=index,
            error=str(exc)[:2000],
        )
        raise
    record_derivative(
        ctx,
        clip_id,
        kind,
        key,
        stored.sha256,
        stored.size,
        recipe,
        redaction={
            "request_index": index,
            "requested_by": request["actor"],
            "reason": request["reason"],
            "boxes": request["boxes"],
            "mute": request["mute"],
        },
    )
    return _existing(ctx, clip_id, kind) or {"clip_id": clip_id, "kind": kind, "state": "ready"}


def _existing(ctx: Context, clip_id: str, kind: str) -> dict[str, Any] | None:
    with ctx.db.session() as s:
        d = s.scalar(
            select(Derivative).where(Derivative.clip_id == clip_id, Derivative.kind == kind)
        )
        if d is None:
            return None
        return {
            "clip_id": clip_id,
            "kind": kind,
            "state": "ready",
            "key": d.key,
            "sha256": d.sha256,
            "size": d.size,
        }


def lost_redactions(
    ctx: Context, older_than: dt.timedelta, within: dt.timedelta = dt.timedelta(days=30)
) -> list[tuple[str, str]]:
    """(clip id, kind) of redactions requested between `within` and `older_than` ago that
    were neither made nor recorded as failed: their task was lost. The scheduler's sweep
    (evidence/recovery.py) queues them again; making one is idempotent (write-once bytes,
    one derivative row). A failure that was recorded (`redaction.failed`) is final: the
    officer asks again."""
    now = clock.now()
    with ctx.db.session() as s:
        requests = s.execute(
            select(LedgerEntry.idx, LedgerEntry.entry).where(
                LedgerEntry.type == REQUESTED,
                LedgerEntry.at < now - older_than,
                LedgerEntry.at >= now - within,
            )
        ).all()
        failed = {
            json.loads(raw).get("request_index")
            for raw in s.scalars(
                select(LedgerEntry.entry).where(
                    LedgerEntry.type == FAILED, LedgerEntry.at >= now - within
                )
            )
        }
        lost = []
        for idx, raw in requests:
            entry = json.loads(raw)
            clip_id, kind = entry["subject"]["clip"], entry["kind"]
            if idx in failed:
                continue
            made = s.scalar(
                select(Derivative.key).where(Derivative.clip_id == clip_id, Derivative.kind == kind)
            )
            clip = s.get(Clip, clip_id)
            playable = clip is not None and clip.disposed_at is None
            if made is None and playable and clip.state in (ClipState.stored, ClipState.ready):
                lost.append((clip_id, kind))
        return lost
