"""The auditors' access log, footage grants, and who am I (evidence/audit.py)."""

from __future__ import annotations

from api.schemas import Out
from api.schemas.ledger import LedgerEntryOut


class AccessLogOut(Out):
    """Newest first; `next_before` is the `before` of the next page (null: no more)."""

    items: list[LedgerEntryOut]
    next_before: int | None


class GrantOut(Out):
    """A footage grant, requested: it opens footage once a second person approves it."""

    id: str
    username: str
    clip_id: str | None
    case_id: str | None
    expires_at: str
    pending: bool
    request_id: str


class MeOut(Out):
    username: str
    role: str
    officer_id: str | None
    may: list[str]  # the actions of evidence.access.ACTIONS this role may take


class AlertsOut(Out):
    """Changes to accounts, roles, approvals and grants, newest first (ledger entries)."""

    items: list[LedgerEntryOut]
