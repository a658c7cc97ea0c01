"""The camera register, assignments, and each clip's attribution history and docked names."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence.db import Base
from evidence.types import UTCDateTime, new_id


class CameraState(enum.StrEnum):
    in_service = "in_service"
    lost = "lost"
    retired = "retired"


class AssignmentKind(enum.StrEnum):
    personal = "personal"  # issued to one officer until further notice (ends_at open)
    pool = "pool"  # checked out from the station's pool for a shift (ends_at set)


class Camera(Base):
    __tablename__ = "cameras"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    make: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(100))
    firmware: Mapped[str | None] = mapped_column(String(64))  # as last seen in a clip
    state: Mapped[str] = mapped_column(String(16), default=CameraState.in_service.value)
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    registered_by: Mapped[str] = mapped_column(String(120))  # a ledger actor
    # Set when the register learnt of the camera from a docked clip, not from a person.
    first_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CameraAssignment(Base):
    """Who held a camera when. Rows are never rewritten, except that closing an open-ended
    personal issue sets its end once (with its own ledger entry)."""

    __tablename__ = "camera_assignments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    camera_serial: Mapped[str] = mapped_column(ForeignKey("cameras.serial"), index=True)
    officer_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # exclusive; None: open
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # when it was closed
    ended_by: Mapped[str | None] = mapped_column(String(120))


class ClipAttribution(Base):
    """One attribution of a clip to a camera and an officer, and how it was arrived at. The
    first is written at ingest; each re-attribution adds a row, none is ever edited."""

    __tablename__ = "clip_attributions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    camera_serial: Mapped[str | None] = mapped_column(String(64))
    officer_id: Mapped[str | None] = mapped_column(String(64))
    camera_how: Mapped[str | None] = mapped_column(Text)
    officer_how: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text)  # a re-attribution's (at most 500 chars)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ClipName(Base):
    """Every file name a clip was docked under: its first dock and every byte-identical twin
    docked later (which is one clip, so the clip row keeps only the first name)."""

    __tablename__ = "clip_names"

    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255), primary_key=True)
    device_id: Mapped[str | None] = mapped_column(String(36))
    first_docked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
