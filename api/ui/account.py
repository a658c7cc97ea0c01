"""A person's own account page (password, two-factor sign-in) and the enrolment page an
enrolment link opens. Each route parses the form, calls the service the JSON API calls
(evidence/accounts/own.py, evidence/accounts/enrolment.py) and renders.

The QR code is an SVG made on the server and shown as a data: image, so the page needs no
script (the UI's policy forbids inline code). Recovery codes are shown once: they cross the
redirect sealed to the session (`session.put_once`), like a new device's key.

The enrolment page is public: the token in its path (256 random bits, only its hash stored,
one use, expiring) is the credential, and its form carries the sign-in form's double-submit
nonce, as there is no session yet to bind a CSRF token to.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from api.gates import public, ui_gate
from api.ui import session as ui_session
from api.ui.render import UIRoute, render, see_other
from api.ui.session import csrf_protect
from evidence.access import Principal
from evidence.accounts import enrolment, own
from evidence.accounts.models import User
from evidence.accounts.service import MIN_PASSWORD
from evidence.context import Context
from evidence.errors import InvalidInput, NotFound
from evidence.identity.oidc import OIDC_HASH_PREFIX

router = APIRouter(prefix="/ui", route_class=UIRoute, include_in_schema=False)

CSRF = Depends(csrf_protect)
CODES_PAGE = "/ui/account/recovery-codes"


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- your account ----------------------------------------------------------------------------------


def _account_page(
    request: Request,
    principal: Principal,
    *,
    status: int = 200,
    password_error: str | None = None,
    totp_error: str | None = None,
) -> Response:
    ctx = _ctx(request)
    with ctx.db.session() as s:
        user = s.get(User, principal.user_id)
        local = user is not None and not user.password_hash.startswith(OIDC_HASH_PREFIX)
        totp_on = bool(user and user.totp_secret)
    pending = own.pending_totp(ctx, principal) if local else None
    return render(
        request,
        "account.html",
        status=status,
        local=local,
        totp_on=totp_on,
        pending=pending,
        qr=own.qr_data_uri(pending.qr_svg) if pending else None,
        codes_left=own.recovery_codes_left(ctx, principal) if totp_on else 0,
        min_password=MIN_PASSWORD,
        password_error=password_error,
        totp_error=totp_error,
    )


@router.get("/account")
def account_page(
    request: Request, principal: Principal = Depends(ui_gate("account.manage"))
) -> Response:
    return _account_page(request, principal)


@router.post("/account/password")
def change_password(
    request: Request,
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    repeat: Annotated[str, Form(max_length=1024)] = "",
    principal: Principal = Depends(ui_gate("account.manage")),
    _: None = CSRF,
) -> Response:
    """On success the session carries the fresh token: every other session has ended."""
    if new != repeat:
        return _account_page(
            request,
            principal,
            status=422,
            password_error="the new password and its repetition differ",
        )
    try:
        issued = own.change_password(_ctx(request), principal, current, new, source_ip=_ip(request))
    except InvalidInput as exc:
        return _account_page(request, principal, status=exc.status, password_error=str(exc))
    response = see_other(
        request, "/ui/account", ok="Password changed. Your other sessions have been signed out."
    )
    ui_session.start_session(_ctx(request), request, response, issued)
    return response


@router.post("/account/totp")
def start_totp(
    request: Request, principal: Principal = Depends(ui_gate("account.manage")), _: None = CSRF
) -> Response:
    try:
        own.start_totp(_ctx(request), principal)
    except InvalidInput as exc:
        return _account_page(request, principal, status=exc.status, totp_error=str(exc))
    return see_other(request, "/ui/account#totp")


@router.post("/account/totp/confirm")
def confirm_totp(
    request: Request,
    code: Annotated[str, Form(max_length=16)] = "",
    principal: Principal = Depends(ui_gate("account.manage")),
    _: None = CSRF,
) -> Response:
    try:
        codes = own.confirm_totp(_ctx(request), principal, code)
    except InvalidInput as exc:
        return _account_page(request, principal, status=exc.status, totp_error=str(exc))
    return _show_codes(request, codes)


@router.post("/account/recovery-codes")
def new_recovery_codes(
    request: Request,
    code: Annotated[str, Form(max_length=16)] = "",
    principal: Principal = Depends(ui_gate("account.manage")),
    _: None = CSRF,
) -> Response:
    try:
        codes = own.new_recovery_codes(_ctx(request), principal, code)
    except InvalidInput as exc:
        return _account_page(request, principal, status=exc.status, totp_error=str(exc))
    return _show_codes(request, codes)


def _show_codes(request: Request, codes: list[str]) -> Response:
    response = see_other(request, CODES_PAGE)
    ui_session.put_once(request, response, CODES_PAGE, json.dumps(codes).encode())
    return response


@router.get("/account/recovery-codes")
def recovery_codes(
    request: Request, principal: Principal = Depends(ui_gate("account.manage"))
) -> Response:
    sealed = ui_session.take_once(request)
    response = render(request, "recovery_codes.html", codes=json.loads(sealed) if sealed else None)
    ui_session.clear_once(request, response, CODES_PAGE)
    return response


# -- enrolment: a link opened by its owner, before they can sign in ------------------------------


def _enrol_form(
    request: Request, token: str, *, status: int = 200, error: str | None = None
) -> Response:
    try:
        link = enrolment.describe(_ctx(request), token)
    except NotFound as exc:
        return render(request, "enrol.html", status=404, link=None, gone=str(exc))
    nonce = ui_session.new_login_nonce()
    response = render(
        request,
        "enrol.html",
        status=status,
        link=link,
        token=token,
        nonce=nonce,
        error=error,
        min_password=MIN_PASSWORD,
    )
    ui_session.set_login_nonce(request, response, nonce)
    return response


@router.get("/enrol/{token}")
def enrol_page(token: str, request: Request, _: None = Depends(public)) -> Response:
    return _enrol_form(request, token)


@router.post("/enrol/{token}")
def enrol(
    token: str,
    request: Request,
    password: Annotated[str, Form(max_length=1024)] = "",
    repeat: Annotated[str, Form(max_length=1024)] = "",
    nonce: Annotated[str, Form(max_length=200)] = "",
    _: None = Depends(public),
) -> Response:
    if not ui_session.login_nonce_ok(request, nonce):
        return _enrol_form(
            request,
            token,
            status=400,
            error="the form had expired: please type your password again",
        )
    if password != repeat:
        return _enrol_form(
            request, token, status=422, error="the password and its repetition differ"
        )
    try:
        username = enrolment.enrol(_ctx(request), token, password, source_ip=_ip(request))
    except InvalidInput as exc:
        return _enrol_form(request, token, status=exc.status, error=str(exc))
    except NotFound as exc:
        return render(request, "enrol.html", status=404, link=None, gone=str(exc))
    return see_other(
        request,
        "/ui/login?next=/ui/account",
        ok=f"Password set for {username}. Sign in with it now.",
    )
