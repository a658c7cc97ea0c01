"""Cases: clips grouped as exhibits, with members who may work on them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from evidence import clock
from evidence.access import Principal, case_filter, require, visible_case, visible_clip
from evidence.accounts.models import User
from evidence.cases.models import Case, CaseItem, CaseMember
from evidence.clips.models import Clip
from evidence.context import Context
from evidence.errors import InvalidInput, NotFound


def _case_dict(case: Case, items: int) -> dict[str, Any]:
    return {"id": case.id, "title": case.title, "reference": case.reference,
            "created_at": clock.rfc3339(case.created_at), "items": items}


def create_case(ctx: Context, principal: Principal, title: str, reference: str) -> dict[str, Any]:
    require(principal, "cases.create")
    title, reference = title.strip(), reference.strip()
    if not 1 <= len(title) <= 255 or not 1 <= len(reference) <= 100:
        raise InvalidInput("a case needs a title (1-255 characters) and a reference (1-100)")
    with ctx.db.write_session() as s:
        case = Case(title=title, reference=reference, created_by=principal.user_id,
                    created_at=clock.now())
        s.add(case)
        s.flush()
        s.add(CaseMember(case_id=case.id, user_id=principal.user_id, added_by=principal.user_id,
                         added_at=clock.now()))
        ctx.ledger.append_in(s, "case.created", actor=principal.actor,
                             subject={"case": case.id, "user": principal.user_id},
                             title=title, reference=reference)
        return _case_dict(case, 0)


def list_cases(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    require(principal, "cases.read")
    with ctx.db.session() as s:
        counts = (select(CaseItem.case_id, func.count().label("n")).group_by(CaseItem.case_id)
                  .subquery())
        rows = s.execute(
            select(Case, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.case_id == Case.id)
            .where(case_filter(principal)).order_by(Case.created_at.desc())
        ).all()
        return [_case_dict(c, n) for c, n in rows]


def case_detail(ctx: Context, principal: Principal, case_id: str) -> dict[str, Any]:
    require(principal, "cases.read")
    with ctx.db.session() as s:
        case = visible_case(s, principal, case_id)
        items = s.execute(
            select(CaseItem, Clip).join(Clip, Clip.id == CaseItem.clip_id)
            .where(CaseItem.case_id == case.id).order_by(CaseItem.added_at)
        ).all()
        members = s.execute(
            select(User.username, User.role).join(CaseMember, CaseMember.user_id == User.id)
            .where(CaseMember.case_id == case.id).order_by(User.username)
        ).all()
        out = _case_dict(case, len(items))
        out["exhibits"] = [
            {"clip_id": clip.id, "exhibit_ref": item.exhibit_ref, "filename": clip.filename,
             "sha256": clip.sha256, "recorded_at": clock.rfc3339(clip.recorded_at) if clip.recorded_at else None,
             "officer_id": clip.officer_id, "state": clip.state}
            for item, clip in items
        ]
        out["members"] = [{"username": u, "role": r} for u, r in members]
        return out


def add_items(ctx: Context, principal: Principal, case_id: str, clip_ids: list[str]) -> dict[str, Any]:
    """Add clips as exhibits; each gets the next reference (initials of the officer/number)."""
    require(principal, "cases.manage")
    if not clip_ids or len(clip_ids) > 500:
        raise InvalidInput("give 1 to 500 clip ids")
    with ctx.db.write_session() as s:
        case = visible_case(s, principal, case_id)
        added = []
        for clip_id in dict.fromkeys(clip_ids):
            clip = visible_clip(s, principal, clip_id, footage=False)
            if s.scalar(select(CaseItem.id).where(CaseItem.case_id == case.id, CaseItem.clip_id == clip.id)):
                continue
            n = (s.scalar(select(func.count()).select_from(CaseItem).where(CaseItem.case_id == case.id)) or 0) + 1
            ref = f"{(clip.officer_id or 'EX')}/{n}"
            s.add(CaseItem(case_id=case.id, clip_id=clip.id, exhibit_ref=ref,
                           added_by=principal.user_id, added_at=clock.now()))
            s.flush()
            ctx.ledger.append_in(s, "case.exhibit_added", actor=principal.actor,
                                 subject={"case": case.id, "clip": clip.id, "user": principal.user_id},
                                 exhibit_ref=ref, sha256=clip.sha256)
            added.append({"clip_id": clip.id, "exhibit_ref": ref})
        return {"id": case.id, "added": added}


def add_member(ctx: Context, principal: Principal, case_id: str, username: str) -> None:
    require(principal, "cases.manage")
    with ctx.db.write_session() as s:
        case = visible_case(s, principal, case_id)
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username!r}")
        if s.get(CaseMember, (case.id, user.id)) is not None:
            return
        s.add(CaseMember(case_id=case.id, user_id=user.id, added_by=principal.user_id,
                         added_at=clock.now()))
        ctx.ledger.append_in(s, "case.member_added", actor=principal.actor,
                             subject={"case": case.id, "user": [user.id, principal.user_id]},
                             member=username, member_role=user.role)
