"""Watermarked copies for a share: for each exhibit it discloses, a copy with the recipient
and the share drawn on the picture (evidence/media/watermark.py), made from the redacted copy
when the share gives the exhibit as redacted only, else from the original. Each is a
derivative (`watermark-…`) with its recipe and the text, input and font in its
`derivative.created` entry, playable only by that share's recipients (docs/disclosure.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from evidence.accounts.models import Organisation, User
from evidence.cases.models import CaseItem, Share, ShareExhibit, watermark_kind
from evidence.clips.derivatives import record_derivative
from evidence.clips.models import Clip, ClipState, Derivative
from evidence.context import Context
from evidence.errors import HashMismatch, NotFound
from evidence.ingest.service import local_copy
from evidence.media.watermark import FONT, font_sha256, watermark, watermark_text
from evidence.redactions import KIND_PREFIX as REDACTION
from evidence.storage import original_key


def _recipient(share: Share, user: User | None, org: Organisation | None) -> str:
    who = org.name if org else (user.full_name or user.username) if user else "unknown"
    return watermark_text(f"Disclosed to {who} - share {share.id[:8]} - not for onward disclosure")


def _inputs(s: Any, share: Share) -> list[tuple[Clip, str, str, str]]:
    """(clip, input key, input sha256, input kind) for each exhibit of the share."""
    rows = dict(
        s.execute(
            select(ShareExhibit.clip_id, ShareExhibit.redacted_only).where(
                ShareExhibit.share_id == share.id
            )
        ).all()
    )
    clips = s.scalars(
        select(Clip)
        .join(CaseItem, CaseItem.clip_id == Clip.id)
        .where(CaseItem.case_id == share.case_id)
        .order_by(CaseItem.added_at, Clip.id)
    ).all()
    out = []
    for clip in clips:
        if not share.whole_case and clip.id not in rows:
            continue
        if clip.state != ClipState.ready.value or clip.disposed_at is not None:
            continue
        if rows.get(clip.id):
            redactions = s.scalars(
                select(Derivative)
                .where(Derivative.clip_id == clip.id, Derivative.kind.startswith(REDACTION))
                .order_by(Derivative.created_at.desc())
            ).all()
            if not redactions:
                continue  # nothing they may see yet: made when asked again after a redaction
            d = redactions[0]
            out.append((clip, d.key, d.sha256, d.kind))
        else:
            out.append((clip, original_key(clip.sha256), clip.sha256, "original"))
    return out


def make_watermarks(ctx: Context, share_id: str) -> list[dict[str, Any]]:
    """The worker's job: a watermarked copy of each exhibit of the share. Idempotent: a copy
    already recorded is left as it is."""
    kind = watermark_kind(share_id)
    with ctx.db.session() as s:
        share = s.get(Share, share_id)
        if share is None:
            raise NotFound(f"no share {share_id}")
        user = s.get(User, share.user_id) if share.user_id else None
        org = s.get(Organisation, share.organisation_id) if share.organisation_id else None
        text = _recipient(share, user, org)
        todo = [
            (clip.id, clip.filename, key, sha, made_from)
            for clip, key, sha, made_from in _inputs(s, share)
            if not s.scalar(
                select(Derivative.id).where(Derivative.clip_id == clip.id, Derivative.kind == kind)
            )
        ]
    font = font_sha256()
    made = []
    for clip_id, filename, key, sha256, made_from in todo:
        with local_copy(ctx, key, filename) as (path, actual):
            if actual != sha256:
                raise HashMismatch(
                    f"the {made_from} of clip {clip_id} hashes to {actual}, not {sha256}: "
                    "no watermarked copy is made from it (run evidence scrub)",
                    expected=sha256,
                    actual=actual,
                )
            out = path.parent / f"{kind}.mp4"
            recipe = watermark(path, out, text, input_sha256=sha256)
            with out.open("rb") as f:
                stored = ctx.store.put(
                    f"derived/{clip_id}/{kind}",
                    f,
                    expected_sha256=recipe.output_sha256,
                    write_once=True,
                )
        record_derivative(
            ctx,
            clip_id,
            kind,
            f"derived/{clip_id}/{kind}",
            stored.sha256,
            stored.size,
            recipe,
            watermark={
                "share": share_id,
                "text": text,
                "made_from": made_from,
                "font": FONT.name,
                "font_sha256": font,
            },
        )
        made.append({"clip_id": clip_id, "kind": kind, "sha256": stored.sha256})
    return made
