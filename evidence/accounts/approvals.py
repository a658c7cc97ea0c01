"""The two-person rule: a change that opens footage, or makes another administrator, takes
effect only when a second administrator approves it.

What needs a second person:

- an account whose role opens footage by itself or administers the store (`NEEDS_APPROVAL`:
  officer, evidence officer, admin), when it is created through the API or UI and again
  after an administrator forced a reset of its password (whoever opened the link is not
  known to be its owner until someone else vouches for it);
- a role change to one of those roles (the old role holds until then; taking a role away
  is immediate, it only closes);
- an auditor's footage grant (evidence/audit.py).

CPS and auditor accounts open no footage by themselves (a CPS lawyer sees what an evidence
officer shared, an auditor what a grant allows), so they take effect at once.

The second person is another admin: never the one who asked, never the account concerned.
A pending change opens nothing. Each step is a ledger entry (`approval.requested`,
`approval.approved`, `approval.refused`) and an alert auditors see (alerts.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased

from evidence import clock
from evidence.access import Principal, require
from evidence.accounts.models import AccountRequest, Enrolment, Role, User
from evidence.cases.models import AccessGrant
from evidence.context import Context
from evidence.errors import Conflict, NotFound
from evidence.ledger.service import Ledger

NEEDS_APPROVAL = frozenset({Role.officer.value, Role.evidence_officer.value, Role.admin.value})
KINDS = ("account", "role", "grant")
PENDING, APPROVED, REFUSED, WITHDRAWN = "pending", "approved", "refused", "withdrawn"


def needs_approval(role: str) -> bool:
    return role in NEEDS_APPROVAL


def request_in(
    s: Session,
    ledger: Ledger,
    *,
    kind: str,
    user: User,
    by: Principal,
    role: str | None = None,
    grant: AccessGrant | None = None,
) -> AccountRequest:
    """Record a change waiting for a second administrator, inside the caller's transaction.
    An earlier pending request of the same kind for the same account is withdrawn: only the
    latest one can be approved."""
    assert kind in KINDS
    if kind != "grant":
        for old in s.scalars(
            select(AccountRequest).where(
                AccountRequest.user_id == user.id,
                AccountRequest.kind == kind,
                AccountRequest.state == PENDING,
            )
        ):
            old.state, old.decided_at = WITHDRAWN, clock.now()
    req = AccountRequest(
        kind=kind,
        user_id=user.id,
        role=role,
        grant_id=grant.id if grant else None,
        requested_by=by.user_id,
        requested_at=clock.now(),
        state=PENDING,
    )
    s.add(req)
    s.flush()
    ledger.append_in(
        s,
        "approval.requested",
        actor=by.actor,
        subject=_subject(req, by.user_id),
        kind=kind,
        username=user.username,
        role=role,
    )
    return req


def _subject(req: AccountRequest, *people: str | None) -> dict[str, Any]:
    users = [req.user_id, *(p for p in people if p and p != req.user_id)]
    subject: dict[str, Any] = {"request": req.id, "user": users if len(users) > 1 else users[0]}
    if req.grant_id:
        subject["grant"] = req.grant_id
    return subject


def list_pending(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    """Pending changes, oldest first; `mine` marks those this admin asked for (which only
    another admin can approve)."""
    require(principal, "accounts.approve")
    target, asker = aliased(User), aliased(User)
    q = (
        select(
            AccountRequest,
            target.username,
            target.officer_id,
            target.role,
            asker.username,
            AccessGrant,
        )
        .join(target, target.id == AccountRequest.user_id)
        .outerjoin(asker, asker.id == AccountRequest.requested_by)
        .outerjoin(AccessGrant, AccessGrant.id == AccountRequest.grant_id)
        .where(AccountRequest.state == PENDING)
        .order_by(AccountRequest.requested_at, AccountRequest.id)
    )
    with ctx.db.session() as s:
        rows = s.execute(q).all()
    out = []
    for req, username, officer_id, current_role, asked_by, grant in rows:
        item: dict[str, Any] = {
            "id": req.id,
            "kind": req.kind,
            "username": username,
            "officer_id": officer_id,
            "role": req.role,
            "current_role": current_role,
            "requested_by": asked_by,
            "requested_at": clock.rfc3339(req.requested_at),
            "mine": req.requested_by == principal.user_id,
            "about_me": req.user_id == principal.user_id,
        }
        if grant is not None:
            item.update(
                clip_id=grant.clip_id,
                case_id=grant.case_id,
                reason=grant.reason,
                expires_at=clock.rfc3339(grant.expires_at),
            )
        out.append(item)
    return out


def decide(ctx: Context, principal: Principal, request_id: str, *, approve: bool) -> dict[str, Any]:
    """Approve or refuse a pending change, as the second person. Conflict when the caller
    asked for it or is the account concerned, or the change was already decided."""
    require(principal, "accounts.approve")
    with ctx.db.write_session() as s:
        req = s.scalar(
            select(AccountRequest).where(AccountRequest.id == request_id).with_for_update()
        )
        if req is None:
            raise NotFound(f"no pending change {request_id}")
        if req.state != PENDING:
            raise Conflict(f"this change was already {req.state}")
        if req.requested_by == principal.user_id:
            raise Conflict(
                "you asked for this change: another administrator must approve or refuse it"
            )
        if req.user_id == principal.user_id:
            raise Conflict(
                "this change is about your own account: another administrator must decide it"
            )
        user = s.get(User, req.user_id)
        assert user is not None
        now = clock.now()
        req.state, req.decided_by, req.decided_at = (
            APPROVED if approve else REFUSED,
            principal.user_id,
            now,
        )
        _apply(s, req, user, principal, approve)
        ctx.ledger.append_in(
            s,
            "approval.approved" if approve else "approval.refused",
            actor=principal.actor,
            subject=_subject(req, req.requested_by, principal.user_id),
            kind=req.kind,
            username=user.username,
            role=req.role,
        )
        return {"id": req.id, "kind": req.kind, "state": req.state, "username": user.username}


def _apply(s: Session, req: AccountRequest, user: User, by: Principal, approve: bool) -> None:
    now = clock.now()
    if req.kind == "account":
        if approve:
            user.approved = True
        else:
            # A refused account stays shut: its links are spent and it is disabled, so a
            # later role change cannot bring it back without another request.
            user.disabled = True
            s.execute(
                update(Enrolment)
                .where(Enrolment.user_id == user.id, Enrolment.used_at.is_(None))
                .values(expires_at=now)
            )
    elif req.kind == "role":
        if approve:
            if req.role == Role.officer.value and not user.officer_id:
                raise Conflict(f"{user.username} has no officer id, which an officer needs")
            user.role = str(req.role)
    else:
        grant = s.get(AccessGrant, req.grant_id)
        assert grant is not None
        if grant.revoked_at is not None or grant.expires_at <= now:
            raise Conflict("this grant has ended already")
        if approve:
            grant.approved_by, grant.approved_at = by.user_id, now
        else:
            grant.revoked_at = now


def pending_role(s: Session, user_id: str) -> str | None:
    """The role an account is waiting to be given, if any."""
    return s.scalar(
        select(AccountRequest.role).where(
            AccountRequest.user_id == user_id,
            AccountRequest.kind == "role",
            AccountRequest.state == PENDING,
        )
    )
