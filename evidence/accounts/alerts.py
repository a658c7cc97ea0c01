"""Alerts for auditors: every change to who may do what, read straight from the ledger.

An alert is a ledger entry of one of `ALERT_TYPES`: accounts made, provisioned, changed,
reset, unlocked or enrolled; two-factor sign-in turned on or off; each step of the
two-person rule; footage grants. Because they are ledger entries they cannot be deleted or
edited by anyone, the administrators included; the auditor's list (GET /api/v1/audit/alerts,
the Alerts page) is a view of them, newest first. Signing in and viewing footage are not
alerts: they are in the access log (evidence/audit.py).
"""

from __future__ import annotations

from typing import Any

from evidence.access import Principal
from evidence.audit import newest_entries
from evidence.context import Context
from evidence.ledger import catalogue

ALERT_TYPES = (
    "user.created",
    "user.provisioned",
    "user.updated",
    "user.reset",
    "user.unlocked",
    "user.organisation_set",  # opens to them whatever is disclosed to the organisation
    "user.enrolment_issued",
    "user.enrolled",
    "user.password_changed",
    "user.totp_enabled",
    "user.recovery_codes_issued",
    "approval.requested",
    "approval.approved",
    "approval.refused",
    "grant.created",
    "grant.revoked",
)
catalogue.require_listed(ALERT_TYPES)


def list_alerts(
    ctx: Context, principal: Principal, *, limit: int = 100, before: int | None = None
) -> list[dict[str, Any]]:
    """Alert entries, newest first; page with `before` (a ledger index)."""
    return newest_entries(ctx, principal, ALERT_TYPES, limit=limit, before=before)
