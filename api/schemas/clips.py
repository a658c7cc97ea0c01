"""Clips: search pages, the clip's detail and custody, annotations, attribution
(evidence/clips/service.py, evidence/cameras/service.py, evidence/redactions.py)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from api.schemas import Out
from api.schemas.retention import ClipRetentionOut


class ClipSummaryOut(Out):
    """One clip in search results (evidence.clips.service.summary). Times are RFC 3339."""

    id: str
    filename: str | None
    state: str
    sha256: str
    size: int
    officer_id: str | None
    device_id: str | None
    camera_serial: str | None
    recorded_at: str | None
    ingested_at: str | None
    category: str | None
    tags: list[str]
    duration_ms: int | None
    width: int | None
    height: int | None
    playable: bool


# The two pages below are kept apart on purpose: each is due to become keyset paging
# (`items` and `next_before`) on its own.
class ClipPageOut(Out):
    """GET /clips: one page of the clips the caller may see, newest recording first."""

    items: list[ClipSummaryOut]
    next_before: str | None = Field(
        description="the cursor of the next (older) page; null on the last"
    )


class UnattributedClipOut(ClipSummaryOut):
    camera_how: str | None


class UnattributedPageOut(Out):
    """GET /clips/unattributed: the evidence officers' queue, newest docked first."""

    items: list[UnattributedClipOut]
    next_before: str | None = Field(
        description="the cursor of the next (older) page; null on the last"
    )


class OriginalOut(Out):
    key: str
    sha256: str
    size: int


class DerivativeOut(Out):
    kind: str
    sha256: str
    size: int
    recipe: dict[str, Any]  # ffmpeg's version, arguments and input hash (docs/media.md)
    created_at: str | None


class BookmarkOut(Out):
    id: str
    at_ms: int
    note: str
    created_at: str | None


class ScrubOut(Out):
    status: str  # unchecked, ok or failed
    checked_at: str | None
    error: str | None


class IntegrityOut(Out):
    status: str  # verified, pending, MISMATCH or FAILED
    detail: str
    scrub: ScrubOut


class CustodyItemOut(Out):
    """One ledger entry about the clip, with its leaf hash and where its proof is."""

    index: int
    type: str | None
    at: str | None
    actor: str | None
    entry: dict[str, Any]  # the entry as the ledger holds it, less any `withheld` fields
    leaf_hash: str
    leaf_matches: bool
    proof: str
    withheld: list[str] | None = None  # present only when the policy withheld fields


class ClipDetailOut(ClipSummaryOut):
    """GET /clips/{id}: what the policy lets the caller read about one clip."""

    retention: ClipRetentionOut
    names: list[str]
    camera_how: str | None
    officer_how: str | None
    container: str | None
    video_codec: str | None
    audio_codec: str | None
    frame_rate: str | None
    rotation: int | None
    gps: dict[str, Any] | None
    sidecar: dict[str, Any] | None
    media_error: str | None
    original: OriginalOut
    derivatives: list[DerivativeOut]
    bookmarks: list[BookmarkOut]
    integrity: IntegrityOut
    custody: list[CustodyItemOut]


class TagsOut(Out):
    tags: list[str]


class CategoriesOut(Out):
    categories: list[str]
    reasons: list[str]  # the reasons a viewer may give for playing footage


class RedactionRequestedOut(Out):
    kind: str  # redaction-N, the derivative it will become
    state: str


class AttributionOut(Out):
    """One attribution of a clip to a camera and an officer, and how it was reached."""

    at: str | None
    actor: str
    camera_serial: str | None
    camera_how: str | None
    officer_id: str | None
    officer_how: str | None
    reason: str | None


class AttributionHistoryOut(Out):
    items: list[AttributionOut]
