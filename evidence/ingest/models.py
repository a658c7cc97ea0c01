from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence.db import Base
from evidence.types import UTCDateTime, new_id


class UploadState(enum.StrEnum):
    pending = "pending"  # declared; parts may be arriving
    processing = "processing"  # complete; a worker verifies and processes
    stored = "stored"  # verified and promoted to originals/
    duplicate = "duplicate"  # these bytes were already stored: nothing was uploaded
    rejected = "rejected"  # bytes did not hash to the declared sha256; kept in quarantine/
    abandoned = "abandoned"  # pending with no sign of life for too long; its parts dropped


class Upload(Base):
    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_device_sha_state", "device_id", "sha256", "state"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    sha256: Mapped[str] = mapped_column(String(64))  # as declared by the dock
    size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(255))
    sidecar: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Where the dock found the file: {path, volume_label, volume_uuid} (bounded text), which
    # the camera attribution reads (docs/cameras.md).
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    # The object store's multipart upload id; None for a single presigned PUT.
    multipart_id: Mapped[str | None] = mapped_column(String(255))
    part_size: Mapped[int] = mapped_column(BigInteger)
    clip_id: Mapped[str | None] = mapped_column(ForeignKey("clips.id"), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set by the worker while it processes; the stalled-upload sweep skips live ones.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def incoming_key(self) -> str:
        return f"incoming/{self.id}"
