from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from evidence.db import Base
from evidence.types import UTCDateTime, new_id


class ClipState(enum.StrEnum):
    uploading = "uploading"
    verifying = "verifying"
    stored = "stored"  # original verified and write-once; derivatives may follow
    ready = "ready"  # proxy and thumbnail made
    unplayable = "unplayable"  # kept as an original, flagged: ffmpeg could not read it
    rejected = "rejected"  # bytes did not match the declared hash; nothing promoted
    disposed = "disposed"  # deleted under retention policy; the ledger keeps its tombstone


PUBLIC_SUBMISSION = "public submission"
"""The category of a clip a member of the public sent and an evidence officer accepted
(docs/public-submissions.md): no camera recorded it, so no officer is attributed to it."""


class Clip(Base):
    __tablename__ = "clips"
    # Lists are newest recorded first, then by id, paged by a cursor on both (docs/search.md):
    # these indexes give each page in order without sorting or counting the rest.
    __table_args__ = (
        Index("ix_clips_recorded_at_id", "recorded_at", "id"),
        Index("ix_clips_officer_id_recorded_at_id", "officer_id", "recorded_at", "id"),
        Index("ix_clips_state_recorded_at_id", "state", "recorded_at", "id"),
        Index("ix_clips_category_recorded_at_id", "category", "recorded_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # The same bytes docked twice are one clip: the original's hash is unique.
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str | None] = mapped_column(String(255))
    officer_id: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), index=True)
    camera_serial: Mapped[str | None] = mapped_column(String(64))
    # How the current camera and officer were worked out (evidence/cameras/attribution.py);
    # the history of attributions is in clip_attributions.
    camera_how: Mapped[str | None] = mapped_column(Text)
    officer_how: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ingested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    category: Mapped[str | None] = mapped_column(String(64))
    # Media facts from ffprobe; rationals stay strings ("30000/1001") so nothing is rounded.
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    container: Mapped[str | None] = mapped_column(String(64))
    video_codec: Mapped[str | None] = mapped_column(String(32))
    audio_codec: Mapped[str | None] = mapped_column(String(32))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    frame_rate: Mapped[str | None] = mapped_column(String(32))
    rotation: Mapped[int | None] = mapped_column(Integer)
    gps: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sidecar: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    media_error: Mapped[str | None] = mapped_column(Text)
    # Retention (evidence/retention): when the clip falls due for disposal or review, and the
    # date its original is locked until in storage (only ever extended).
    retain_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retention_rule: Mapped[str | None] = mapped_column(
        String(120)
    )  # e.g. "non-evidential: 31 days"
    disposed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The scrubber's verdict on the stored bytes (evidence/scrub/service.py).
    integrity: Mapped[str] = mapped_column(
        String(16), default="unchecked", server_default="unchecked"
    )
    integrity_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    integrity_error: Mapped[str | None] = mapped_column(Text)

    derivatives: Mapped[list[Derivative]] = relationship(back_populates="clip")


class Derivative(Base):
    __tablename__ = "derivatives"
    __table_args__ = (UniqueConstraint("clip_id", "kind"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # proxy, thumbnail, redaction-...
    key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    # How it was made: ffmpeg version, exact arguments, input hash (the court will ask).
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    clip: Mapped[Clip] = relationship(back_populates="derivatives")


class ClipTag(Base):
    """A free incident tag on a clip (categories are the clip's `category` column)."""

    __tablename__ = "clip_tags"

    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    added_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Bookmark(Base):
    """A time-coded note on a clip ("00:01:23 suspect enters")."""

    __tablename__ = "bookmarks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
