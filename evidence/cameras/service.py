"""The camera register (cameras and who holds them when), the unattributed queue and
re-attribution of clips (docs/cameras.md).

Every change is a ledger entry written in the same transaction: camera.registered,
camera.state_changed, camera.assigned, camera.assignment_ended, clip.attributed. Functions
taking `by: Principal | None` are called by a person through the API (checked against the
policy) or, with None, by the server's operator through `evidence admin` ("system:cli").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from evidence import clock
from evidence.access import (
    Principal,
    attribution_reason_shown,
    ledger_reason,
    require,
    visible_clip,
)
from evidence.accounts.models import User
from evidence.cameras.attribution import assignment_at, describe
from evidence.cameras.models import (
    AssignmentKind,
    Camera,
    CameraAssignment,
    CameraState,
    ClipAttribution,
)
from evidence.clips import paging
from evidence.clips.models import PUBLIC_SUBMISSION, Clip, ClipState
from evidence.clips.service import ClipPage, summary
from evidence.context import Context
from evidence.errors import Conflict, InvalidInput, NotFound
from evidence.ingest.service import ledger_text

CLI_ACTOR = "system:cli"
RECENT = dt.timedelta(days=30)
_SERIAL = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,63}$")
_OFFICER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
# Clips whose bytes were verified and are still held: the ones worth attributing.
ATTRIBUTABLE = (ClipState.stored, ClipState.ready, ClipState.unplayable)


def _actor(by: Principal | None) -> str:
    return by.actor if by else CLI_ACTOR


def _allow(by: Principal | None, action: str) -> None:
    if by is not None:
        require(by, action)


def _iso(t: dt.datetime | None) -> str | None:
    return clock.rfc3339(t) if t else None


def check_serial(serial: str) -> str:
    """A serial as the register keys it: upper case, letters, digits and . _ -."""
    text = (serial or "").strip().upper()
    if not _SERIAL.match(text):
        raise InvalidInput(
            "a camera serial is 1-64 letters, digits, '.', '_' or '-' (as printed on the camera)"
        )
    return text


def check_officer_id(officer_id: str) -> str:
    text = (officer_id or "").strip()
    if not _OFFICER.match(text):
        raise InvalidInput(
            "an officer id (collar number) is 1-64 letters, digits, '.', '_', '/' or '-'"
        )
    return text


def _label(value: str | None, what: str, limit: int = 100) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > limit:
        raise InvalidInput(f"{what} is at most {limit} characters")
    return ledger_text(value.strip(), limit)


def _when(t: dt.datetime | None, what: str) -> dt.datetime | None:
    if t is not None and t.tzinfo is None:
        raise InvalidInput(f"{what} needs a time zone (e.g. 2026-12-01T07:00:00Z)")
    return t.astimezone(dt.UTC) if t else None


# -- the register ------------------------------------------------------------------------------


def _camera_dict(c: Camera, holder: CameraAssignment | None) -> dict[str, Any]:
    return {
        "serial": c.serial,
        "make": c.make,
        "model": c.model,
        "firmware": c.firmware,
        "state": c.state,
        "registered_at": _iso(c.registered_at),
        "registered_by": c.registered_by,
        "first_seen_at": _iso(c.first_seen_at),
        "holder": _assignment_dict(holder) if holder else None,
    }


def _assignment_dict(a: CameraAssignment) -> dict[str, Any]:
    return {
        "id": a.id,
        "camera_serial": a.camera_serial,
        "officer_id": a.officer_id,
        "kind": a.kind,
        "starts_at": _iso(a.starts_at),
        "ends_at": _iso(a.ends_at),
        "created_by": a.created_by,
        "created_at": _iso(a.created_at),
        "ended_at": _iso(a.ended_at),
        "ended_by": a.ended_by,
        "describe": describe(a),
    }


def _camera(s: Session, serial: str, *, lock: bool = False) -> Camera:
    query = select(Camera).where(Camera.serial == check_serial(serial))
    # On PostgreSQL the row lock queues two assignments of one camera, so the overlap check
    # of the second sees the first (SQLite's write lock already does that).
    camera = s.scalar(query.with_for_update() if lock else query)
    if camera is None:
        raise NotFound(f"no camera {serial} in the register")
    return camera


def register_camera(
    ctx: Context,
    by: Principal | None,
    serial: str,
    *,
    make: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    _allow(by, "cameras.manage")
    serial = check_serial(serial)
    make, model = _label(make, "make"), _label(model, "model")
    with ctx.db.write_session() as s:
        if s.get(Camera, serial) is not None:
            raise Conflict(f"camera {serial} is already in the register")
        camera = Camera(
            serial=serial,
            make=make,
            model=model,
            state=CameraState.in_service.value,
            registered_at=clock.now(),
            registered_by=_actor(by),
        )
        s.add(camera)
        s.flush()
        ctx.ledger.append_in(
            s,
            "camera.registered",
            actor=_actor(by),
            subject={"camera": serial},
            serial=serial,
            make=make,
            model=model,
            how="registered by hand",
        )
        return _camera_dict(camera, None)


def list_cameras(ctx: Context, by: Principal | None) -> list[dict[str, Any]]:
    """Every camera with whoever holds it now."""
    _allow(by, "cameras.read")
    now = clock.now()
    with ctx.db.session() as s:
        cameras = s.scalars(select(Camera).order_by(Camera.serial)).all()
        return [_camera_dict(c, assignment_at(s, c.serial, now)) for c in cameras]


def camera_detail(ctx: Context, by: Principal | None, serial: str) -> dict[str, Any]:
    """The camera, its whole assignment history and how many clips it recorded."""
    _allow(by, "cameras.read")
    with ctx.db.session() as s:
        camera = _camera(s, serial)
        history = s.scalars(
            select(CameraAssignment)
            .where(CameraAssignment.camera_serial == camera.serial)
            .order_by(CameraAssignment.starts_at)
        ).all()
        counted = select(func.count()).select_from(Clip).where(Clip.camera_serial == camera.serial)
        since = clock.now() - RECENT
        out = _camera_dict(camera, assignment_at(s, camera.serial, clock.now()))
        out["assignments"] = [_assignment_dict(a) for a in history]
        out["clips_total"] = s.scalar(counted) or 0
        out["clips_last_30_days"] = (
            s.scalar(counted.where(func.coalesce(Clip.recorded_at, Clip.ingested_at) >= since)) or 0
        )
        return out


def set_state(
    ctx: Context, by: Principal | None, serial: str, state: str, reason: str
) -> dict[str, Any]:
    """In service, lost or retired; the reason goes in the ledger."""
    _allow(by, "cameras.manage")
    try:
        new = CameraState(state)
    except ValueError:
        raise InvalidInput(f"a camera's state is one of {', '.join(CameraState)}") from None
    why = ledger_reason(reason, "changing a camera's state")
    with ctx.db.write_session() as s:
        camera = _camera(s, serial, lock=True)
        old = camera.state
        if old == new:
            raise Conflict(f"camera {camera.serial} is already {new}")
        camera.state = new.value
        ctx.ledger.append_in(
            s,
            "camera.state_changed",
            actor=_actor(by),
            subject={"camera": camera.serial},
            state=new.value,
            previous=old,
            reason=why,
        )
        return _camera_dict(camera, assignment_at(s, camera.serial, clock.now()))


def _overlapping(
    s: Session, serial: str, starts: dt.datetime, ends: dt.datetime | None
) -> CameraAssignment | None:
    clauses = [
        CameraAssignment.camera_serial == serial,
        or_(CameraAssignment.ends_at.is_(None), CameraAssignment.ends_at > starts),
    ]
    if ends is not None:
        clauses.append(CameraAssignment.starts_at < ends)
    return s.scalar(
        select(CameraAssignment).where(and_(*clauses)).order_by(CameraAssignment.starts_at).limit(1)
    )


def assign(
    ctx: Context,
    by: Principal | None,
    serial: str,
    *,
    officer_id: str,
    kind: str,
    starts_at: dt.datetime | None = None,
    ends_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Issue a camera to an officer: `personal` (open-ended unless `ends_at`) or a `pool`
    checkout for a shift (`ends_at` required). Refused if it overlaps another assignment of
    the camera: at any moment a camera has at most one wearer."""
    _allow(by, "cameras.manage")
    officer_id = check_officer_id(officer_id)
    try:
        kind_ = AssignmentKind(kind)
    except ValueError:
        raise InvalidInput(f"an assignment is {' or '.join(AssignmentKind)}") from None
    starts = _when(starts_at, "starts_at") or clock.now()
    ends = _when(ends_at, "ends_at")
    if kind_ == AssignmentKind.pool and ends is None:
        raise InvalidInput("a pool checkout needs its end (ends_at): the end of the shift")
    if ends is not None and ends <= starts:
        raise InvalidInput("an assignment must end after it starts")
    with ctx.db.write_session() as s:
        camera = _camera(s, serial, lock=True)
        if camera.state != CameraState.in_service:
            raise Conflict(
                f"camera {camera.serial} is {camera.state}: only a camera in service "
                "can be assigned"
            )
        clash = _overlapping(s, camera.serial, starts, ends)
        if clash is not None:
            raise Conflict(
                f"camera {camera.serial} is already assigned to officer {clash.officer_id} then "
                f"({describe(clash)}; assignment {clash.id}): end that assignment first, or "
                "choose a time that does not overlap it"
            )
        a = CameraAssignment(
            camera_serial=camera.serial,
            officer_id=officer_id,
            kind=kind_.value,
            starts_at=starts,
            ends_at=ends,
            created_by=_actor(by),
            created_at=clock.now(),
        )
        s.add(a)
        s.flush()
        ctx.ledger.append_in(
            s,
            "camera.assigned",
            actor=_actor(by),
            subject={"camera": camera.serial, "assignment": a.id},
            officer_id=officer_id,
            kind=kind_.value,
            starts_at=_iso(starts),
            ends_at=_iso(ends),
        )
        return _assignment_dict(a)


def end_assignment(
    ctx: Context,
    by: Principal | None,
    serial: str,
    assignment_id: str,
    *,
    ends_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Close an open-ended assignment (a personal issue handed back), now or at `ends_at`.
    The row's end is set once; the ledger entry is the record of it."""
    _allow(by, "cameras.manage")
    ends = _when(ends_at, "ends_at") or clock.now()
    with ctx.db.write_session() as s:
        camera = _camera(s, serial, lock=True)
        a = s.get(CameraAssignment, assignment_id)
        if a is None or a.camera_serial != camera.serial:
            raise NotFound(f"camera {camera.serial} has no assignment {assignment_id}")
        if a.ends_at is not None:
            raise Conflict(
                f"assignment {a.id} already ends at {_iso(a.ends_at)}: assignments "
                "are never rewritten"
            )
        if ends <= a.starts_at:
            raise InvalidInput(f"the assignment started at {_iso(a.starts_at)}: it must end after")
        a.ends_at, a.ended_at, a.ended_by = ends, clock.now(), _actor(by)
        ctx.ledger.append_in(
            s,
            "camera.assignment_ended",
            actor=_actor(by),
            subject={"camera": camera.serial, "assignment": a.id},
            officer_id=a.officer_id,
            kind=a.kind,
            ends_at=_iso(ends),
        )
        return _assignment_dict(a)


# -- clips' attribution -----------------------------------------------------------------------


@dataclass(frozen=True)
class AttributionRecord:
    """One attribution of a clip, as the clip page and the statement show it."""

    at: dt.datetime
    actor: str
    camera_serial: str | None
    camera_how: str | None
    officer_id: str | None
    officer_how: str | None
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": _iso(self.at)}


def attribution_history(
    ctx: Context, principal: Principal, clip_id: str
) -> list[AttributionRecord]:
    """Every attribution of the clip, oldest first, for whoever may read the clip."""
    require(principal, "clips.read")
    with ctx.db.session() as s:
        clip = visible_clip(s, principal, clip_id, footage=False)
        rows = s.scalars(
            select(ClipAttribution)
            .where(ClipAttribution.clip_id == clip.id)
            .order_by(ClipAttribution.at, ClipAttribution.id)
        ).all()
        shown = attribution_reason_shown(principal)
        return [
            AttributionRecord(
                r.at,
                r.actor,
                r.camera_serial,
                r.camera_how,
                r.officer_id,
                r.officer_how,
                r.reason if shown else None,
            )
            for r in rows
        ]


def unattributed_clips(
    ctx: Context,
    principal: Principal,
    *,
    before: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
    count: bool = False,
) -> ClipPage:
    """Clips no officer is attributed to (nobody but evidence officers sees them), newest
    recorded first, one page after the cursor `before` (evidence/clips/paging.py)."""
    require(principal, "clips.attribute")
    paging.check_limit(limit)
    cursor = paging.Cursor.decode(before) if before else None
    parts = [Clip.officer_id.is_(None)]  # on (officer_id, recorded_at, id): in order
    where = [
        Clip.state.in_([s.value for s in ATTRIBUTABLE]),
        # From the public, not from a camera: there is no officer to find.
        Clip.category.is_distinct_from(PUBLIC_SUBMISSION),
    ]
    with ctx.db.session() as s:
        page = paging.newest_first(s, parts, where, before=cursor, limit=limit)
        total = paging.count_capped(s, parts, where) if count else None
        items = [{**summary(c, []), "camera_how": c.camera_how} for c in page.clips]
        return ClipPage(items, page.next_before, total)


def _known_officer(s: Session, officer_id: str) -> bool:
    """An officer the store knows: an account's officer id, or one the camera register has
    issued a camera to (officers need no account to be recorded as a clip's wearer)."""
    return bool(
        s.scalar(select(User.id).where(User.officer_id == officer_id).limit(1))
        or s.scalar(
            select(CameraAssignment.id).where(CameraAssignment.officer_id == officer_id).limit(1)
        )
    )


def reattribute(
    ctx: Context,
    principal: Principal,
    clip_id: str,
    *,
    camera_serial: str | None = None,
    officer_id: str | None = None,
    reason: str,
) -> AttributionRecord:
    """Attribute a clip to another camera and/or officer, with a reason. A new history row
    and a `clip.attributed` entry with the previous and the new values; the fields not given
    stay as they are. Naming an officer opens the clip to them."""
    require(principal, "clips.attribute")
    why = ledger_reason(reason, "re-attributing a clip", minimum=1)
    if camera_serial is None and officer_id is None:
        raise InvalidInput("name the camera (camera_serial), the officer (officer_id) or both")
    serial = check_serial(camera_serial) if camera_serial is not None else None
    officer = check_officer_id(officer_id) if officer_id is not None else None
    how = f"re-attributed by {principal.actor}"
    with ctx.db.write_session() as s:
        clip = visible_clip(s, principal, clip_id, footage=False)
        # Two re-attributions at once: the second reads what the first wrote, so each
        # entry's `previous` is true (PostgreSQL; SQLite's write lock already queues them).
        s.refresh(clip, with_for_update=True)
        if serial is not None and s.get(Camera, serial) is None:
            raise NotFound(f"no camera {serial} in the register: register it first")
        if officer is not None and not _known_officer(s, officer):
            raise InvalidInput(
                f"officer {officer} is unknown: no account has that officer id "
                "and the camera register never issued them a camera"
            )
        previous = {"camera_serial": clip.camera_serial, "officer_id": clip.officer_id}
        if serial is not None and serial != clip.camera_serial:
            clip.camera_serial, clip.camera_how = serial, how
        if officer is not None and officer != clip.officer_id:
            clip.officer_id, clip.officer_how = officer, how
        new = {"camera_serial": clip.camera_serial, "officer_id": clip.officer_id}
        if new == previous:
            raise Conflict("the clip is already attributed so: nothing to change")
        record = AttributionRecord(
            clock.now(),
            principal.actor,
            clip.camera_serial,
            clip.camera_how,
            clip.officer_id,
            clip.officer_how,
            why,
        )
        s.add(
            ClipAttribution(
                clip_id=clip.id,
                camera_serial=record.camera_serial,
                officer_id=record.officer_id,
                camera_how=record.camera_how,
                officer_how=record.officer_how,
                actor=record.actor,
                reason=why,
                at=record.at,
            )
        )
        ctx.ledger.append_in(
            s,
            "clip.attributed",
            actor=principal.actor,
            subject={"clip": clip.id, "user": principal.user_id},
            previous=previous,
            new=new,
            reason=why,
        )
        return record
