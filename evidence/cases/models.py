from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from evidence.db import Base
from evidence.types import UTCDateTime, new_id


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(255))
    reference: Mapped[str] = mapped_column(String(100), index=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Closed: the case is concluded and its exhibits follow their categories' retention rules
    # again, after review (evidence/retention). Reopening clears both.
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))


class CaseItem(Base):
    __tablename__ = "case_items"
    __table_args__ = (UniqueConstraint("case_id", "clip_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), index=True)
    # The exhibit reference a court uses, e.g. "JS/1" (initials and number); editable.
    exhibit_ref: Mapped[str | None] = mapped_column(String(32))
    added_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Share(Base):
    """A disclosure: a case, or chosen exhibits of it, opened to one person or to every member
    of an organisation, for a purpose and on a legal basis, until it expires or is revoked."""

    __tablename__ = "shares"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    # Exactly one of the two: a person, or an organisation (all its members).
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    organisation_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(200))
    legal_basis: Mapped[str] = mapped_column(String(200))
    # True: every exhibit of the case (also those added later); False: the share_exhibits rows.
    whole_case: Mapped[bool] = mapped_column(Boolean, default=True)
    # True: each exhibit also gets a copy with the recipient and the share drawn on it
    # (evidence/cases/watermarks.py).
    watermark: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


WATERMARK_PREFIX = "watermark-"


def watermark_kind(share_id: str) -> str:
    """The derivative kind of a share's watermarked copies (fits the 32-character column)."""
    return WATERMARK_PREFIX + share_id.replace("-", "")[:20]


class ShareExhibit(Base):
    """An exhibit chosen for a share, or (whole-case shares too) one given as redacted only."""

    __tablename__ = "share_exhibits"

    share_id: Mapped[str] = mapped_column(ForeignKey("shares.id"), primary_key=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id"), primary_key=True, index=True)
    # The recipient gets the redacted copy only: the original is out of their reach.
    redacted_only: Mapped[bool] = mapped_column(Boolean, default=False)


class CaseMember(Base):
    """A user working on a case: membership grants access to the case's clips."""

    __tablename__ = "case_members"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    added_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AccessGrant(Base):
    """An explicit grant of footage access (an auditor's, who otherwise sees none)."""

    __tablename__ = "access_grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    clip_id: Mapped[str | None] = mapped_column(ForeignKey("clips.id"), index=True)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    granted_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A grant opens footage only once a second administrator approved it (two-person rule).
    approved_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
