from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence.db import Base
from evidence.types import UTCDateTime, new_id


class Hold(Base):
    """A legal hold on one clip or on every clip of a case. While it stands (released_at is
    None) nothing it covers is disposed of, and the originals carry an Object Lock legal hold."""

    __tablename__ = "holds"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    clip_id: Mapped[str | None] = mapped_column(ForeignKey("clips.id"), index=True)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    placed_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    placed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    release_reason: Mapped[str | None] = mapped_column(String(500))


class DisposalState(enum.StrEnum):
    pending = "pending"  # due; waiting for an evidence officer (or the policy) to decide
    approved = "approved"  # will be carried out by the next sweep (re-checked for holds then)
    disposed = "disposed"  # originals and derivatives deleted; the tombstone is in the ledger
    retained = "retained"  # a reviewer decided to keep the clip for another review period
    cancelled = "cancelled"  # no longer due (held, recategorised) before it was carried out


OPEN_DISPOSAL_STATES = (DisposalState.pending.value, DisposalState.approved.value)


class Disposal(Base):
    """One entry in the disposal review queue."""

    __tablename__ = "disposals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    rule: Mapped[str] = mapped_column(String(120))  # the policy that made it due
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(120))  # "user:jsmith" or "policy:..."
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    disposed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)  # why carrying it out failed (e.g. locked)
