"""Public submissions in the browser (docs/public-submissions.md).

The member of the public's pages, `/submit/{token}` and its receipt, need no account: the
token in the path is the credential (as for the JSON routes, api/routes/submissions.py).
They are plain pages with one external script (api/static/submit.js) under a stricter
policy than the rest of the UI: nothing but this origin's script, style and API, no forms
posted anywhere, never cached (the address holds the token). An expired or used link is a
410 page saying so in plain words.

The evidence officer's pages under /ui/submissions create invitations and decide what
arrived; as everywhere in the UI, each route parses the form, calls the service the JSON
API calls and redirects with its message.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from api.gates import public, ui_gate
from api.routes.submissions import source_of
from api.ui.render import UIRoute, render, see_other, templates
from api.ui.session import csrf_protect
from evidence.access import Principal
from evidence.context import Context
from evidence.errors import (
    Conflict,
    InvalidInput,
    LinkGone,
    NotFound,
    RateLimitUnavailable,
    TooLarge,
    TooManyAttempts,
)
from evidence.submissions import service

router = APIRouter(route_class=UIRoute, include_in_schema=False)

CSRF = Depends(csrf_protect)
PAGE = "/ui/submissions"

PUBLIC_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _public_page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Content-Security-Policy"] = PUBLIC_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def _unusable(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status", 404)
    titles = {
        410: "This link can no longer be used",
        404: "This link does not work",
        429: "Please wait a moment",
        503: "Please try again shortly",
    }
    detail = str(exc)
    if isinstance(exc, RateLimitUnavailable):  # the operator's words stay in the server log
        detail = "The service is busy for a moment. Please try this link again in a minute."
    return _public_page(
        request, "submit_gone.html", status, title=titles.get(status, "Error"), detail=detail
    )


@router.get("/submit/{token}")
def submit_page(token: str, request: Request, _: None = Depends(public)) -> Response:
    try:
        link = service.describe_link(_ctx(request), token, source_of(request))
    except (LinkGone, NotFound, TooManyAttempts, RateLimitUnavailable) as exc:
        return _unusable(request, exc)
    return _public_page(request, "submit.html", link=link, token=token)


@router.get("/submit/{token}/receipt")
def receipt_page(token: str, request: Request, _: None = Depends(public)) -> Response:
    try:
        done = service.receipt(_ctx(request), token, source_of(request))
    except (LinkGone, NotFound, TooManyAttempts, RateLimitUnavailable, Conflict) as exc:
        return _unusable(request, exc)
    return _public_page(request, "submit_receipt.html", receipt=done)


# -- the evidence officer's pages ---------------------------------------------------------------


@router.get("/ui/submissions")
def submissions_page(
    request: Request, principal: Principal = Depends(ui_gate("submissions.review"))
) -> Response:
    ctx = _ctx(request)
    return render(
        request,
        "submissions.html",
        queue=service.review_queue(ctx, principal),
        invitations=service.list_invitations(ctx, principal),
        issued=None,
        default_days=ctx.settings.submission_expiry_days,
        default_files=ctx.settings.submission_max_files,
    )


@router.post("/ui/submissions/invitations")
def create_invitation(
    request: Request,
    case_id: Annotated[str, Form(max_length=36)] = "",
    reference: Annotated[str, Form(max_length=64)] = "",
    expires_days: Annotated[int, Form(ge=1, le=30)] = 3,
    max_files: Annotated[int, Form(ge=1, le=100)] = 10,
    max_mb: Annotated[int, Form(ge=1, le=1024 * 1024)] = 4096,
    name: Annotated[str, Form(max_length=120)] = "",
    phone: Annotated[str, Form(max_length=40)] = "",
    email: Annotated[str, Form(max_length=254)] = "",
    principal: Principal = Depends(ui_gate("submissions.invite")),
    _: None = CSRF,
) -> Response:
    ctx = _ctx(request)
    contact = {k: v for k, v in {"name": name, "phone": phone, "email": email}.items() if v}
    try:
        issued = service.create_invitation(
            ctx,
            principal,
            case_id=case_id.strip() or None,
            reference=reference.strip() or None,
            expires_days=expires_days,
            max_files=max_files,
            max_bytes=max_mb * 1024 * 1024,
            contact=contact or None,
        )
    except (InvalidInput, NotFound) as exc:
        return see_other(request, PAGE, error=str(exc))
    # Shown once, on this answer: only the token's hash is kept.
    return render(
        request,
        "submissions.html",
        queue=service.review_queue(ctx, principal),
        invitations=service.list_invitations(ctx, principal),
        issued=issued,
        default_days=ctx.settings.submission_expiry_days,
        default_files=ctx.settings.submission_max_files,
    )


@router.post("/ui/submissions/invitations/{invitation_id}/withdraw")
def withdraw_invitation(
    invitation_id: str,
    request: Request,
    reason: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = Depends(ui_gate("submissions.invite")),
    _: None = CSRF,
) -> Response:
    try:
        service.withdraw_invitation(_ctx(request), principal, invitation_id, reason=reason)
    except (InvalidInput, NotFound) as exc:
        return see_other(request, PAGE, error=str(exc))
    return see_other(request, PAGE, ok="Link withdrawn: it no longer opens.")


@router.post("/ui/submissions/files/{file_id}")
def decide(
    file_id: str,
    request: Request,
    decision: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = Depends(ui_gate("submissions.review")),
    _: None = CSRF,
) -> Response:
    ctx = _ctx(request)
    try:
        if decision == "accept":
            done = service.accept(ctx, principal, file_id, reason=reason)
            request.app.state.relay_outbox()
        elif decision == "reject":
            done = service.reject(ctx, principal, file_id, reason=reason)
        else:
            raise InvalidInput("choose accept or reject")
    except (InvalidInput, Conflict, NotFound, TooLarge) as exc:
        return see_other(request, PAGE, error=str(exc))
    if done["state"] == "accepted":
        return see_other(request, PAGE, ok="Accepted: it is a clip now, being processed.")
    return see_other(
        request, PAGE, ok=f"Rejected: kept under the rule '{service.rejected_rule(ctx)}'."
    )
