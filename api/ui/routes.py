"""The review UI's pages. Each one parses its input, calls the same `evidence` service the
JSON API route calls (api/routes/*.py), and renders a template; access is decided by the
policy (evidence/access.py) through `ui_gate` and the services, never here.

Every route declares its gate: `Depends(ui_gate(action))`, or `Depends(public)` for the
sign-in page, static files and sign-out. Every POST also depends on `csrf_protect`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from api.gates import public, ui_gate
from api.security import CSP
from api.streaming import csv_download, footage_response
from api.ui import session as ui_session
from api.ui.render import STATIC, UIRoute, render, see_other
from api.ui.session import csrf_protect
from evidence import audit, clock, redactions, viewings
from evidence.access import Principal, allowed, check_reason, copy_to_play, visible_clip
from evidence.accounts import organisations
from evidence.accounts.models import Role
from evidence.bundles import service as bundles
from evidence.cameras import service as cameras
from evidence.cases import service as cases
from evidence.cases import shares as disclosure
from evidence.clips import service as clips
from evidence.clips.custody import check_custody
from evidence.clips.service import SearchFilters
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import (
    AccessDenied,
    Conflict,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    RateLimitUnavailable,
    TooManyAttempts,
)
from evidence.identity import lockout, oidc, signin, tokens
from evidence.ledger import catalogue
from evidence.retention import service as retention
from evidence.types import MAX_BIGINT

router = APIRouter(prefix="/ui", route_class=UIRoute, include_in_schema=False)

PER_PAGE = 24
CSRF = Depends(csrf_protect)


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _ip(request: Request) -> str:
    # As the token route: behind a proxy, run uvicorn with --proxy-headers.
    return request.client.host if request.client else "unknown"


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


# -- signing in and out ----------------------------------------------------------------------


@router.get("/login")
def login_page(
    request: Request,
    next: Annotated[str | None, Query(max_length=2000)] = None,
    expired: bool = False,
    _: None = Depends(public),
) -> Response:
    """The sign-in form, below the system-use notice."""
    if ui_session.current_session(request) is not None and not expired:
        try:
            ui_session.ui_principal(request)
            return RedirectResponse(ui_session.safe_next(next) or "/ui/", status_code=303)
        except ui_session.LoginRequired:
            pass
    return _login_form(
        request, next=next, notice="Your session has ended: sign in again." if expired else None
    )


def _login_form(
    request: Request,
    *,
    next: str | None,
    error: str | None = None,
    notice: str | None = None,
    username: str = "",
    status: int = 200,
) -> Response:
    settings = _ctx(request).settings
    nonce = ui_session.new_login_nonce()
    response = render(
        request,
        "login.html",
        status=status,
        next=ui_session.safe_next(next) or "",
        error=error,
        notice=notice,
        username=username,
        nonce=nonce,
        password_sign_in=settings.identity_mode != "oidc",
        idp_sign_in=oidc.oidc_browser_sign_in_enabled(settings),
        idp_name=settings.oidc_display_name,
    )
    csp = _login_csp(settings)
    if csp:
        response.headers["Content-Security-Policy"] = csp
    ui_session.set_login_nonce(request, response, nonce)
    return response


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$")


def _login_csp(settings: Settings) -> str | None:
    """The sign-in page's policy when it has the IdP button: `form-action` also names the
    IdP's origin, because browsers apply form-action to the redirect that follows a form
    (GET /ui/login/oidc answers 303 to the IdP). Every other page keeps `form-action 'self'`."""
    if not oidc.oidc_browser_sign_in_enabled(settings):
        return None
    url = urlsplit(str(settings.oidc_authorization_url))
    origin = f"{url.scheme}://{url.netloc}"
    if not _ORIGIN.match(origin):
        return None  # not a plain origin: leave the policy alone (the button will not work)
    return CSP.replace("form-action 'self'", f"form-action 'self' {origin}")


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    totp: Annotated[str, Form(max_length=32)] = "",  # a code, or a recovery code
    acknowledge: Annotated[str, Form(max_length=10)] = "",
    nonce: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
    _: None = Depends(public),  # the sign-in form: rate-limited and audited by signin.login
) -> Response:
    """Checks the password (and code) through `signin.login`, the same path, lock-out and
    rate limit as POST /api/v1/auth/token; on success the token goes into the session cookie."""

    def again(error: str, status: int) -> Response:
        return _login_form(request, next=next, error=error, username=username, status=status)

    if _ctx(request).settings.identity_mode == "oidc":
        return again(
            "Password sign-in is turned off here: sign in with "
            f"{_ctx(request).settings.oidc_display_name}.",
            403,
        )
    if not ui_session.login_nonce_ok(request, nonce):
        return again("The sign-in form had expired. Please sign in again.", 400)
    if acknowledge != "yes":
        return again("Confirm that you have read the notice above to continue.", 400)
    if not username or not password:
        return again(lockout.REFUSED.capitalize() + ".", 401)
    try:
        issued = signin.login(
            _ctx(request), username, password, totp.strip() or None, source_ip=_ip(request)
        )
    except TooManyAttempts as exc:
        response = again(
            f"Too many failed sign-ins from this address. Try again in {exc.retry_after} seconds.",
            429,
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except NotAuthenticated:
        # One message for every refusal: never which part was wrong.
        return again(lockout.REFUSED.capitalize() + ".", 401)
    except RateLimitUnavailable:
        # Failing closed: no sign-in while failed attempts cannot be counted.
        response = again("Sign-in is unavailable for a moment. Please try again in a minute.", 503)
        response.headers["Retry-After"] = "30"
        return response
    response = RedirectResponse(ui_session.safe_next(next) or "/ui/", status_code=303)
    ui_session.start_session(_ctx(request), request, response, issued)
    return response


@router.get("/login/oidc")
def login_oidc(
    request: Request,
    next: Annotated[str | None, Query(max_length=2000)] = None,
    acknowledge: Annotated[str, Query(max_length=10)] = "",
    _: None = Depends(public),
) -> Response:
    """Sends the browser to the force's IdP (authorization code flow, PKCE S256). Public: it
    only redirects, writes nothing, and the flow's state, nonce and verifier live in a sealed
    short-lived cookie of this browser."""
    settings = _ctx(request).settings
    if not oidc.oidc_browser_sign_in_enabled(settings):
        return _login_form(
            request,
            next=next,
            status=404,
            error="Sign-in through the identity provider is not set up here.",
        )
    if acknowledge != "yes":
        return _login_form(
            request,
            next=next,
            status=400,
            error="Confirm that you have read the notice above to continue.",
        )
    flow = ui_session.new_oidc_flow(next)
    response = RedirectResponse(
        oidc.oidc_authorization_url(
            settings, state=flow.state, nonce=flow.nonce, verifier=flow.verifier
        ),
        status_code=303,
    )
    ui_session.put_oidc_flow(request, response, flow)
    return response


_IDP_ERROR = re.compile(r"^[a-z_]{1,40}$")  # RFC 6749 §4.1.2.1 error codes


@router.get("/login/oidc/callback")
def login_oidc_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    _: None = Depends(public),  # checked against this browser's sealed flow cookie
) -> Response:
    """Where the IdP sends the browser back: state checked (constant time), code exchanged
    with the PKCE verifier, id_token (nonce) and access token checked, `user.logged_in`
    (method oidc) written, session started. Any failure: the sign-in page with a message,
    nothing written. The IdP's own words are never echoed except a plain error code."""
    ctx = _ctx(request)
    flow = ui_session.take_oidc_flow(request)

    def refused(message: str, status: int) -> Response:
        response = _login_form(
            request, next=flow.next if flow else None, error=message, status=status
        )
        ui_session.clear_oidc_flow(request, response)
        return response

    if not oidc.oidc_browser_sign_in_enabled(ctx.settings):
        return refused("Sign-in through the identity provider is not set up here.", 404)
    if not ui_session.oidc_state_ok(flow, state):
        return refused(
            "That sign-in could not be matched to this browser (it expired, was "
            "already used, or was started elsewhere). Please try again.",
            400,
        )
    assert flow is not None
    if error:
        code_name = error if _IDP_ERROR.match(error) else "an unrecognised error"
        message = (
            "You did not allow the sign-in at the identity provider (access_denied)."
            if error == "access_denied"
            else f"The identity provider did not sign you in ({code_name})."
        )
        return refused(message, 401)
    if not code:
        return refused("The identity provider sent no authorization code. Please try again.", 400)
    try:
        done = oidc.oidc_sign_in(
            ctx, code, verifier=flow.verifier, nonce=flow.nonce, source_ip=_ip(request)
        )
    except AccessDenied as exc:
        return refused(f"Signed in at the identity provider, but refused here: {exc}.", 403)
    except (NotAuthenticated, NotFound) as exc:
        return refused(f"Sign-in through the identity provider failed: {exc}.", 401)
    response = RedirectResponse(flow.next, status_code=303)
    ui_session.start_session(ctx, request, response, done.token)
    ui_session.clear_oidc_flow(request, response)
    return response


@router.post("/logout")
def logout(request: Request, _: None = Depends(public), __: None = CSRF) -> Response:
    """Ends the session's token (refused from now on, even if the cookie was copied) and
    clears the cookie. A token from the force's IdP is the IdP's to end: for it the cookie is
    cleared, and the IdP's own session is left alone (see docs/ui.md)."""
    session = ui_session.current_session(request)
    if session is not None:
        try:
            tokens.revoke_token(_ctx(request), session.token, source_ip=_ip(request))
        except (NotAuthenticated, InvalidInput):
            pass  # not a token we issued: nothing to end here
    response = RedirectResponse("/ui/login", status_code=303)
    ui_session.end_session(request, response)
    return response


@router.get("/")
def home(principal: Principal = Depends(ui_gate("session.read"))) -> Response:
    # Recipients land on the cases shared with them.
    landing = {Role.admin: "/ui/users", Role.cps: "/ui/cases", Role.external: "/ui/cases"}
    return RedirectResponse(landing.get(principal.role, "/ui/clips"), status_code=303)


@router.get("/static/{name}")
def static(name: str, _: None = Depends(public)) -> Response:
    """The UI's CSS, JS and icons: only files that exist in api/static, by exact name."""
    entry = STATIC.get(name)
    if entry is None:
        raise NotFound(f"no static file {name!r}")
    path, media_type, digest = entry
    return FileResponse(
        path,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable", "ETag": f'"{digest}"'},
    )


@router.get("/about")
def about(request: Request, _: None = Depends(public)) -> Response:
    """The public keys a court pins and the recipe to verify a bundle.

    Public, like GET /api/v1/ledger/key and /api/v1/bundles/keys that it shows: public keys
    and their validity periods reveal nothing about cases, footage or people, and the people
    who need them (a court, the defence) have no account here. A signed-in person still gets
    their navigation: the session is read when there is one, never required."""
    try:
        ui_session.ui_principal(request)
    except ui_session.LoginRequired:
        pass
    ctx = _ctx(request)
    return render(
        request,
        "about.html",
        ledger_key=ctx.ledger.verifier_key,
        bundle_keys=bundles.published_keys(ctx),
    )


# -- search ------------------------------------------------------------------------------------


def _date(value: str | None, name: str, errors: list[str]) -> dt.date | None:
    if not _blank(value):
        return None
    try:
        return dt.date.fromisoformat(value.strip())  # type: ignore[union-attr]
    except ValueError:
        errors.append(f"{name} is not a date (YYYY-MM-DD)")
        return None


def _midnight(d: dt.date | None, *, days: int = 0) -> dt.datetime | None:
    if d is None:
        return None
    return dt.datetime.combine(d + dt.timedelta(days=days), dt.time(), tzinfo=dt.UTC)


@router.get("/clips")
def search_page(
    request: Request,
    officer: Annotated[str | None, Query(max_length=64)] = None,
    date_from: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    date_to: Annotated[str | None, Query(alias="to", max_length=20)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    state: Annotated[str | None, Query(max_length=16)] = None,
    case: Annotated[str | None, Query(max_length=36)] = None,
    view: Annotated[str, Query(pattern="^(list|grid)$")] = "list",
    before: Annotated[str | None, Query(max_length=200)] = None,
    principal: Principal = Depends(ui_gate("clips.search")),
) -> Response:
    ctx = _ctx(request)
    errors: list[str] = []
    d_from, d_to = _date(date_from, "From", errors), _date(date_to, "To", errors)
    filters = SearchFilters(
        officer_id=_blank(officer),
        recorded_from=_midnight(d_from),
        recorded_to=_midnight(d_to, days=1),  # "to" is inclusive: the whole day
        case_id=_blank(case),
        category=_blank(category),
        tag=_blank(tag),
        text=_blank(q),
        state=_blank(state),
    )
    try:
        found = clips.search(ctx, principal, filters, before=before, limit=PER_PAGE)
    except InvalidInput as exc:  # e.g. two characters of free text: say so over the form
        errors.append(str(exc))
        found = clips.ClipPage([], None)
    open_cases = cases.list_cases(ctx, principal) if principal.role == Role.evidence_officer else []
    params = {
        k: v
        for k, v in {
            "officer": officer,
            "from": date_from,
            "to": date_to,
            "category": category,
            "tag": tag,
            "q": q,
            "state": state,
            "case": case,
        }.items()
        if _blank(v)
    }
    return render(
        request,
        "search.html",
        items=found.items,
        before=before,
        next_before=found.next_before,
        params=params,
        view=view,
        errors=errors,
        categories=ctx.settings.categories,
        cases=open_cases,
        query=lambda **extra: urlencode(
            {k: v for k, v in {**params, "view": view, **extra}.items() if v is not None}
        ),
        thumbnails=principal.role != Role.auditor,  # auditors play footage only with a grant
        filtered=bool(params),
    )


# -- a clip ------------------------------------------------------------------------------------


def _may_play(ctx: Context, principal: Principal, clip_id: str) -> bool:
    """The policy's answer to "may this person play this clip" (an auditor needs a grant)."""
    try:
        with ctx.db.session() as s:
            visible_clip(s, principal, clip_id, footage=True)
    except (AccessDenied, NotFound):
        return False
    return allowed(principal, "clips.view_footage")


@router.get("/clips/{clip_id}")
def clip_page(
    clip_id: str,
    request: Request,
    reason: Annotated[str | None, Query(max_length=100)] = None,
    detail: Annotated[str | None, Query(max_length=400)] = None,
    principal: Principal = Depends(ui_gate("clips.read")),
) -> Response:
    """Metadata, hashes, integrity, player (after a reason), bookmarks, tags, custody."""
    ctx = _ctx(request)
    clip = clips.detail(ctx, principal, clip_id)
    check = check_custody(ctx, clip["custody"])
    chosen, reason_error = None, None
    if reason:
        text = f"{reason}: {detail.strip()}" if detail and detail.strip() else reason
        try:
            chosen = check_reason(text, ctx.settings.access_reasons)
        except InvalidInput as exc:
            reason_error = str(exc)
    kinds = {d["kind"] for d in clip["derivatives"]}
    with ctx.db.session() as s:  # which copy the player opens: the policy's answer
        play = copy_to_play(s, principal, clip_id, kinds)
    may_play = _may_play(ctx, principal, clip_id) or (
        not play.original and allowed(principal, "clips.view_footage")
    )
    history = [r.as_dict() for r in cameras.attribution_history(ctx, principal, clip_id)]
    return render(
        request,
        "clip.html",
        clip=clip,
        check=check,
        reasons=ctx.settings.access_reasons,
        attributions=history,
        categories=ctx.settings.categories,
        may_play=may_play,
        play=play,
        has_copy=play.kind is not None,
        has_thumbnail="thumbnail" in kinds and play.original,
        reason=chosen,
        reason_code=reason or "",
        reason_detail=detail or "",
        reason_error=reason_error,
        rejection=next(
            (c["entry"] for c in clip["custody"] if c["type"] == "upload.rejected"), None
        ),
        q_reason=urlencode({"reason": chosen}) if chosen else "",
    )


@router.get("/clips/{clip_id}/stream")
def stream(
    clip_id: str,
    request: Request,
    reason: Annotated[str | None, Query(max_length=500)] = None,
    kind: Annotated[
        str, Query(pattern=r"^(proxy|redaction-[1-9][0-9]{0,8}|watermark-[0-9a-f]{20})$")
    ] = "proxy",
    principal: Principal = Depends(ui_gate("clips.view_footage")),
) -> Response:
    """Opens a viewing (access, the ledger entry) and sends the player to its URL, where
    its Range requests are served without a query each (evidence/viewings.py); `kind`: the
    proxy or a redacted copy (all a recipient of a redacted-only exhibit may play)."""
    return _to_viewing(request, principal, clip_id, kind, reason)


@router.get("/clips/{clip_id}/original")
def original(
    clip_id: str,
    request: Request,
    reason: Annotated[str | None, Query(max_length=500)] = None,
    principal: Principal = Depends(ui_gate("clips.view_footage")),
) -> Response:
    return _to_viewing(request, principal, clip_id, "original", reason)


def _to_viewing(
    request: Request, principal: Principal, clip_id: str, kind: str, reason: str | None
) -> Response:
    source_ip = request.client.host if request.client else None
    v = viewings.open_clip_viewing(
        _ctx(request), principal, clip_id, kind, reason=reason, source_ip=source_ip
    )
    return RedirectResponse(v.url, status_code=307, headers={"Cache-Control": "no-store"})


@router.get("/clips/{clip_id}/thumbnail")
async def thumbnail(
    clip_id: str, request: Request, principal: Principal = Depends(ui_gate("clips.view_footage"))
) -> Response:
    return await footage_response(request, principal, clip_id, "thumbnail", None)


def _clip_url(clip_id: str, anchor: str = "") -> str:
    return f"/ui/clips/{clip_id}" + (f"#{anchor}" if anchor else "")


def _ms(value: str, what: str) -> int:
    """'83.4' (seconds) or '1:23.4' (minutes:seconds) -> 83400, for the forms' times."""
    try:
        return _at_ms(value)
    except InvalidInput:
        raise InvalidInput(
            f"give the {what} as seconds (83.4) or minutes:seconds (1:23.4)"
        ) from None


def _whole(value: str, what: str) -> int:
    if not value.strip().isdigit():
        raise InvalidInput(f"the box's {what} is a whole number of pixels")
    return int(value)


@router.post("/clips/{clip_id}/redactions")
def request_redaction(
    clip_id: str,
    request: Request,
    x: Annotated[str, Form(max_length=6)] = "",
    y: Annotated[str, Form(max_length=6)] = "",
    w: Annotated[str, Form(max_length=6)] = "",
    h: Annotated[str, Form(max_length=6)] = "",
    box_from: Annotated[str, Form(max_length=20)] = "",
    box_to: Annotated[str, Form(max_length=20)] = "",
    mute_from: Annotated[str, Form(max_length=20)] = "",
    mute_to: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = Depends(ui_gate("clips.redact")),
    _: None = CSRF,
) -> Response:
    """One black box and/or one muted range per request, as the JSON API's
    POST /api/v1/clips/{id}/redactions (which takes many)."""
    to = _clip_url(clip_id, "redact")
    try:
        boxes = (
            [
                {
                    "x": _whole(x, "left edge"),
                    "y": _whole(y, "top edge"),
                    "w": _whole(w, "width"),
                    "h": _whole(h, "height"),
                    "start_ms": _ms(box_from, "box's start"),
                    "end_ms": _ms(box_to, "box's end"),
                }
            ]
            if any(v.strip() for v in (x, y, w, h))
            else []
        )
        mute = (
            [{"start_ms": _ms(mute_from, "mute start"), "end_ms": _ms(mute_to, "mute end")}]
            if mute_from.strip() or mute_to.strip()
            else []
        )
        if not boxes and not mute:
            raise InvalidInput("give a box to black out, a stretch of sound to mute, or both")
        r = redactions.request_redaction(_ctx(request), principal, clip_id, boxes, mute, reason)
    except (InvalidInput, Conflict, NotFound) as exc:
        return see_other(request, to, error=str(exc))
    request.app.state.relay_outbox()
    return see_other(
        request,
        to,
        ok=f"Redaction requested: {r['kind']} is being made from the "
        "original, which is not changed.",
    )


@router.post("/clips/{clip_id}/tags")
def add_tag(
    clip_id: str,
    request: Request,
    tag: Annotated[str, Form(max_length=64)] = "",
    principal: Principal = Depends(ui_gate("clips.tag")),
    _: None = CSRF,
) -> Response:
    try:
        clips.add_tag(_ctx(request), principal, clip_id, tag)
    except InvalidInput as exc:
        return see_other(request, _clip_url(clip_id, "tags"), error=str(exc))
    return see_other(request, _clip_url(clip_id, "tags"), ok=f"Tag “{tag.strip()}” added.")


@router.post("/clips/{clip_id}/tags/remove")
def remove_tag(
    clip_id: str,
    request: Request,
    tag: Annotated[str, Form(max_length=64)] = "",
    principal: Principal = Depends(ui_gate("clips.tag")),
    _: None = CSRF,
) -> Response:
    try:
        clips.remove_tag(_ctx(request), principal, clip_id, tag)
    except NotFound as exc:
        return see_other(request, _clip_url(clip_id, "tags"), error=str(exc))
    return see_other(request, _clip_url(clip_id, "tags"), ok=f"Tag “{tag}” removed.")


@router.post("/clips/{clip_id}/category")
def set_category(
    clip_id: str,
    request: Request,
    category: Annotated[str, Form(max_length=64)] = "",
    principal: Principal = Depends(ui_gate("clips.categorise")),
    _: None = CSRF,
) -> Response:
    try:
        clips.set_category(_ctx(request), principal, clip_id, category)
    except InvalidInput as exc:
        return see_other(request, _clip_url(clip_id, "tags"), error=str(exc))
    return see_other(request, _clip_url(clip_id, "tags"), ok=f"Category set to “{category}”.")


_TIME = re.compile(r"^\s*(?:(\d{1,3}):)?(\d{1,5}(?:\.\d{1,3})?)\s*$")


def _at_ms(value: str) -> int:
    """'83.4' or '1:23.4' (minutes:seconds) -> 83400."""
    m = _TIME.match(value or "")
    if not m:
        raise InvalidInput("give the bookmark's time as seconds (83.4) or minutes:seconds (1:23.4)")
    return round((int(m.group(1) or 0) * 60 + float(m.group(2))) * 1000)


@router.post("/clips/{clip_id}/bookmarks")
def add_bookmark(
    clip_id: str,
    request: Request,
    at: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
    principal: Principal = Depends(ui_gate("clips.bookmark")),
    _: None = CSRF,
) -> Response:
    # Back to the page it came from, which keeps the chosen reason and so the player.
    back = ui_session.safe_next(back) or ""
    url = back if back.startswith(_clip_url(clip_id)) else _clip_url(clip_id)
    url += "#bookmarks"
    try:
        b = clips.add_bookmark(_ctx(request), principal, clip_id, _at_ms(at), note)
    except InvalidInput as exc:
        return see_other(request, url, error=str(exc))
    return see_other(request, url, ok=f"Bookmark added at {b['at_ms'] / 1000:.1f} s.")


# -- cases --------------------------------------------------------------------------------------


@router.get("/cases")
def cases_page(request: Request, principal: Principal = Depends(ui_gate("cases.read"))) -> Response:
    return render(request, "cases.html", cases=cases.list_cases(_ctx(request), principal))


@router.post("/cases")
def create_case(
    request: Request,
    title: Annotated[str, Form(max_length=255)] = "",
    reference: Annotated[str, Form(max_length=100)] = "",
    principal: Principal = Depends(ui_gate("cases.create")),
    _: None = CSRF,
) -> Response:
    try:
        case = cases.create_case(_ctx(request), principal, title, reference)
    except InvalidInput as exc:
        return see_other(request, "/ui/cases", error=str(exc))
    return see_other(request, f"/ui/cases/{case['id']}", ok=f"Case {case['reference']} created.")


@router.get("/cases/{case_id}")
def case_page(
    case_id: str, request: Request, principal: Principal = Depends(ui_gate("cases.read"))
) -> Response:
    ctx = _ctx(request)
    case = cases.case_detail(ctx, principal, case_id)
    manages = allowed(principal, "shares.manage")
    shares = disclosure.shares_of(ctx, principal, case_id) if manages else []
    orgs = organisations.list_organisations(ctx, principal) if manages else []
    may_read = allowed(principal, "bundles.read")
    court = bundles.bundles_of(ctx, principal, case_id) if may_read else []
    holds = (
        retention.list_holds(ctx, principal, case_id=case_id)
        if allowed(principal, "retention.read")
        else []
    )
    today = clock.now().date()
    return render(
        request,
        "case.html",
        case=case,
        shares=shares,
        organisations=orgs,
        bundles=court,
        holds=holds,
        reasons=ctx.settings.access_reasons,
        notice_days=ctx.settings.retention_notice_days,
        share_min=(today + dt.timedelta(days=1)).isoformat(),
        share_max=(today + disclosure.MAX_SHARE).isoformat(),
        share_default=(today + dt.timedelta(days=28)).isoformat(),
    )


def _case_url(case_id: str, anchor: str = "") -> str:
    return f"/ui/cases/{case_id}" + (f"#{anchor}" if anchor else "")


@router.post("/cases/{case_id}/items/{clip_id}/ref")
def set_exhibit_ref(
    case_id: str,
    clip_id: str,
    request: Request,
    exhibit_ref: Annotated[str, Form(max_length=100)] = "",
    principal: Principal = Depends(ui_gate("cases.manage")),
    _: None = CSRF,
) -> Response:
    """Change an exhibit's reference (the service checks it and writes the ledger entry)."""
    try:
        done = cases.set_exhibit_ref(_ctx(request), principal, case_id, clip_id, exhibit_ref)
    except (InvalidInput, NotFound, Conflict) as exc:
        return see_other(request, _case_url(case_id, "exhibits"), error=str(exc))
    return see_other(
        request,
        _case_url(case_id, "exhibits"),
        ok=f"Exhibit {done['previous_ref']} is now {done['exhibit_ref']}.",
    )


@router.post("/cases/{case_id}/shares")
def share_case(
    case_id: str,
    request: Request,
    username: Annotated[str, Form(max_length=100)] = "",
    organisation_id: Annotated[str, Form(max_length=36)] = "",
    ends: Annotated[str, Form(max_length=20)] = "",
    purpose: Annotated[str, Form(max_length=disclosure.MAX_TEXT)] = "",
    legal_basis: Annotated[str, Form(max_length=disclosure.MAX_TEXT)] = "",
    scope: Annotated[str, Form(max_length=10)] = "case",
    exhibit: Annotated[list[str], Form(max_length=disclosure.MAX_EXHIBITS)] = [],  # noqa: B006
    redacted: Annotated[list[str], Form(max_length=disclosure.MAX_EXHIBITS)] = [],  # noqa: B006
    watermark: Annotated[str, Form(max_length=10)] = "",
    principal: Principal = Depends(ui_gate("shares.manage")),
    _: None = CSRF,
) -> Response:
    """Disclose the case (or the ticked exhibits) to a person or an organisation until
    00:00 UTC on the chosen day; ticked "redacted only" exhibits go as their redacted copy."""
    to = _case_url(case_id, "shares")
    try:
        expires = dt.datetime.combine(dt.date.fromisoformat(ends.strip()), dt.time(), dt.UTC)
    except ValueError:
        return see_other(request, to, error="Choose the day the share ends (YYYY-MM-DD).")
    try:
        share = disclosure.share_case(
            _ctx(request),
            principal,
            case_id,
            expires_at=expires,
            purpose=purpose,
            legal_basis=legal_basis,
            username=username.strip() or None,
            organisation_id=organisation_id.strip() or None,
            clip_ids=exhibit if scope == "exhibits" else None,
            redacted_only=redacted,
            watermark=watermark == "yes",
        )
    except (InvalidInput, NotFound) as exc:
        return see_other(request, to, error=str(exc))
    recipient = share["username"] or share["organisation"]
    return see_other(request, to, ok=f"Shared with {recipient} until {expires:%Y-%m-%d %H:%M} UTC.")


@router.post("/shares/{share_id}/revoke")
def revoke_share(
    share_id: str,
    request: Request,
    case_id: Annotated[str, Form(max_length=36)] = "",
    principal: Principal = Depends(ui_gate("shares.manage")),
    _: None = CSRF,
) -> Response:
    to = _case_url(case_id, "shares") if _IDS.fullmatch(case_id) else "/ui/cases"
    try:
        disclosure.revoke_share(_ctx(request), principal, share_id)
    except NotFound as exc:
        return see_other(request, to, error=str(exc))
    return see_other(request, to, ok="Share revoked: the recipient no longer sees this case.")


@router.post("/cases/{case_id}/bundles")
def request_bundle(
    case_id: str,
    request: Request,
    include_proxies: Annotated[str, Form(max_length=10)] = "",
    include_redactions: Annotated[str, Form(max_length=10)] = "",
    share_id: Annotated[str, Form(max_length=36)] = "",
    principal: Principal = Depends(ui_gate("bundles.request")),
    _: None = CSRF,
) -> Response:
    """Queue a court bundle (the worker builds it), as POST /api/v1/cases/{id}/bundles;
    with a share chosen, the bundle for that share's recipient (docs/disclosure.md)."""
    to = _case_url(case_id, "bundles")
    try:
        b = bundles.request_bundle(
            _ctx(request),
            principal,
            case_id,
            include_proxies=include_proxies == "yes",
            include_redactions=include_redactions == "yes",
            share_id=share_id.strip() or None,
        )
    except (InvalidInput, NotFound) as exc:
        return see_other(request, to, error=str(exc))
    request.app.state.relay_outbox()
    if b["reused"]:
        return see_other(
            request,
            to,
            ok="A court bundle of these same exhibits and options "
            f"already exists ({b['state']}): use it, no second copy is made.",
        )
    return see_other(request, to, ok="Court bundle requested: it is being built.")


@router.get("/bundles/{bundle_id}/status")
def bundle_status(
    bundle_id: str, request: Request, principal: Principal = Depends(ui_gate("bundles.read"))
) -> Response:
    """State and progress, polled by ui.js while a bundle is being built."""
    b = bundles.get_bundle(_ctx(request), principal, bundle_id)
    return JSONResponse(
        {"state": b["state"], "progress": b["progress"]}, headers={"Cache-Control": "no-store"}
    )


@router.get("/bundles/{bundle_id}/download")
def bundle_download(
    bundle_id: str,
    request: Request,
    reason: Annotated[str | None, Query(max_length=100)] = None,
    detail: Annotated[str | None, Query(max_length=400)] = None,
    principal: Principal = Depends(ui_gate("bundles.read")),
) -> Response:
    """The ZIP, through the API's own path: the `bundle.downloaded` ledger entry first, with
    the reason chosen on the case page (code, and details when given)."""
    text = f"{reason}: {detail.strip()}" if reason and detail and detail.strip() else reason
    source_ip = request.client.host if request.client else None
    v = viewings.open_bundle_viewing(
        _ctx(request), principal, bundle_id, reason=text, source_ip=source_ip
    )
    return RedirectResponse(v.url, status_code=307, headers={"Cache-Control": "no-store"})


_IDS = re.compile(r"[0-9A-Za-z-]{8,36}")


@router.post("/exhibits")
def add_exhibits(
    request: Request,
    case_id: Annotated[str, Form(max_length=36)] = "",
    clip_ids: Annotated[list[str] | None, Form(max_length=20000)] = None,
    back: Annotated[str, Form(max_length=2000)] = "",
    principal: Principal = Depends(ui_gate("cases.manage")),
    _: None = CSRF,
) -> Response:
    """Add clips to a case as exhibits: ticked on the search page, or pasted on the case page
    (ids separated by spaces, commas or new lines)."""
    ids = [m for value in clip_ids or [] for m in _IDS.findall(value)]
    to = ui_session.safe_next(back) or (f"/ui/cases/{case_id}" if case_id else "/ui/cases")
    if not case_id:
        return see_other(request, to, error="Choose a case to add the clips to.")
    if not ids:
        return see_other(request, to, error="Choose or paste at least one clip.")
    try:
        result = cases.add_items(_ctx(request), principal, case_id, ids)
    except (InvalidInput, NotFound) as exc:
        return see_other(request, to, error=str(exc))
    added = ", ".join(a["exhibit_ref"] for a in result["added"]) or "none (already exhibits)"
    return see_other(request, f"/ui/cases/{case_id}", ok=f"Exhibits added: {added}.")


@router.post("/cases/{case_id}/close")
def close_case(
    case_id: str,
    request: Request,
    reason: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = Depends(ui_gate("cases.manage")),
    _: None = CSRF,
) -> Response:
    try:
        done = cases.close_case(_ctx(request), principal, case_id, reason)
    except (InvalidInput, Conflict) as exc:
        return see_other(request, _case_url(case_id, "#state"), error=str(exc))
    n = len(done["rescheduled"])
    which = "1 exhibit" if n == 1 else f"{n} exhibits"
    return see_other(
        request,
        _case_url(case_id),
        ok=f"Case closed. {which} will be reviewed under "
        "the rule of its category; nothing was disposed of.",
    )


@router.post("/cases/{case_id}/reopen")
def reopen_case(
    case_id: str,
    request: Request,
    reason: Annotated[str, Form(max_length=500)] = "",
    principal: Principal = Depends(ui_gate("cases.manage")),
    _: None = CSRF,
) -> Response:
    try:
        cases.reopen_case(_ctx(request), principal, case_id, reason)
    except (InvalidInput, Conflict) as exc:
        return see_other(request, _case_url(case_id, "#state"), error=str(exc))
    return see_other(request, _case_url(case_id), ok="Case reopened: its exhibits are kept again.")


@router.post("/cases/{case_id}/members")
def add_member(
    case_id: str,
    request: Request,
    username: Annotated[str, Form(max_length=100)] = "",
    principal: Principal = Depends(ui_gate("cases.manage")),
    _: None = CSRF,
) -> Response:
    try:
        cases.add_member(_ctx(request), principal, case_id, username.strip())
    except (InvalidInput, NotFound) as exc:
        return see_other(request, f"/ui/cases/{case_id}#members", error=str(exc))
    return see_other(request, f"/ui/cases/{case_id}#members", ok=f"{username.strip()} added.")


# -- auditors (the administrator's pages: api/ui/admin.py) ----------------------------------


def _audit_filter(
    person: str | None,
    clip: str | None,
    case: str | None,
    type_: str | None,
    date_from: str | None,
    date_to: str | None,
) -> tuple[audit.LogFilter, dict[str, str], list[str]]:
    """The access log's filter from the form's fields, the fields to keep in links, errors."""
    errors: list[str] = []
    d_from, d_to = _date(date_from, "From", errors), _date(date_to, "To", errors)
    f = audit.LogFilter(
        person=_blank(person),
        clip_id=_blank(clip),
        case_id=_blank(case),
        entry_type=_blank(type_),
        since=_midnight(d_from),
        until=_midnight(d_to, days=1),
    )  # "to" is inclusive: the whole day
    params = {
        k: v
        for k, v in {
            "person": person,
            "clip": clip,
            "case": case,
            "type": type_,
            "from": date_from,
            "to": date_to,
        }.items()
        if v and _blank(v)
    }
    return f, params, errors


@router.get("/audit")
def audit_page(
    request: Request,
    before: Annotated[int | None, Query(ge=0, le=MAX_BIGINT)] = None,
    person: Annotated[str | None, Query(max_length=100)] = None,
    clip: Annotated[str | None, Query(max_length=36)] = None,
    case: Annotated[str | None, Query(max_length=36)] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    date_from: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    date_to: Annotated[str | None, Query(alias="to", max_length=20)] = None,
    principal: Principal = Depends(ui_gate("audit.read")),
) -> Response:
    """The access log with its filters; the same filters give the CSV export."""
    f, params, errors = _audit_filter(person, clip, case, type, date_from, date_to)
    items: list[dict] = []
    if not errors:
        try:
            items = audit.access_log(
                _ctx(request), principal, f, limit=100, before=before, source_ip=_ip(request)
            )
        except (InvalidInput, NotFound) as exc:
            errors.append(str(exc))
    older = items[-1]["index"] if len(items) == 100 else None
    return render(
        request,
        "audit.html",
        items=items,
        older=older,
        before=before,
        errors=errors,
        params=params,
        types=[(t, catalogue.label(t)) for t in audit.ACCESS_TYPES],
        query=lambda **extra: urlencode({**params, **extra}),
    )


@router.get("/audit.csv")
def audit_csv(
    request: Request,
    person: Annotated[str | None, Query(max_length=100)] = None,
    clip: Annotated[str | None, Query(max_length=36)] = None,
    case: Annotated[str | None, Query(max_length=36)] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    date_from: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    date_to: Annotated[str | None, Query(alias="to", max_length=20)] = None,
    principal: Principal = Depends(ui_gate("audit.read")),
) -> Response:
    """The filtered access log as CSV, as the API's /api/v1/audit/access.csv (recorded)."""
    f, _, errors = _audit_filter(person, clip, case, type, date_from, date_to)
    if errors:
        raise InvalidInput("; ".join(errors))
    lines = audit.access_log_csv(_ctx(request), principal, f, source_ip=_ip(request))
    return csv_download(lines, "access-log.csv")
