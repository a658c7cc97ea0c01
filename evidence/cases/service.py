"""Cases: clips grouped as exhibits, with members who may work on them."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evidence import clock
from evidence.access import (
    RECIPIENT_ROLES,
    Principal,
    case_filter,
    clip_filter,
    ledger_reason,
    recipient_context,
    require,
    visible_case,
    visible_clip,
)
from evidence.accounts.models import Role, User
from evidence.cases.models import Case, CaseItem, CaseMember
from evidence.clips.models import Clip
from evidence.context import Context
from evidence.errors import Conflict, InvalidInput, NotFound
from evidence.retention import service as retention


def _case_dict(case: Case, items: int) -> dict[str, Any]:
    return {
        "id": case.id,
        "title": case.title,
        "reference": case.reference,
        "created_at": clock.rfc3339(case.created_at),
        "items": items,
        "state": "closed" if case.closed_at else "open",
        "closed_at": clock.rfc3339(case.closed_at) if case.closed_at else None,
    }


def create_case(ctx: Context, principal: Principal, title: str, reference: str) -> dict[str, Any]:
    require(principal, "cases.create")
    title, reference = title.strip(), reference.strip()
    if not 1 <= len(title) <= 255 or not 1 <= len(reference) <= 100:
        raise InvalidInput("a case needs a title (1-255 characters) and a reference (1-100)")
    with ctx.db.write_session() as s:
        case = Case(
            title=title, reference=reference, created_by=principal.user_id, created_at=clock.now()
        )
        s.add(case)
        s.flush()
        s.add(
            CaseMember(
                case_id=case.id,
                user_id=principal.user_id,
                added_by=principal.user_id,
                added_at=clock.now(),
            )
        )
        ctx.ledger.append_in(
            s,
            "case.created",
            actor=principal.actor,
            subject={"case": case.id, "user": principal.user_id},
            title=title,
            reference=reference,
        )
        return _case_dict(case, 0)


def list_cases(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    require(principal, "cases.read")
    with ctx.db.session() as s:
        # Only the exhibits they may see: a recipient of chosen exhibits learns of no others.
        counts = (
            select(CaseItem.case_id, func.count().label("n"))
            .join(Clip, Clip.id == CaseItem.clip_id)
            .where(clip_filter(principal, footage=False))
            .group_by(CaseItem.case_id)
            .subquery()
        )
        rows = s.execute(
            select(Case, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.case_id == Case.id)
            .where(case_filter(principal))
            .order_by(Case.created_at.desc())
        ).all()
        return [_case_dict(c, n) for c, n in rows]


def case_detail(ctx: Context, principal: Principal, case_id: str) -> dict[str, Any]:
    require(principal, "cases.read")
    recipient = principal.role in RECIPIENT_ROLES
    if recipient:
        _record_recipient_access(ctx, principal, case_id)
    with ctx.db.session() as s:
        case = visible_case(s, principal, case_id)
        # A recipient of chosen exhibits sees those, not the rest of the case.
        items = s.execute(
            select(CaseItem, Clip)
            .join(Clip, Clip.id == CaseItem.clip_id)
            .where(CaseItem.case_id == case.id, clip_filter(principal, footage=False))
            .order_by(CaseItem.added_at)
        ).all()
        originals = set(
            s.scalars(
                select(CaseItem.clip_id)
                .join(Clip, Clip.id == CaseItem.clip_id)
                .where(CaseItem.case_id == case.id, clip_filter(principal, footage=True))
            )
        )
        members = s.execute(
            select(User.username, User.role)
            .join(CaseMember, CaseMember.user_id == User.id)
            .where(CaseMember.case_id == case.id)
            .order_by(User.username)
        ).all()
        out = _case_dict(case, len(items))
        out["exhibits"] = [
            {
                "clip_id": clip.id,
                "exhibit_ref": item.exhibit_ref,
                "filename": clip.filename,
                "sha256": clip.sha256,
                "recorded_at": clock.rfc3339(clip.recorded_at) if clip.recorded_at else None,
                "docked_at": clock.rfc3339(clip.ingested_at),
                "officer_id": clip.officer_id,
                "state": clip.state,
                # False: the recipient has the redacted copy only (docs/disclosure.md).
                "original_available": clip.id in originals,
                # Why it is kept, or when it falls due (the case page warns before it can).
                "retention": {
                    "rule": clip.retention_rule,
                    "kept_as_exhibit": clip.retention_rule == retention.EXHIBIT_RULE,
                    "retain_until": clock.rfc3339(clip.retain_until) if clip.retain_until else None,
                },
            }
            for item, clip in items
        ]
        # The force's people working on the case are not an outside recipient's business.
        out["members"] = (
            []
            if principal.role == Role.external
            else [{"username": u, "role": r} for u, r in members]
        )
        return out


def _record_recipient_access(ctx: Context, principal: Principal, case_id: str) -> None:
    """A share recipient opening the case is recorded, like any access to evidence."""
    with ctx.db.write_session() as s:
        visible_case(s, principal, case_id)
        via = recipient_context(s, principal, case_id=case_id)
        share = via.pop("share", None)
        ctx.ledger.append_in(
            s,
            "case.accessed",
            actor=principal.actor,
            subject={
                "case": case_id,
                "user": principal.user_id,
                **({"share": share} if share else {}),
            },
            role=principal.role.value,
            **via,
        )


def add_items(
    ctx: Context, principal: Principal, case_id: str, clip_ids: list[str]
) -> dict[str, Any]:
    """Add clips as exhibits; each gets the next reference (initials of the officer/number)."""
    require(principal, "cases.manage")
    if not clip_ids or len(clip_ids) > 500:
        raise InvalidInput("give 1 to 500 clip ids")
    with ctx.db.write_session() as s:
        case = visible_case(s, principal, case_id)
        added = []
        for clip_id in dict.fromkeys(clip_ids):
            clip = visible_clip(s, principal, clip_id, footage=False)
            if s.scalar(
                select(CaseItem.id).where(CaseItem.case_id == case.id, CaseItem.clip_id == clip.id)
            ):
                continue
            ref = _next_ref(s, case.id, clip.officer_id or "EX")
            s.add(
                CaseItem(
                    case_id=case.id,
                    clip_id=clip.id,
                    exhibit_ref=ref,
                    added_by=principal.user_id,
                    added_at=clock.now(),
                )
            )
            s.flush()
            ctx.ledger.append_in(
                s,
                "case.exhibit_added",
                actor=principal.actor,
                subject={"case": case.id, "clip": clip.id, "user": principal.user_id},
                exhibit_ref=ref,
                sha256=clip.sha256,
            )
            added.append({"clip_id": clip.id, "exhibit_ref": ref})
        # An exhibit is kept from this moment, whatever its category (evidence/retention).
        changed = retention.reschedule_exhibits(ctx, s, case.id, actor=principal.actor)
    # Storage follows: a kept exhibit, or one of a held case, gets the legal hold.
    retention.sync_storage_protection(ctx, sorted({*changed, *(a["clip_id"] for a in added)}))
    return {"id": case_id, "added": added}


def close_case(ctx: Context, principal: Principal, case_id: str, reason: str) -> dict[str, Any]:
    """The case is concluded. Nothing is disposed of now: each exhibit no longer kept by
    another open or shared case is rescheduled under its category's rule, with notice, and
    will be reviewed by an evidence officer before any disposal (evidence/retention)."""
    require(principal, "cases.manage")
    reason = ledger_reason(reason, "closing a case")
    with ctx.db.write_session() as s:
        case = visible_case(s, principal, case_id)
        if case.closed_at is not None:
            raise Conflict(
                f"case {case.reference} was already closed on {clock.rfc3339(case.closed_at)}"
            )
        case.closed_at, case.closed_by = clock.now(), principal.user_id
        ctx.ledger.append_in(
            s,
            "case.closed",
            actor=principal.actor,
            subject={"case": case.id, "user": principal.user_id},
            reason=reason,
        )
        changed = retention.reschedule_exhibits(ctx, s, case.id, actor=principal.actor)
        out = _case_dict(case, 0)
    retention.sync_storage_protection(ctx, changed)
    return {**out, "rescheduled": changed}


def reopen_case(ctx: Context, principal: Principal, case_id: str, reason: str) -> dict[str, Any]:
    """Work on the case again: its exhibits are kept again and any review of them stops."""
    require(principal, "cases.manage")
    reason = ledger_reason(reason, "reopening a case")
    with ctx.db.write_session() as s:
        case = visible_case(s, principal, case_id)
        if case.closed_at is None:
            raise Conflict(f"case {case.reference} is open")
        case.closed_at, case.closed_by = None, None
        ctx.ledger.append_in(
            s,
            "case.reopened",
            actor=principal.actor,
            subject={"case": case.id, "user": principal.user_id},
            reason=reason,
        )
        changed = retention.reschedule_exhibits(ctx, s, case.id, actor=principal.actor)
        out = _case_dict(case, 0)
    retention.sync_storage_protection(ctx, changed)
    return {**out, "rescheduled": changed}


def _next_ref(s: Session, case_id: str, prefix: str) -> str:
    """`PREFIX/n` for the next n not already used in the case (refs can be edited)."""
    taken = _refs_in(s, case_id)
    n = 1 + (
        s.scalar(select(func.count()).select_from(CaseItem).where(CaseItem.case_id == case_id)) or 0
    )
    while f"{prefix}/{n}".casefold() in taken:
        n += 1
    return f"{prefix}/{n}"


def _refs_in(s: Session, case_id: str) -> set[str]:
    refs = s.scalars(select(CaseItem.exhibit_ref).where(CaseItem.case_id == case_id))
    return {r.casefold() for r in refs if r}


EXHIBIT_REF = re.compile(r"[A-Za-z0-9/.\- ]{1,32}")


def set_exhibit_ref(
    ctx: Context, principal: Principal, case_id: str, clip_id: str, exhibit_ref: str
) -> dict[str, Any]:
    """Change an exhibit's reference (e.g. JS/1 -> JS/2): unique in the case, recorded in the
    ledger as `exhibit.referenced` (a bundle takes the reference the ledger held at its pin)."""
    require(principal, "cases.manage")
    ref = " ".join((exhibit_ref or "").split())
    if not EXHIBIT_REF.fullmatch(ref):
        raise InvalidInput(
            "an exhibit reference is 1-32 characters: letters, digits, / - . and spaces"
        )
    with ctx.db.write_session() as s:
        case = visible_case(s, principal, case_id)
        item = s.scalar(
            select(CaseItem).where(CaseItem.case_id == case.id, CaseItem.clip_id == clip_id)
        )
        if item is None:
            raise NotFound(f"clip {clip_id} is not an exhibit in this case")
        old = item.exhibit_ref
        if ref == old:
            return {"clip_id": clip_id, "exhibit_ref": ref, "previous_ref": old}
        if ref.casefold() in _refs_in(s, case.id) - {(old or "").casefold()}:
            raise Conflict(f"exhibit reference {ref!r} is already used in this case")
        item.exhibit_ref = ref
        ctx.ledger.append_in(
            s,
            "exhibit.referenced",
            actor=principal.actor,
            subject={"case": case.id, "clip": clip_id, "user": principal.user_id},
            exhibit_ref=ref,
            previous_ref=old,
        )
        return {"clip_id": clip_id, "exhibit_ref": ref, "previous_ref": old}


def add_member(ctx: Context, principal: Principal, case_id: str, username: str) -> None:
    require(principal, "cases.manage")
    with ctx.db.write_session() as s:
        case = visible_case(s, principal, case_id)
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username!r}")
        if s.get(CaseMember, (case.id, user.id)) is not None:
            return
        s.add(
            CaseMember(
                case_id=case.id, user_id=user.id, added_by=principal.user_id, added_at=clock.now()
            )
        )
        ctx.ledger.append_in(
            s,
            "case.member_added",
            actor=principal.actor,
            subject={"case": case.id, "user": [user.id, principal.user_id]},
            member=username,
            member_role=user.role,
        )
