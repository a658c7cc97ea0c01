"""The camera register and clip attribution in the browser (docs/cameras.md).

Admins and evidence officers keep the register (cameras, who holds which, lost and retired
ones); auditors read it. Evidence officers work through the clips no officer is attributed
to, and correct a clip's officer or camera with a reason. Like every UI route: a gate, a
CSRF check on each form, one service call, a redirect with the outcome.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from api.gates import ui_gate
from api.ui.render import UIRoute, render, see_other
from api.ui.session import csrf_protect
from evidence.access import Principal
from evidence.cameras import service as cameras
from evidence.clips.paging import COUNT_CAP
from evidence.context import Context
from evidence.errors import Conflict, InvalidInput, NotFound

router = APIRouter(prefix="/ui", route_class=UIRoute, include_in_schema=False)
CSRF = Depends(csrf_protect)
PER_PAGE = 25


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _camera_url(serial: str, anchor: str = "") -> str:
    return f"/ui/cameras/{quote(serial, safe='')}{anchor}"


def _when(value: str, what: str) -> dt.datetime | None:
    """A datetime-local field (the browser's, no zone) as UTC, as every time in the UI is."""
    value = value.strip()
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{what} is not a date and time") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@router.get("/cameras")
def cameras_page(
    request: Request, principal: Principal = Depends(ui_gate("cameras.read"))
) -> Response:
    return render(request, "cameras.html", cameras=cameras.list_cameras(_ctx(request), principal))


@router.post("/cameras")
def register_camera(
    request: Request,
    serial: Annotated[str, Form(max_length=64)] = "",
    make: Annotated[str, Form(max_length=100)] = "",
    model: Annotated[str, Form(max_length=100)] = "",
    principal: Principal = Depends(ui_gate("cameras.manage")),
    _: None = CSRF,
) -> Response:
    try:
        camera = cameras.register_camera(
            _ctx(request), principal, serial, make=make or None, model=model or None
        )
    except (InvalidInput, Conflict) as exc:
        return see_other(request, "/ui/cameras#register", error=str(exc))
    return see_other(
        request, _camera_url(camera["serial"]), ok=f"Camera {camera['serial']} registered."
    )


@router.get("/cameras/{serial}")
def camera_page(
    serial: str, request: Request, principal: Principal = Depends(ui_gate("cameras.read"))
) -> Response:
    return render(
        request, "camera.html", camera=cameras.camera_detail(_ctx(request), principal, serial)
    )


@router.post("/cameras/{serial}/assignments")
def assign_camera(
    serial: str,
    request: Request,
    officer_id: Annotated[str, Form(max_length=64)] = "",
    kind: Annotated[str, Form(max_length=16)] = "",
    starts_at: Annotated[str, Form(max_length=32)] = "",
    ends_at: Annotated[str, Form(max_length=32)] = "",
    principal: Principal = Depends(ui_gate("cameras.manage")),
    _: None = CSRF,
) -> Response:
    try:
        a = cameras.assign(
            _ctx(request),
            principal,
            serial,
            officer_id=officer_id,
            kind=kind,
            starts_at=_when(starts_at, "From"),
            ends_at=_when(ends_at, "To"),
        )
    except (InvalidInput, Conflict, NotFound) as exc:
        return see_other(request, _camera_url(serial, "#assign"), error=str(exc))
    return see_other(
        request,
        _camera_url(serial, "#assignments"),
        ok=f"Assigned to officer {a['officer_id']}: {a['describe']}.",
    )


@router.post("/cameras/{serial}/assignments/{assignment_id}/end")
def end_assignment(
    serial: str,
    assignment_id: str,
    request: Request,
    principal: Principal = Depends(ui_gate("cameras.manage")),
    _: None = CSRF,
) -> Response:
    try:
        cameras.end_assignment(_ctx(request), principal, serial, assignment_id)
    except (InvalidInput, Conflict, NotFound) as exc:
        return see_other(request, _camera_url(serial, "#assignments"), error=str(exc))
    return see_other(request, _camera_url(serial, "#assignments"), ok="Assignment ended now.")


@router.post("/cameras/{serial}/state")
def change_state(
    serial: str,
    request: Request,
    state: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = Depends(ui_gate("cameras.manage")),
    _: None = CSRF,
) -> Response:
    try:
        cameras.set_state(_ctx(request), principal, serial, state, reason)
    except (InvalidInput, Conflict, NotFound) as exc:
        return see_other(request, _camera_url(serial, "#state"), error=str(exc))
    return see_other(request, _camera_url(serial), ok="Camera state changed.")


# Declared before the review UI's /ui/clips/{clip_id}: "unattributed" is not a clip id.
@router.get("/clips/unattributed")
def unattributed_page(
    request: Request,
    before: Annotated[str | None, Query(max_length=200)] = None,
    principal: Principal = Depends(ui_gate("clips.attribute")),
) -> Response:
    found = cameras.unattributed_clips(
        _ctx(request), principal, before=before, limit=PER_PAGE, count=True
    )
    return render(
        request,
        "unattributed.html",
        items=found.items,
        count=found.count,
        count_cap=COUNT_CAP,
        before=before,
        next_before=found.next_before,
    )


@router.post("/clips/{clip_id}/attribution")
def reattribute(
    clip_id: str,
    request: Request,
    officer_id: Annotated[str, Form(max_length=64)] = "",
    camera_serial: Annotated[str, Form(max_length=64)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = Depends(ui_gate("clips.attribute")),
    _: None = CSRF,
) -> Response:
    back = f"/ui/clips/{quote(clip_id, safe='')}#attribution"
    try:
        cameras.reattribute(
            _ctx(request),
            principal,
            clip_id,
            officer_id=officer_id.strip() or None,
            camera_serial=camera_serial.strip() or None,
            reason=reason,
        )
    except (InvalidInput, Conflict, NotFound) as exc:
        return see_other(request, back, error=str(exc))
    return see_other(request, back, ok="Attribution recorded in the ledger with your reason.")
