"""Shares: disclosing a case, or chosen exhibits of it, to a person (a CPS lawyer, a partner
agency's or a defence firm's user) or to an organisation (all its members), for a purpose and
on a legal basis, until it expires or is revoked. Each exhibit may be given as its redacted
copy only. Every share and revocation is a ledger entry (docs/disclosure.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence import clock, notifications, outbox, queue
from evidence.access import (
    RECIPIENT_ROLES,
    Principal,
    require,
    visible_case,
)
from evidence.accounts.models import Organisation, User
from evidence.cases.models import CaseItem, Share, ShareExhibit
from evidence.context import Context
from evidence.errors import InvalidInput, NotFound
from evidence.retention import service as retention

MAX_SHARE = dt.timedelta(days=366)
MAX_TEXT = 200
MAX_EXHIBITS = 500


def bounded(text: str | None, what: str) -> str:
    """A purpose or legal basis as the ledger keeps it: one line of 3-200 characters."""
    value = " ".join((text or "").split())
    if not 3 <= len(value) <= MAX_TEXT or not value.isprintable():
        raise InvalidInput(
            f"a share needs {what} of 3-{MAX_TEXT} characters (it goes in the ledger)"
        )
    return value


def _check_expiry(expires_at: dt.datetime, now: dt.datetime) -> None:
    if expires_at.tzinfo is None:
        raise InvalidInput("expires_at needs a timezone (e.g. 2027-01-31T17:00:00Z)")
    if not now < expires_at <= now + MAX_SHARE:
        raise InvalidInput("a share expires in the future, within a year")


def _recipient(
    s: Session, username: str | None, organisation_id: str | None
) -> tuple[User | None, Organisation | None]:
    if (username is None) == (organisation_id is None):
        raise InvalidInput("share with one person (username) or one organisation (organisation_id)")
    if username is not None:
        user = s.scalar(select(User).where(User.username == username))
        if user is None or user.role not in RECIPIENT_ROLES:
            raise NotFound(
                f"no recipient {username!r}: cases are shared with CPS or external users "
                "(an administrator gives a partner's or defence lawyer's account the role "
                "external)"
            )
        return user, None
    org = s.get(Organisation, organisation_id)
    if org is None:
        raise NotFound(f"no organisation {organisation_id}")
    return None, org


def _exhibits(
    s: Session, case_id: str, clip_ids: list[str] | None, redacted_only: list[str]
) -> tuple[list[str], list[str]]:
    """(chosen exhibits, [] for the whole case; redacted-only ones), checked against the case."""
    in_case = set(s.scalars(select(CaseItem.clip_id).where(CaseItem.case_id == case_id)))
    chosen = list(dict.fromkeys(clip_ids or []))
    redacted = list(dict.fromkeys(redacted_only))
    if len(chosen) > MAX_EXHIBITS or len(redacted) > MAX_EXHIBITS:
        raise InvalidInput(f"a share names at most {MAX_EXHIBITS} exhibits")
    if clip_ids is not None and not chosen:
        raise InvalidInput("choose at least one exhibit, or share the whole case")
    stray = [c for c in [*chosen, *redacted] if c not in in_case]
    if stray:
        raise NotFound(f"clip {stray[0]} is not an exhibit in this case")
    outside = [c for c in redacted if chosen and c not in chosen]
    if outside:
        raise InvalidInput(f"clip {outside[0]} is marked redacted-only but is not shared")
    return chosen, redacted


def share_case(
    ctx: Context,
    principal: Principal,
    case_id: str,
    *,
    expires_at: dt.datetime,
    purpose: str,
    legal_basis: str,
    username: str | None = None,
    organisation_id: str | None = None,
    clip_ids: list[str] | None = None,
    redacted_only: list[str] | None = None,
    watermark: bool = False,
) -> dict[str, Any]:
    """Disclose the case (`clip_ids` None) or the chosen exhibits to a person or an
    organisation; `redacted_only`: exhibits whose original stays out of the recipient's reach."""
    require(principal, "shares.manage")
    now = clock.now()
    _check_expiry(expires_at, now)
    purpose, legal_basis = bounded(purpose, "a purpose"), bounded(legal_basis, "a legal basis")
    with ctx.db.write_session() as s:
        case = visible_case(s, principal, case_id)
        user, org = _recipient(s, username, organisation_id)
        chosen, redacted = _exhibits(s, case.id, clip_ids, redacted_only or [])
        share = Share(
            case_id=case.id,
            user_id=user.id if user else None,
            organisation_id=org.id if org else None,
            purpose=purpose,
            legal_basis=legal_basis,
            whole_case=not chosen,
            watermark=watermark,
            expires_at=expires_at,
            created_by=principal.user_id,
            created_at=now,
        )
        s.add(share)
        s.flush()
        for clip_id in dict.fromkeys([*chosen, *redacted]):
            s.add(
                ShareExhibit(share_id=share.id, clip_id=clip_id, redacted_only=clip_id in redacted)
            )
        people = [*([user.id] if user else []), principal.user_id]
        ctx.ledger.append_in(
            s,
            "share.created",
            actor=principal.actor,
            subject={
                "share": share.id,
                "case": case.id,
                "user": people,
                **({"organisation": org.id} if org else {}),
                **({"clip": sorted({*chosen, *redacted})} if chosen or redacted else {}),
            },
            recipient=user.username if user else None,
            recipient_role=user.role if user else None,
            organisation=org.name if org else None,
            organisation_kind=org.kind if org else None,
            purpose=purpose,
            legal_basis=legal_basis,
            exhibits=chosen or "all",
            redacted_only=redacted,
            watermark=watermark,
            expires_at=clock.rfc3339(expires_at),
            reference=case.reference,
        )
        s.flush()
        if watermark:  # the worker makes the copies, after this commits
            outbox.add(s, queue.MAKE_WATERMARKS, share.id)
        # The recipients are told by e-mail, if the store sends any (queued with the share).
        for recipient_id in _recipients(s, user, org):
            notifications.notify_in(
                s,
                ctx.settings,
                notifications.SHARE_CREATED,
                recipient_id,
                case_id=case.id,
                detail=f"{expires_at.astimezone(dt.UTC):%d %B %Y %H:%M} UTC",
            )
        # Shared footage is kept while it is shared, even from a closed case.
        changed = retention.reschedule_exhibits(ctx, s, case.id, actor=principal.actor)
        out = _share_dict(s, share)
    retention.sync_storage_protection(ctx, changed)
    return out


def _recipients(s: Session, user: User | None, org: Organisation | None) -> list[str]:
    """Who a share opens the case to: the person, or the organisation's members."""
    if user is not None:
        return [user.id]
    assert org is not None
    return list(s.scalars(select(User.id).where(User.organisation_id == org.id)))


def _share_dict(s: Session, share: Share) -> dict[str, Any]:
    user = s.get(User, share.user_id) if share.user_id else None
    org = s.get(Organisation, share.organisation_id) if share.organisation_id else None
    rows = s.execute(
        select(ShareExhibit.clip_id, ShareExhibit.redacted_only).where(
            ShareExhibit.share_id == share.id
        )
    ).all()
    return {
        "id": share.id,
        "case_id": share.case_id,
        "username": user.username if user else None,
        "organisation_id": org.id if org else None,
        "organisation": org.name if org else None,
        "organisation_kind": org.kind if org else None,
        "purpose": share.purpose,
        "legal_basis": share.legal_basis,
        "whole_case": share.whole_case,
        "watermark": share.watermark,
        "clip_ids": None if share.whole_case else sorted(c for c, _ in rows),
        "redacted_only": sorted(c for c, r in rows if r),
        "expires_at": clock.rfc3339(share.expires_at),
        "revoked_at": clock.rfc3339(share.revoked_at) if share.revoked_at else None,
        "active": share.revoked_at is None and share.expires_at > clock.now(),
    }


def revoke_share(ctx: Context, principal: Principal, share_id: str) -> None:
    require(principal, "shares.manage")
    with ctx.db.write_session() as s:
        share = s.get(Share, share_id)
        if share is None:
            raise NotFound(f"no share {share_id}")
        visible_case(s, principal, share.case_id)
        if share.revoked_at is not None:
            return
        share.revoked_at = clock.now()
        people = [*([share.user_id] if share.user_id else []), principal.user_id]
        ctx.ledger.append_in(
            s,
            "share.revoked",
            actor=principal.actor,
            subject={
                "share": share.id,
                "case": share.case_id,
                "user": people,
                **({"organisation": share.organisation_id} if share.organisation_id else {}),
            },
            purpose=share.purpose,
        )
        s.flush()
        changed = retention.reschedule_exhibits(ctx, s, share.case_id, actor=principal.actor)
    retention.sync_storage_protection(ctx, changed)


def shares_of(ctx: Context, principal: Principal, case_id: str) -> list[dict[str, Any]]:
    require(principal, "shares.manage")
    with ctx.db.session() as s:
        visible_case(s, principal, case_id)
        rows = s.scalars(select(Share).where(Share.case_id == case_id).order_by(Share.created_at))
        return [_share_dict(s, share) for share in rows]
