from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence.db import Base
from evidence.types import UTCDateTime, new_id


class FileState(enum.StrEnum):
    receiving = "receiving"  # chunks arriving
    received = "received"  # joined, hashed, kept in quarantine; awaiting review
    refused = "refused"  # not a kind of file we take (sniffed), or too big: nothing kept
    accepted = "accepted"  # an evidence officer took it in: it is a clip now
    rejected = "rejected"  # an evidence officer turned it down: kept until retain_until
    disposed = "disposed"  # a rejected file whose retention ran out: bytes deleted


class Invitation(Base):
    """A one-time link for a member of the public; only the token's SHA-256 is kept."""

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    reference: Mapped[str | None] = mapped_column(String(64))  # an incident reference
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    max_files: Mapped[int] = mapped_column(Integer)
    max_bytes: Mapped[int] = mapped_column(BigInteger)
    # {name, phone, email}, each bounded; never in the ledger (personal data).
    contact: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The submission: the person's description and where it came from, set when they finish.
    description: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(String(256))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SubmissionFile(Base):
    """One file a member of the public sent through an invitation."""

    __tablename__ = "submission_files"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    invitation_id: Mapped[str] = mapped_column(ForeignKey("invitations.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)  # declared; every chunk is checked against it
    chunk_size: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str | None] = mapped_column(String(32))  # sniffed from the bytes: video, ...
    media_type: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    sha256: Mapped[str | None] = mapped_column(String(64))  # hashed here, as the bytes arrived
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    clip_id: Mapped[str | None] = mapped_column(ForeignKey("clips.id"))
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    retain_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def quarantine_key(self) -> str:
        return f"quarantine/public/{self.id}"

    def chunk_key(self, number: int) -> str:
        return f"incoming/public/{self.id}/{number:06d}"

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk_size))
