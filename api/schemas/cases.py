"""Cases: the case, its exhibits and members, closing and reopening, shares
(evidence/cases/service.py)."""

from __future__ import annotations

from api.schemas import Out


class CaseOut(Out):
    id: str
    title: str
    reference: str
    created_at: str
    items: int  # how many exhibits
    state: str  # open or closed
    closed_at: str | None


class CaseListOut(Out):
    items: list[CaseOut]


class ExhibitRetentionOut(Out):
    rule: str | None
    kept_as_exhibit: bool
    retain_until: str | None


class ExhibitOut(Out):
    clip_id: str
    exhibit_ref: str | None
    filename: str | None
    sha256: str
    recorded_at: str | None
    docked_at: str
    officer_id: str | None
    state: str
    # False: disclosed to this recipient as its redacted copy only (docs/disclosure.md).
    original_available: bool
    retention: ExhibitRetentionOut


class MemberOut(Out):
    username: str
    role: str


class CaseDetailOut(CaseOut):
    exhibits: list[ExhibitOut]
    members: list[MemberOut]


class AddedExhibitOut(Out):
    clip_id: str
    exhibit_ref: str


class ItemsAddedOut(Out):
    id: str
    added: list[AddedExhibitOut]  # only the clips that were not exhibits already


class ExhibitRefOut(Out):
    clip_id: str
    exhibit_ref: str
    previous_ref: str | None


class CaseStateOut(CaseOut):
    """After closing or reopening: the case, and the clips whose schedule changed."""

    rescheduled: list[str]


class ShareOut(Out):
    """A disclosure (evidence/cases/shares.py): to one person or to an organisation."""

    id: str
    case_id: str
    username: str | None
    organisation_id: str | None
    organisation: str | None
    organisation_kind: str | None
    purpose: str
    legal_basis: str
    whole_case: bool
    watermark: bool  # each exhibit also as a copy naming the recipient and the share
    clip_ids: list[str] | None  # the chosen exhibits; None: the whole case
    redacted_only: list[str]  # exhibits given as their redacted copy only
    expires_at: str
    revoked_at: str | None
    active: bool


class ShareListOut(Out):
    items: list[ShareOut]
