"""The retention pages: the disposal review queue, what falls due, and legal holds.

As everywhere in the UI, each route parses the form, calls the service the JSON API calls
(api/routes/retention.py) and redirects with the service's message; the service and the
policy decide who may do what.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from api.gates import ui_gate
from api.ui import session as ui_session
from api.ui.render import UIRoute, render, see_other
from api.ui.session import csrf_protect
from evidence.access import Principal
from evidence.context import Context
from evidence.errors import Conflict, InvalidInput, NotFound
from evidence.retention import service as retention

router = APIRouter(prefix="/ui", route_class=UIRoute, include_in_schema=False)

CSRF = Depends(csrf_protect)
PAGE = "/ui/retention"


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


_ANCHOR = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,40}")


def _back(back: str, fallback: str = PAGE) -> str:
    """The page the form came from (a UI path, plus a plain #anchor), else the queue."""
    path, _, anchor = back.partition("#")
    safe = ui_session.safe_next(path)
    if safe is None:
        return fallback
    return safe + (f"#{anchor}" if _ANCHOR.fullmatch(anchor) else "")


@router.get("/retention")
def retention_page(
    request: Request,
    within_days: Annotated[int, Query(ge=0, le=36500)] = 90,
    principal: Principal = Depends(ui_gate("retention.read")),
) -> Response:
    ctx = _ctx(request)
    return render(
        request,
        "retention.html",
        pending=retention.queue(ctx, principal, state="pending"),
        waiting=retention.queue(ctx, principal, state="approved"),
        due=retention.schedule(ctx, principal, within_days=within_days),
        holds=retention.list_holds(ctx, principal),
        within_days=within_days,
        notice_days=ctx.settings.retention_notice_days,
    )


@router.post("/retention/disposals/{disposal_id}")
def decide(
    disposal_id: str,
    request: Request,
    decision: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = Depends(ui_gate("retention.decide")),
    _: None = CSRF,
) -> Response:
    ctx = _ctx(request)
    try:
        if decision == "approve":
            done = retention.approve(ctx, principal, disposal_id, reason)
        elif decision == "retain":
            done = retention.retain(ctx, principal, disposal_id, reason)
        else:
            raise InvalidInput("choose approve or retain")
    except (InvalidInput, Conflict, NotFound) as exc:
        return see_other(request, PAGE, error=str(exc))
    if done["state"] == "disposed":
        return see_other(request, PAGE, ok="Disposed of; the tombstone is in the ledger.")
    if done["state"] == "retained":
        return see_other(request, PAGE, ok="Retained for another review period.")
    return see_other(
        request, PAGE, error=f"Approved, but not carried out yet: {done['error'] or done['state']}"
    )


@router.post("/holds")
def place_hold(
    request: Request,
    clip_id: Annotated[str, Form(max_length=36)] = "",
    case_id: Annotated[str, Form(max_length=36)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
    principal: Principal = Depends(ui_gate("holds.manage")),
    _: None = CSRF,
) -> Response:
    url = _back(back)
    try:
        retention.place_hold(
            _ctx(request),
            principal,
            reason=reason,
            clip_id=clip_id.strip() or None,
            case_id=case_id.strip() or None,
        )
    except (InvalidInput, NotFound) as exc:
        return see_other(request, url, error=str(exc))
    return see_other(request, url, ok="Legal hold placed: nothing it covers will be disposed of.")


@router.post("/holds/{hold_id}/release")
def release_hold(
    hold_id: str,
    request: Request,
    reason: Annotated[str, Form(max_length=500)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
    principal: Principal = Depends(ui_gate("holds.manage")),
    _: None = CSRF,
) -> Response:
    url = _back(back)
    try:
        retention.release_hold(_ctx(request), principal, hold_id, reason)
    except (InvalidInput, Conflict, NotFound) as exc:
        return see_other(request, url, error=str(exc))
    return see_other(
        request, url, ok="Hold released. Clips it covered follow their retention dates again."
    )
