"""Retention: how long clips are kept, legal holds, and the disposal review queue.

The rules a force is held to, and how this module keeps them:

- A clip's retention clock starts at recording time (ingest time when the camera gave
  none). Its category picks the rule (`Settings.retention_rules`); uncategorised clips follow
  non-evidential: 31 days, as UK BWV practice.
- Nothing is ever due sooner than `retention_notice_days` after it was (re)scheduled: a
  clip docked late, a category changed by mistake or a shorter policy only *schedule*
  disposal, and the schedule shows what would go and when (`schedule`).
- The original is Object-Locked in storage until its retention date; a lock is only ever
  extended, so the date a clip falls due is never earlier than its lock.
- A legal hold on the clip or on any case it is in blocks disposal while it stands and puts
  an Object Lock legal hold on the original.
- An exhibit is never disposed of by default: a clip that is an exhibit in a case that is
  not closed, or in a closed case that is still shared (an unrevoked, unexpired share), is
  "kept as an exhibit" whatever its category (no retention date, an Object Lock legal hold).
  Adding it to a case does this at once; the sweep fixes rows that predate the rule. A case's
  court bundles are reached only through the case and its shares, so they need no rule of
  their own. Closing a case starts a review: each exhibit no longer kept is rescheduled under
  its category's rule with notice, and a clip that was ever an exhibit is never disposed of
  automatically: an evidence officer decides. Reopening the case keeps them again.
- Due clips enter the review queue. An evidence officer approves (or retains them for another
  review period); a rule with `auto_dispose` approves on its own. Carrying a disposal out
  deletes the derivatives and the original, then writes the tombstone `clip.disposed`
  (hash, size, rule, reason, approver): the ledger still proves the clip existed, what its
  bytes were and when and why they went.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session

from evidence import clock
from evidence.access import (
    Principal,
    case_filter,
    disposal_shown,
    hold_shown,
    ledger_reason,
    require,
    visible_case,
    visible_clip,
)
from evidence.bundles.models import Bundle, BundleState
from evidence.cases.models import Case, CaseItem, Share
from evidence.clips.models import Clip, ClipState, Derivative
from evidence.config import RetentionRule, Settings
from evidence.context import Context
from evidence.errors import Conflict, InvalidInput, NotFound, ObjectLocked
from evidence.retention.models import OPEN_DISPOSAL_STATES, Disposal, DisposalState, Hold
from evidence.storage import original_key

log = logging.getLogger(__name__)

SYSTEM = "system:retention"
LIVE_STATES = (ClipState.stored.value, ClipState.ready.value, ClipState.unplayable.value)
"""Clips whose original is in storage and which retention applies to."""

DEFAULT_RETAIN_DAYS = 365  # a "retain" decision on a rule without a review period


# -- the policy -------------------------------------------------------------------------------


def rule_for(settings: Settings, category: str | None) -> tuple[str, RetentionRule]:
    """The rule a category follows: its own, else "evidential" (never shorter by accident)."""
    name = category or settings.retention_default_category
    rules = settings.retention_rules
    if name in rules:
        return name, rules[name]
    return "evidential", rules.get("evidential") or RetentionRule(keep_days=None, review_days=3653)


def describe(name: str, rule: RetentionRule) -> str:
    """The rule as people read it, also the label that tells a changed policy apart."""
    if rule.keep_days is None:
        return f"{name}: kept, reviewed every {rule.review_days or DEFAULT_RETAIN_DAYS} days"
    return f"{name}: {rule.keep_days} days{', disposed automatically' if rule.auto_dispose else ''}"


def policy_date(settings: Settings, clip: Clip) -> dt.datetime:
    """When the rule alone makes the clip due: disposal, or review for indefinite rules."""
    _, rule = rule_for(settings, clip.category)
    days = (
        rule.keep_days if rule.keep_days is not None else (rule.review_days or DEFAULT_RETAIN_DAYS)
    )
    return (clip.recorded_at or clip.ingested_at) + dt.timedelta(days=days)


# -- scheduling -------------------------------------------------------------------------------


def schedule_in(ctx: Context, s: Session, clip: Clip, *, actor: str) -> bool:
    """(Re)compute when `clip` falls due, inside the caller's transaction.

    Returns True if the date or rule changed (a `retention.scheduled` entry records it).
    Call `lock_original` after the commit so storage enforces the new date.
    """
    due: dt.datetime | None
    if is_kept_exhibit(s, clip.id):
        label, due = EXHIBIT_RULE, None
    else:
        name, rule = rule_for(ctx.settings, clip.category)
        label = describe(name, rule)
        due = max(
            policy_date(ctx.settings, clip),
            clock.now() + dt.timedelta(days=ctx.settings.retention_notice_days),
        )
        due = _whole_second(due)  # storage keeps lock dates to the millisecond; keep them equal
        if clip.locked_until is not None:
            due = max(due, clip.locked_until)  # storage will refuse to delete it before then
    if clip.retain_until == due and clip.retention_rule == label:
        return False
    previous = clip.retain_until
    clip.retain_until, clip.retention_rule = due, label
    ctx.ledger.append_in(
        s,
        "retention.scheduled",
        actor=actor,
        subject={"clip": clip.id},
        sha256=clip.sha256,
        rule=label,
        retain_until=clock.rfc3339(due) if due else None,
        previous=clock.rfc3339(previous) if previous else None,
    )
    if due is None or due > clock.now():
        why = "kept as an exhibit" if due is None else "no longer due: rescheduled"
        _cancel_open_disposals(ctx, s, clip.id, actor=actor, why=why)
    return True


EXHIBIT_RULE = "exhibit: kept while its case is open or shared"
"""The retention rule of a clip kept as an exhibit: no date; see the module docstring."""


def _kept_exhibit(clip_id: Any) -> ColumnElement[bool]:
    """SQL: the clip is an exhibit of a case that is open, or closed but still shared."""
    now = clock.now()
    shared = exists(
        select(Share.id).where(
            Share.case_id == Case.id, Share.revoked_at.is_(None), Share.expires_at > now
        )
    )
    return exists(
        select(CaseItem.id)
        .join(Case, Case.id == CaseItem.case_id)
        .where(CaseItem.clip_id == clip_id, or_(Case.closed_at.is_(None), shared))
    )


def is_kept_exhibit(s: Session, clip_id: str) -> bool:
    return bool(s.scalar(select(_kept_exhibit(clip_id))))


def _ever_exhibit(clip_id: Any) -> ColumnElement[bool]:
    return exists(select(CaseItem.id).where(CaseItem.clip_id == clip_id))


def reschedule_exhibits(ctx: Context, s: Session, case_id: str, *, actor: str) -> list[str]:
    """After a case is added to, closed or reopened: each exhibit's schedule follows (kept,
    or under its category's rule with notice). Returns the clips whose schedule changed;
    call `sync_storage_protection` with them after the commit."""
    clips = s.scalars(
        select(Clip)
        .join(CaseItem, CaseItem.clip_id == Clip.id)
        .where(CaseItem.case_id == case_id, Clip.state.in_(LIVE_STATES))
        .order_by(Clip.id)
    ).all()
    return [c.id for c in clips if schedule_in(ctx, s, c, actor=actor)]


def sync_storage_protection(ctx: Context, clip_ids: list[str]) -> None:
    """Storage follows the database: a kept exhibit or a held clip carries an Object Lock
    legal hold on its original, anything else does not (its retention lock stays), and a
    clip's retention lock follows its new date. Idempotent; the next sweep repeats it."""
    with ctx.db.session() as s:
        clips = list(s.scalars(select(Clip).where(Clip.id.in_(clip_ids))))
        protected = {c.id for c in clips if is_kept_exhibit(s, c.id) or is_held(s, c.id)}
    _set_storage_hold(ctx, [c for c in clips if c.id in protected], True)
    _set_storage_hold(ctx, [c for c in clips if c.id not in protected], False)
    for clip in clips:
        lock_original(ctx, clip.id)


def _whole_second(t: dt.datetime) -> dt.datetime:
    """Round up to a whole second, so a date survives every store's precision unchanged."""
    return t if t.microsecond == 0 else t.replace(microsecond=0) + dt.timedelta(seconds=1)


def lock_original(ctx: Context, clip_id: str) -> None:
    """Object-Lock the clip's original until its retention date (only ever extended).

    Idempotent; run after every commit that moves `retain_until`. If it fails the clip is
    still protected by the database rules, and the next sweep tries again.
    """
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
        if clip is None or clip.state not in LIVE_STATES or clip.retain_until is None:
            return
        until, locked, sha = clip.retain_until, clip.locked_until, clip.sha256
    if until <= clock.now() or (locked is not None and until <= locked):
        return
    ctx.store.set_retention(original_key(sha), until)
    with ctx.db.write_session() as s:
        clip = s.get(Clip, clip_id)
        assert clip is not None
        if clip.locked_until is None or clip.locked_until < until:
            clip.locked_until = until


def relock_all(ctx: Context) -> tuple[int, int]:
    """Put every live original's Object Lock and legal hold back as the database records them:
    after restoring objects into a new bucket with a tool that does not copy retention
    (docs/backup.md). Returns (locked, held). Never shortens a lock the storage already has."""
    with ctx.db.session() as s:
        rows = s.execute(
            select(Clip.id, Clip.sha256, Clip.retain_until)
            .where(Clip.state.in_(LIVE_STATES))
            .order_by(Clip.id)
        ).all()
        held = _held_among(s, [r.id for r in rows])
    locked = 0
    for clip_id, sha, until in rows:
        key = original_key(sha)
        if until is not None and until > clock.now():
            try:
                ctx.store.set_retention(key, until)
                locked += 1
            except ObjectLocked:
                pass  # the storage already holds it longer: leave it
        if clip_id in held:
            ctx.store.set_legal_hold(key, True)
    return locked, len(held)


def schedule(
    ctx: Context, principal: Principal, *, within_days: int = 90, limit: int = 500
) -> list[dict[str, Any]]:
    """What falls due in the next `within_days` days (and anything overdue), soonest first."""
    require(principal, "retention.read")
    return due_within(ctx, within_days=within_days, limit=limit)


def due_within(ctx: Context, *, within_days: int, limit: int = 500) -> list[dict[str, Any]]:
    """`schedule` without the access check, for the operator's CLI (who holds the database)."""
    if not 0 <= within_days <= 36500 or not 1 <= limit <= 5000:
        raise InvalidInput("within_days is 0 to 36500 and limit 1 to 5000")
    horizon = clock.now() + dt.timedelta(days=within_days)
    with ctx.db.session() as s:
        clips = s.scalars(
            select(Clip)
            .where(Clip.state.in_(LIVE_STATES), Clip.retain_until <= horizon)
            .order_by(Clip.retain_until, Clip.id)
            .limit(limit)
        ).all()
        held = _held_among(s, [c.id for c in clips])
        former = set(
            s.scalars(select(CaseItem.clip_id).where(CaseItem.clip_id.in_([c.id for c in clips])))
        )
        open_by_clip = {
            d.clip_id: d
            for d in s.scalars(
                select(Disposal).where(
                    Disposal.clip_id.in_([c.id for c in clips]),
                    Disposal.state.in_(OPEN_DISPOSAL_STATES),
                )
            )
        }
        return [
            _schedule_item(
                ctx.settings, c, c.id in held, open_by_clip.get(c.id), former_exhibit=c.id in former
            )
            for c in clips
        ]


def _schedule_item(
    settings: Settings,
    clip: Clip,
    held: bool,
    disposal: Disposal | None,
    *,
    former_exhibit: bool = False,
) -> dict[str, Any]:
    _, rule = rule_for(settings, clip.category)
    if held:
        outcome = "held: kept while the hold stands"
    elif rule.keep_days is None:
        outcome = "review by an evidence officer"
    elif former_exhibit:
        outcome = "review by an evidence officer (an exhibit of a closed case)"
    elif rule.auto_dispose:
        outcome = "disposed automatically"
    else:
        outcome = "disposal after an evidence officer approves"
    return {
        "clip_id": clip.id,
        "filename": clip.filename,
        "category": clip.category,
        "recorded_at": clock.rfc3339(clip.recorded_at) if clip.recorded_at else None,
        "rule": clip.retention_rule,
        "retain_until": clock.rfc3339(clip.retain_until),
        "held": held,
        "outcome": outcome,
        "disposal": _disposal_dict(disposal) if disposal else None,
    }


# -- legal holds ------------------------------------------------------------------------------


def _active_hold_covers(clip_id: Any) -> ColumnElement[bool]:
    """SQL: an active hold stands on the clip itself or on a case the clip is in."""
    # One level of nesting only (a join, not IN (SELECT ...)): SQL correlates `clip_id` to the
    # outer query's clips row only from the immediately enclosing SELECT.
    return exists(
        select(Hold.id)
        .outerjoin(CaseItem, CaseItem.case_id == Hold.case_id)
        .where(
            Hold.released_at.is_(None), or_(Hold.clip_id == clip_id, CaseItem.clip_id == clip_id)
        )
    )


def is_held(s: Session, clip_id: str) -> bool:
    return bool(s.scalar(select(_active_hold_covers(clip_id))))


def _held_among(s: Session, clip_ids: list[str]) -> set[str]:
    if not clip_ids:
        return set()
    return set(
        s.scalars(select(Clip.id).where(Clip.id.in_(clip_ids), _active_hold_covers(Clip.id)))
    )


def _clips_covered(s: Session, hold: Hold) -> list[Clip]:
    if hold.clip_id is not None:
        clip = s.get(Clip, hold.clip_id)
        return [clip] if clip is not None else []
    return list(
        s.scalars(
            select(Clip)
            .join(CaseItem, CaseItem.clip_id == Clip.id)
            .where(CaseItem.case_id == hold.case_id)
        )
    )


def _set_storage_hold(ctx: Context, clips: list[Clip], on: bool) -> None:
    for clip in clips:
        if clip.state in LIVE_STATES:
            ctx.store.set_legal_hold(original_key(clip.sha256), on)


def place_hold(
    ctx: Context,
    principal: Principal,
    *,
    reason: str,
    clip_id: str | None = None,
    case_id: str | None = None,
) -> dict[str, Any]:
    """Hold a clip, or every clip of a case (now and later), against disposal."""
    require(principal, "holds.manage")
    reason = ledger_reason(reason, "a hold (placing or releasing it)")
    if (clip_id is None) == (case_id is None):
        raise InvalidInput("a hold is on one clip (clip_id) or one case (case_id)")
    with ctx.db.session() as s:
        if clip_id is not None:
            visible_clip(s, principal, clip_id, footage=False)
        else:
            visible_case(s, principal, case_id)  # type: ignore[arg-type]
        hold = Hold(
            clip_id=clip_id,
            case_id=case_id,
            reason=reason,
            placed_by=principal.user_id,
            placed_at=clock.now(),
        )
        covered = _clips_covered(s, hold)
    # Storage first: if the database write then fails, the original is merely held too long.
    _set_storage_hold(ctx, covered, True)
    with ctx.db.write_session() as s:
        s.add(hold)
        s.flush()
        ctx.ledger.append_in(
            s,
            "hold.placed",
            actor=principal.actor,
            subject=_hold_subject(hold, principal),
            reason=reason,
            clips=sorted(c.id for c in covered),
        )
        for clip in covered:
            _cancel_open_disposals(ctx, s, clip.id, actor=principal.actor, why="held")
        return _hold_dict(hold)


def release_hold(ctx: Context, principal: Principal, hold_id: str, reason: str) -> None:
    """End a hold. Clips it covered become disposable again only if nothing else holds them,
    and only when due: a release never disposes of anything by itself."""
    require(principal, "holds.manage")
    reason = ledger_reason(reason, "a hold (placing or releasing it)")
    with ctx.db.write_session() as s:
        hold = s.get(Hold, hold_id)
        if hold is None:
            raise NotFound(f"no hold {hold_id}")
        if hold.released_at is not None:
            raise Conflict(
                f"hold {hold_id} was already released on {clock.rfc3339(hold.released_at)}"
            )
        hold.released_at, hold.released_by, hold.release_reason = (
            clock.now(),
            principal.user_id,
            reason,
        )
        covered = _clips_covered(s, hold)
        s.flush()
        free = [c for c in covered if not is_held(s, c.id) and not is_kept_exhibit(s, c.id)]
        ctx.ledger.append_in(
            s,
            "hold.released",
            actor=principal.actor,
            subject=_hold_subject(hold, principal),
            reason=reason,
            clips=sorted(c.id for c in covered),
        )
    _set_storage_hold(ctx, free, False)


def _hold_subject(hold: Hold, principal: Principal) -> dict[str, str]:
    ids = {"hold": hold.id, "clip": hold.clip_id, "case": hold.case_id, "user": principal.user_id}
    return {k: v for k, v in ids.items() if v}


def list_holds(
    ctx: Context, principal: Principal, *, active: bool = True, case_id: str | None = None
) -> list[dict[str, Any]]:
    require(principal, "retention.read")
    with ctx.db.session() as s:
        q = select(Hold).order_by(Hold.placed_at.desc()).limit(1000)
        if active:
            q = q.where(Hold.released_at.is_(None))
        if case_id is not None:
            q = q.where(Hold.case_id == case_id)
        return [hold_shown(principal, _hold_dict(h)) for h in s.scalars(q)]


def _hold_dict(h: Hold) -> dict[str, Any]:
    return {
        "id": h.id,
        "clip_id": h.clip_id,
        "case_id": h.case_id,
        "reason": h.reason,
        "placed_by": h.placed_by,
        "placed_at": clock.rfc3339(h.placed_at),
        "released_at": clock.rfc3339(h.released_at) if h.released_at else None,
        "release_reason": h.release_reason,
    }


# -- the review queue -------------------------------------------------------------------------


def _disposal_dict(d: Disposal) -> dict[str, Any]:
    return {
        "id": d.id,
        "clip_id": d.clip_id,
        "state": d.state,
        "due_at": clock.rfc3339(d.due_at),
        "rule": d.rule,
        "decided_by": d.decided_by,
        "decided_at": clock.rfc3339(d.decided_at) if d.decided_at else None,
        "reason": d.reason,
        "disposed_at": clock.rfc3339(d.disposed_at) if d.disposed_at else None,
        "error": d.error,
    }


def queue(ctx: Context, principal: Principal, *, state: str = "pending") -> list[dict[str, Any]]:
    require(principal, "retention.read")
    if state not in DisposalState.__members__:
        raise InvalidInput(f"state is one of: {', '.join(DisposalState.__members__)}")
    with ctx.db.session() as s:
        rows = s.execute(
            select(Disposal, Clip)
            .join(Clip, Clip.id == Disposal.clip_id)
            .where(Disposal.state == state)
            .order_by(Disposal.due_at, Disposal.id)
            .limit(1000)
        ).all()
        return [
            {
                **_disposal_dict(d),
                "filename": c.filename,
                "category": c.category,
                "sha256": c.sha256,
                "recorded_at": clock.rfc3339(c.recorded_at) if c.recorded_at else None,
            }
            for d, c in rows
        ]


def _cancel_open_disposals(ctx: Context, s: Session, clip_id: str, *, actor: str, why: str) -> None:
    for d in s.scalars(
        select(Disposal).where(
            Disposal.clip_id == clip_id, Disposal.state.in_(OPEN_DISPOSAL_STATES)
        )
    ):
        d.state, d.decided_by, d.decided_at, d.reason = (
            DisposalState.cancelled.value,
            actor,
            clock.now(),
            why,
        )
        ctx.ledger.append_in(
            s,
            "disposal.cancelled",
            actor=actor,
            subject={"clip": clip_id, "disposal": d.id},
            reason=why,
        )


def _open_disposal(s: Session, disposal_id: str, principal: Principal) -> tuple[Disposal, Clip]:
    d = s.get(Disposal, disposal_id)
    if d is None:
        raise NotFound(f"no disposal {disposal_id}")
    if d.state != DisposalState.pending:
        raise Conflict(f"disposal {disposal_id} is {d.state}, not pending")
    clip = visible_clip(s, principal, d.clip_id, footage=False)
    return d, clip


def approve(ctx: Context, principal: Principal, disposal_id: str, reason: str) -> dict[str, Any]:
    """An evidence officer approves a disposal; it is carried out at once."""
    require(principal, "retention.decide")
    reason = ledger_reason(reason, "a decision")
    with ctx.db.write_session() as s:
        d, clip = _open_disposal(s, disposal_id, principal)
        if is_held(s, clip.id):
            raise Conflict(f"clip {clip.id} is under a legal hold; release the hold first")
        if is_kept_exhibit(s, clip.id):
            raise Conflict(
                f"clip {clip.id} is an exhibit in an open or shared case; close the "
                "case (and end its shares) first"
            )
        _approve_in(ctx, s, d, actor=principal.actor, reason=reason)
    carry_out(ctx, disposal_id)
    with ctx.db.session() as s:
        return _disposal_dict(s.get(Disposal, disposal_id))  # type: ignore[arg-type]


def retain(ctx: Context, principal: Principal, disposal_id: str, reason: str) -> dict[str, Any]:
    """Keep a due clip for another review period (MoPI review: "retain")."""
    require(principal, "retention.decide")
    reason = ledger_reason(reason, "a decision")
    with ctx.db.write_session() as s:
        d, clip = _open_disposal(s, disposal_id, principal)
        _, rule = rule_for(ctx.settings, clip.category)
        until = _whole_second(
            clock.now() + dt.timedelta(days=rule.review_days or DEFAULT_RETAIN_DAYS)
        )
        d.state, d.decided_by, d.decided_at, d.reason = (
            DisposalState.retained.value,
            principal.actor,
            clock.now(),
            reason,
        )
        clip.retain_until = until
        ctx.ledger.append_in(
            s,
            "disposal.retained",
            actor=principal.actor,
            subject={"clip": clip.id, "disposal": d.id, "user": principal.user_id},
            sha256=clip.sha256,
            reason=reason,
            retain_until=clock.rfc3339(until),
        )
        clip_id = clip.id
    lock_original(ctx, clip_id)
    with ctx.db.session() as s:
        return _disposal_dict(s.get(Disposal, disposal_id))  # type: ignore[arg-type]


def _approve_in(ctx: Context, s: Session, d: Disposal, *, actor: str, reason: str) -> None:
    d.state, d.decided_by, d.decided_at, d.reason = (
        DisposalState.approved.value,
        actor,
        clock.now(),
        reason,
    )
    ctx.ledger.append_in(
        s,
        "disposal.approved",
        actor=actor,
        subject={"clip": d.clip_id, "disposal": d.id},
        reason=reason,
        rule=d.rule,
    )


def carry_out(ctx: Context, disposal_id: str) -> bool:
    """Delete an approved disposal's objects, then write its tombstone. Idempotent: a crash
    between the two is finished by the next sweep (deleting a missing object is a no-op).

    Returns True when the clip is disposed of. A hold placed since approval, or a retention
    date moved since, cancels it; a storage lock leaves it approved with the error recorded.
    """
    with ctx.db.write_session() as s:
        d = s.get(Disposal, disposal_id)
        if d is None or d.state != DisposalState.approved:
            return False
        clip = s.get(Clip, d.clip_id)
        assert clip is not None
        kept = is_kept_exhibit(s, clip.id)
        if is_held(s, clip.id) or kept or (clip.retain_until or clock.now()) > clock.now():
            why = (
                "held"
                if is_held(s, clip.id)
                else "kept as an exhibit"
                if kept
                else "no longer due: rescheduled"
            )
            _cancel_open_disposals(ctx, s, clip.id, actor=SYSTEM, why=why)
            return False
        derivatives = list(
            s.scalars(
                select(Derivative).where(Derivative.clip_id == clip.id).order_by(Derivative.kind)
            )
        )
        bundles = _bundles_holding(s, clip.id)
        keys = [b.key for b in bundles] + [x.key for x in derivatives] + [original_key(clip.sha256)]
    try:
        for key in keys:  # the original last: while it exists the clip is not yet gone
            ctx.store.delete(key)
    except ObjectLocked as e:
        log.warning("disposal %s of clip %s waits: %s", disposal_id, clip.id, e)
        with ctx.db.write_session() as s:
            row = s.get(Disposal, disposal_id)
            assert row is not None
            row.error = f"storage refused to delete: {e}. It is retried by the next sweep."
        return False
    _write_tombstone(ctx, disposal_id, derivatives, [b.id for b in bundles])
    return True


def _bundles_holding(s: Session, clip_id: str) -> list[Bundle]:
    """Court bundles that may carry the clip's bytes: built (or building) for a case the clip
    is an exhibit of. They are copies of footage the force may no longer keep, so they go
    with it; a bundle built after the disposal carries only the tombstone."""
    return list(
        s.scalars(
            select(Bundle)
            .join(CaseItem, CaseItem.case_id == Bundle.case_id)
            .where(
                CaseItem.clip_id == clip_id,
                Bundle.state.in_((BundleState.ready.value, BundleState.building.value)),
            )
            .order_by(Bundle.id)
        )
    )


def _write_tombstone(
    ctx: Context, disposal_id: str, derivatives: list[Derivative], bundle_ids: list[str]
) -> None:
    with ctx.db.write_session() as s:
        d = s.get(Disposal, disposal_id)
        assert d is not None
        if d.state != DisposalState.approved:
            return
        clip = s.get(Clip, d.clip_id)
        assert clip is not None
        now = clock.now()
        ctx.ledger.append_in(
            s,
            "clip.disposed",
            actor=d.decided_by or SYSTEM,
            subject={"clip": clip.id, "disposal": d.id},
            sha256=clip.sha256,
            size=clip.size,
            original=original_key(clip.sha256),
            derivatives=[{"kind": x.kind, "key": x.key, "sha256": x.sha256} for x in derivatives],
            rule=d.rule,
            reason=d.reason,
            approved_by=d.decided_by,
            approved_at=clock.rfc3339(d.decided_at) if d.decided_at else None,
            recorded_at=clock.rfc3339(clip.recorded_at) if clip.recorded_at else None,
            retain_until=clock.rfc3339(clip.retain_until) if clip.retain_until else None,
            bundles=bundle_ids,
        )
        for bundle in s.scalars(select(Bundle).where(Bundle.id.in_(bundle_ids))):
            bundle.state = BundleState.disposed.value
            bundle.error = (
                f"deleted on {clock.rfc3339(now)}: exhibit clip {clip.id} was disposed of"
            )
        clip.state, clip.disposed_at = ClipState.disposed.value, now
        d.state, d.disposed_at, d.error = DisposalState.disposed.value, now, None
    log.info("clip %s disposed of (%s)", clip.id, d.rule)


# -- the sweep (run by the scheduler) ---------------------------------------------------------


@dataclass
class SweepReport:
    rescheduled: int = 0
    queued: int = 0
    auto_approved: int = 0
    disposed: int = 0
    waiting: list[str] = field(default_factory=list)  # approved but not carried out (locked)


def sweep(ctx: Context, *, batch: int = 500) -> SweepReport:
    """Apply changed policy, queue what fell due, carry out approved disposals. Idempotent."""
    report = SweepReport()
    report.rescheduled = _apply_exhibit_rule(ctx, batch) + _apply_policy_changes(ctx, batch)
    queued = _queue_due(ctx, batch)
    report.queued, report.auto_approved = len(queued), sum(1 for _, auto in queued if auto)
    with ctx.db.session() as s:
        approved = list(
            s.scalars(
                select(Disposal.id)
                .where(Disposal.state == DisposalState.approved)
                .order_by(Disposal.due_at)
                .limit(batch)
            )
        )
    for disposal_id in approved:
        if carry_out(ctx, disposal_id):
            report.disposed += 1
        else:
            report.waiting.append(disposal_id)
    return report


def _apply_exhibit_rule(ctx: Context, batch: int) -> int:
    """Exhibits not yet kept (rows from before the rule, a disposal queued before they were
    added) become kept; clips kept while their case was shared follow their rule again once
    the last share has ended."""
    with ctx.db.write_session() as s:
        stale = s.scalars(
            select(Clip)
            .where(
                Clip.state.in_(LIVE_STATES),
                or_(
                    and_(
                        _kept_exhibit(Clip.id), Clip.retention_rule.is_distinct_from(EXHIBIT_RULE)
                    ),
                    and_(Clip.retention_rule == EXHIBIT_RULE, ~_kept_exhibit(Clip.id)),
                ),
            )
            .order_by(Clip.id)
            .limit(batch)
        ).all()
        changed = [c.id for c in stale if schedule_in(ctx, s, c, actor=SYSTEM)]
    if changed:
        sync_storage_protection(ctx, changed)
    return len(changed)


def _apply_policy_changes(ctx: Context, batch: int) -> int:
    """Clips whose rule text changed (a new policy, a category without a rule before) are
    rescheduled, with notice: a policy change never deletes anything at once. Only the
    (category, rule) pairs that went stale are loaded, not every live clip."""
    with ctx.db.session() as s:
        pairs = s.execute(
            select(Clip.category, Clip.retention_rule).where(Clip.state.in_(LIVE_STATES)).distinct()
        ).all()
    stale = [
        (category, rule)
        for category, rule in pairs
        if rule != EXHIBIT_RULE and rule != describe(*rule_for(ctx.settings, category))
    ]
    if not stale:
        return 0
    changed: list[str] = []
    with ctx.db.write_session() as s:
        clips = s.scalars(
            select(Clip)
            .where(
                Clip.state.in_(LIVE_STATES),
                or_(
                    *(
                        and_(
                            Clip.category.is_not_distinct_from(category),
                            Clip.retention_rule.is_not_distinct_from(rule),
                        )
                        for category, rule in stale
                    )
                ),
            )
            .order_by(Clip.id)
            .limit(batch)
        )
        for clip in clips:
            if schedule_in(ctx, s, clip, actor=SYSTEM):
                changed.append(clip.id)
    for clip_id in changed:
        lock_original(ctx, clip_id)
    return len(changed)


def _queue_due(ctx: Context, batch: int) -> list[tuple[str, bool]]:
    now = clock.now()
    queued: list[tuple[str, bool]] = []
    with ctx.db.write_session() as s:
        has_open = exists(
            select(Disposal.id).where(
                Disposal.clip_id == Clip.id, Disposal.state.in_(OPEN_DISPOSAL_STATES)
            )
        )
        due = s.scalars(
            select(Clip)
            .where(
                Clip.state.in_(LIVE_STATES),
                Clip.retain_until <= now,
                ~has_open,
                ~_active_hold_covers(Clip.id),
                ~_kept_exhibit(Clip.id),
            )
            .order_by(Clip.retain_until, Clip.id)
            .limit(batch)
        ).all()
        for clip in due:
            name, rule = rule_for(ctx.settings, clip.category)
            d = Disposal(
                clip_id=clip.id,
                state=DisposalState.pending.value,
                due_at=clip.retain_until,
                rule=clip.retention_rule or describe(name, rule),
                created_at=now,
            )
            s.add(d)
            s.flush()
            ctx.ledger.append_in(
                s,
                "disposal.queued",
                actor=SYSTEM,
                subject={"clip": clip.id, "disposal": d.id},
                sha256=clip.sha256,
                rule=d.rule,
                due_at=clock.rfc3339(d.due_at),
            )
            # A clip that was ever an exhibit is reviewed by a person, whatever its rule.
            auto = (
                rule.auto_dispose
                and rule.keep_days is not None
                and not s.scalar(select(_ever_exhibit(clip.id)))
            )
            if auto:
                _approve_in(
                    ctx,
                    s,
                    d,
                    actor=f"policy:{name}",
                    reason=f"{name} footage past its {rule.keep_days}-day retention period",
                )
            queued.append((clip.id, auto))
    return queued


def retention_of(ctx: Context, s: Session, clip: Clip, principal: Principal) -> dict[str, Any]:
    """What the clip detail page shows `principal` about retention (hold reasons per
    evidence.access.hold_shown)."""
    d = s.scalar(
        select(Disposal)
        .where(Disposal.clip_id == clip.id)
        .order_by(Disposal.created_at.desc())
        .limit(1)
    )
    holds = s.scalars(
        select(Hold).where(
            Hold.released_at.is_(None),
            or_(
                Hold.clip_id == clip.id,
                Hold.case_id.in_(select(CaseItem.case_id).where(CaseItem.clip_id == clip.id)),
            ),
        )
    ).all()
    kept_by = s.execute(
        select(Case.id, Case.reference, Case.closed_at)
        .join(CaseItem, CaseItem.case_id == Case.id)
        .where(CaseItem.clip_id == clip.id, case_filter(principal))
        .order_by(Case.created_at)
    ).all()
    return {
        "kept_as_exhibit": clip.retention_rule == EXHIBIT_RULE,
        "cases": [{"id": i, "reference": r, "closed": c is not None} for i, r, c in kept_by],
        "rule": clip.retention_rule,
        "retain_until": clock.rfc3339(clip.retain_until) if clip.retain_until else None,
        "locked_until": clock.rfc3339(clip.locked_until) if clip.locked_until else None,
        "disposed_at": clock.rfc3339(clip.disposed_at) if clip.disposed_at else None,
        "holds": [hold_shown(principal, _hold_dict(h)) for h in holds],
        "disposal": disposal_shown(principal, _disposal_dict(d)) if d else None,
    }
