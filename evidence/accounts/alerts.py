"""Alerts for auditors: every change to who may do what, read straight from the ledger.

An alert is a ledger entry of one of `ALERT_TYPES`: accounts made, provisioned, changed,
reset, unlocked or enrolled; two-factor sign-in turned on or off; each step of the
two-person rule; footage grants. Because they are ledger entries they cannot be deleted or
edited by anyone, the administrators included; the auditor's list (GET /api/v1/audit/alerts,
the Alerts page) is a view of them, newest first. Signing in and viewing footage are not
alerts: they are in the access log (evidence/audit.py).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from evidence.access import Principal, require
from evidence.context import Context
from evidence.errors import InvalidInput
from evidence.ledger.models import LedgerEntry

ALERT_TYPES = (
    "user.created", "user.provisioned", "user.updated", "user.reset", "user.unlocked",
    "user.enrolment_issued", "user.enrolled", "user.password_changed", "user.totp_enabled",
    "user.recovery_codes_issued",
    "approval.requested", "approval.approved", "approval.refused",
    "grant.created", "grant.revoked",
)


def list_alerts(ctx: Context, principal: Principal, *, limit: int = 100,
                before: int | None = None) -> list[dict[str, Any]]:
    """Alert entries, newest first; page with `before` (a ledger index)."""
    require(principal, "audit.read")
    if not 1 <= limit <= 500:
        raise InvalidInput("limit is 1 to 500")
    q = select(LedgerEntry.idx, LedgerEntry.entry).where(LedgerEntry.type.in_(ALERT_TYPES))
    if before is not None:
        q = q.where(LedgerEntry.idx < before)
    with ctx.db.session() as s:
        rows = s.execute(q.order_by(LedgerEntry.idx.desc()).limit(limit)).all()
    return [{"index": i, **json.loads(e)} for i, e in rows]
