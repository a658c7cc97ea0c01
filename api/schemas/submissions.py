"""Public submissions: invitations, the public link's files and receipt, the review queue
(evidence/submissions/service.py; docs/public-submissions.md)."""

from __future__ import annotations

from api.schemas import Out


class InvitationIssuedOut(Out):
    """201: the link to hand to the member of the public, shown once (only its hash is kept)."""

    id: str
    url: str
    expires_at: str
    max_files: int
    max_bytes: int


class ContactOut(Out):
    name: str | None = None
    phone: str | None = None
    email: str | None = None


class InvitationOut(Out):
    id: str
    case_id: str | None
    reference: str | None
    created_at: str
    expires_at: str
    max_files: int
    max_bytes: int
    contact: ContactOut | None
    state: str  # open, used, expired, withdrawn
    used_at: str | None


class InvitationListOut(Out):
    items: list[InvitationOut]


class SubmittedFileOut(Out):
    """A file sent through a public link, as its sender sees it."""

    id: str
    filename: str
    size: int
    state: str  # receiving, received, refused, ...
    chunk_size: int
    chunks: int
    received_chunks: list[int]  # while receiving: the chunks the server holds
    sha256: str | None  # hashed here, as the bytes arrived
    received_at: str | None
    error: str | None


class PublicLinkOut(Out):
    reference: str | None
    expires_at: str
    max_files: int
    max_bytes: int
    chunk_size: int
    used: bool
    files: list[SubmittedFileOut]


class ReceiptOut(Out):
    invitation_id: str
    reference: str | None
    submitted_at: str
    description: str
    files: list[SubmittedFileOut]
    ledger_index: int | None


class QueuedFileOut(Out):
    id: str
    invitation_id: str
    case_id: str | None
    reference: str | None
    filename: str
    size: int
    kind: str | None
    media_type: str | None
    sha256: str | None
    received_at: str | None
    description: str | None
    source_ip: str | None
    user_agent: str | None
    state: str
    clip_id: str | None


class ReviewQueueOut(Out):
    items: list[QueuedFileOut]


class DecisionOut(Out):
    id: str
    state: str  # accepted or rejected
    clip_id: str | None
