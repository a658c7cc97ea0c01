"""The UI's cookie session: sign-in, who is calling, CSRF.

A browser cannot be trusted to keep a bearer token in script-readable storage, so the UI
keeps the same short-lived access token the JSON API issues (`evidence.identity.signin.login`, the
same lock-out and rate-limit path) in one cookie:

    evidence_ui = v1.<sid>.<since>.<mac>.<access token>

- HttpOnly (no script can read it), SameSite=Strict (no other site can make the browser
  send it), Secure and named `__Host-evidence_ui` when the request came over https (so a
  sibling sub-domain cannot plant one), Path=/, no Max-Age (it ends with the browser).
- `sid` is a random session id made at sign-in, `since` the sign-in time (Unix seconds),
  `mac` an HMAC over both and the token, keyed from the store's token signing key: a token
  obtained from the JSON API cannot be dropped into the cookie, and `since` cannot be moved.
- The token inside is checked on every request exactly as a bearer token is
  (`principal_from_token`: signature, audience, expiry, and the user's role, enabled flag
  and lock re-read from the database).
- Sliding renewal (local tokens only): when less than half the token's lifetime is left,
  the next request gets a fresh token (`identity.tokens.issue_token`) in a new cookie, so the idle
  timeout is the token lifetime (EVIDENCE_JWT_TTL_SECONDS) while activity, including playing
  a clip, keeps the session alive; never beyond MAX_SESSION after sign-in.

CSRF: every POST form carries `csrf`, an HMAC of the session id (so it is per session and
survives token renewal); `csrf_protect` compares it in constant time and also refuses any
request whose `Sec-Fetch-Site` says it came from another site. The sign-in form, made before
there is a session, uses a double-submit nonce cookie instead.

Sign-in through the force's IdP (docs/ui.md): the session keeps the IdP's access token
instead, checked the same way; it is never renewed (the session ends when it expires). The
flow's state, nonce and PKCE verifier cross the IdP's redirect in a sealed SameSite=Lax
cookie (`put_oidc_flow`, `take_oidc_flow`, `clear_oidc_flow`).

A secret to be shown once after a POST (a new device's key) crosses the redirect sealed to
the session in a short-lived cookie (`put_once`, `take_once`, `clear_once`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import quote

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Form, Request
from starlette.responses import Response

from evidence import clock
from evidence.access import Principal
from evidence.accounts.models import User
from evidence.context import Context
from evidence.errors import AccessDenied, NotAuthenticated
from evidence.identity.oidc import pkce_verifier
from evidence.identity.signin import principal_from_token
from evidence.identity.state import jwt_key_path, load_or_create_jwt_key
from evidence.identity.tokens import IssuedToken, is_local_token, issue_token

SESSION_COOKIE = "evidence_ui"
LOGIN_COOKIE = "evidence_ui_login"
# However active the user is, a sign-in lasts at most one long shift.
MAX_SESSION = dt.timedelta(hours=12)
LOGIN_NONCE_SECONDS = 3600
ONCE_COOKIE = "evidence_ui_once"
ONCE_SECONDS = 120
OIDC_COOKIE = "evidence_ui_oidc"
OIDC_FLOW_SECONDS = 600  # from the click to the IdP's redirect back: time to type a password
_VERSION = "v1"
_NEXT = re.compile(r"^/ui(/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$")


class LoginRequired(Exception):
    """No valid session: the UI route wrapper answers with a redirect to the sign-in page."""

    def __init__(self, next_url: str = "/ui/", *, expired: bool = False):
        super().__init__("sign in first")
        self.next_url = next_url
        self.expired = expired


class CsrfRefused(AccessDenied):
    pass


@dataclass(frozen=True)
class UISession:
    sid: str
    since: int
    token: str


# -- keys -------------------------------------------------------------------------------------

_key_lock = threading.Lock()


def _session_key(ctx: Context) -> bytes:
    """An HMAC key derived from the token signing key: every API replica already shares that
    key, so sessions and CSRF tokens work behind a load balancer with no new secret."""
    key = ctx.ui_session_key
    if key is None:
        with _key_lock:
            signing = load_or_create_jwt_key(jwt_key_path(ctx.settings))
            raw = signing.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            key = hashlib.sha256(b"evidence-store ui session v1\0" + raw).digest()
            ctx.ui_session_key = key
    return key


def _mac(ctx: Context, *parts: str) -> str:
    digest = hmac.new(_session_key(ctx), "\0".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


# -- the cookie ---------------------------------------------------------------------------------


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request, base: str) -> str:
    return f"__Host-{base}" if is_https(request) else base


def encode_session(ctx: Context, session: UISession) -> str:
    mac = _mac(ctx, _VERSION, session.sid, str(session.since), session.token)
    return f"{_VERSION}.{session.sid}.{session.since}.{mac}.{session.token}"


def decode_session(ctx: Context, value: str | None) -> UISession | None:
    if not value or len(value) > 4096:
        return None
    parts = value.split(".", 4)
    if len(parts) != 5 or parts[0] != _VERSION or not parts[2].isdigit():
        return None
    _, sid, since, mac, token = parts
    if not hmac.compare_digest(mac, _mac(ctx, _VERSION, sid, since, token)):
        return None
    return UISession(sid, int(since), token)


def _set_cookie(
    response: Response,
    request: Request,
    base: str,
    value: str,
    max_age: int | None = None,
    path: str = "/",
) -> None:
    response.set_cookie(
        cookie_name(request, base),
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=is_https(request),
        samesite="strict",
    )


def _clear_cookie(response: Response, request: Request, base: str) -> None:
    response.delete_cookie(
        cookie_name(request, base),
        path="/",
        httponly=True,
        secure=is_https(request),
        samesite="strict",
    )


def start_session(ctx: Context, request: Request, response: Response, issued: IssuedToken) -> None:
    """After a successful sign-in: a new session id, the token, no more login nonce."""
    session = UISession(
        secrets.token_urlsafe(18), int(clock.now().timestamp()), issued.access_token
    )
    _set_cookie(response, request, SESSION_COOKIE, encode_session(ctx, session))
    _clear_cookie(response, request, LOGIN_COOKIE)


def end_session(request: Request, response: Response) -> None:
    _clear_cookie(response, request, SESSION_COOKIE)


def current_session(request: Request) -> UISession | None:
    ctx = request.app.state.ctx
    return decode_session(ctx, request.cookies.get(cookie_name(request, SESSION_COOKIE)))


def apply_renewal(request: Request, response: Response) -> None:
    """Called by the UI route wrapper on every response: set a renewed session cookie."""
    value = getattr(request.state, "ui_renewed_cookie", None)
    if value:
        _set_cookie(response, request, SESSION_COOKIE, value)


# -- who is calling ---------------------------------------------------------------------------


def _here(request: Request) -> str:
    if request.method != "GET":
        return "/ui/"
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return path if safe_next(path) else "/ui/"


def safe_next(value: str | None) -> str | None:
    """A place to go after sign-in: a path inside the UI, never another site."""
    if value and _NEXT.match(value) and "//" not in value and "\\" not in value:
        return value
    return None


def login_url(next_url: str | None, *, expired: bool = False) -> str:
    query = []
    if next_url and next_url != "/ui/":
        query.append("next=" + quote(next_url, safe="/"))
    if expired:
        query.append("expired=1")
    return "/ui/login" + ("?" + "&".join(query) if query else "")


def ui_principal(request: Request) -> Principal:
    """The signed-in person from the session cookie; LoginRequired (a redirect to the sign-in
    page) when there is none, it was tampered with, or it has expired."""
    ctx: Context = request.app.state.ctx
    raw = request.cookies.get(cookie_name(request, SESSION_COOKIE))
    session = decode_session(ctx, raw)
    if session is None:
        raise LoginRequired(_here(request), expired=raw is not None)
    now = clock.now()
    if now.timestamp() - session.since > MAX_SESSION.total_seconds():
        raise LoginRequired(_here(request), expired=True)
    try:
        principal = principal_from_token(ctx, session.token)
    except (NotAuthenticated, AccessDenied):
        raise LoginRequired(_here(request), expired=True) from None
    request.state.principal = principal
    request.state.ui_session = session
    _maybe_renew(ctx, request, session, now)
    return principal


def _maybe_renew(ctx: Context, request: Request, session: UISession, now: dt.datetime) -> None:
    if not is_local_token(ctx.settings, session.token):
        # The IdP's token: we cannot mint another one (no refresh tokens in this version), so
        # the session ends when it expires and the person signs in at the IdP again.
        return
    ttl = ctx.settings.jwt_ttl_seconds
    try:
        exp = float(jwt.decode(session.token, options={"verify_signature": False})["exp"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return
    if exp - now.timestamp() > ttl / 2:
        return
    if now.timestamp() + ttl - session.since > MAX_SESSION.total_seconds():
        return  # would outlive the sign-in: let it lapse
    principal: Principal = request.state.principal
    with ctx.db.session() as s:
        user = s.get(User, principal.user_id)
    if user is None:
        return
    token = issue_token(ctx, user, second_factor=principal.second_factor)
    renewed = UISession(session.sid, session.since, token.access_token)
    request.state.ui_session = renewed
    request.state.ui_renewed_cookie = encode_session(ctx, renewed)


# -- CSRF ----------------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The token forms carry in this session ("" when signed out)."""
    session: UISession | None = getattr(request.state, "ui_session", None) or current_session(
        request
    )
    return _mac(request.app.state.ctx, "csrf", session.sid) if session else ""


def _same_site_request(request: Request) -> None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfRefused("this form was sent from another site: refused")


def csrf_protect(request: Request, csrf: str = Form("", max_length=200)) -> None:
    """Every UI POST route depends on this: the form's token must be this session's."""
    _same_site_request(request)
    session = current_session(request)
    if session is None:
        raise LoginRequired("/ui/", expired=True)
    expected = _mac(request.app.state.ctx, "csrf", session.sid)
    if not csrf or not hmac.compare_digest(csrf, expected):
        raise CsrfRefused(
            "the form's security token did not match your session: reload the page and try again"
        )


# -- a secret shown once, carried across a redirect -------------------------------------------


def _once_key(ctx: Context) -> bytes:
    return hashlib.sha256(b"evidence-store ui once v1\0" + _session_key(ctx)).digest()


def put_once(request: Request, response: Response, path: str, data: bytes) -> None:
    """Carry `data` (a secret to show once, such as a new device key) across the redirect
    after a POST to the page at `path`: AES-256-GCM-sealed to this session (its id is the
    associated data) in an HttpOnly, SameSite=Strict cookie that only `path` receives, for
    at most ONCE_SECONDS. `take_once` reads it, `clear_once` forgets it; nothing is kept on
    the server."""
    session = current_session(request)
    if session is None:
        raise LoginRequired("/ui/", expired=True)
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_once_key(request.app.state.ctx)).encrypt(nonce, data, session.sid.encode())
    response.set_cookie(
        ONCE_COOKIE,
        base64.urlsafe_b64encode(nonce + sealed).decode(),
        max_age=ONCE_SECONDS,
        path=path,
        httponly=True,
        secure=is_https(request),
        samesite="strict",
    )


def take_once(request: Request) -> bytes | None:
    """What `put_once` carried to this page: None when there is nothing, or it was sealed
    for another session, or tampered with. The page must then `clear_once`."""
    raw = request.cookies.get(ONCE_COOKIE)
    session = current_session(request)
    if not raw or session is None:
        return None
    try:
        blob = base64.urlsafe_b64decode(raw.encode())
        return AESGCM(_once_key(request.app.state.ctx)).decrypt(
            blob[:12], blob[12:], session.sid.encode()
        )
    except (InvalidTag, ValueError):
        return None


def clear_once(request: Request, response: Response, path: str) -> None:
    """Forget what `put_once` carried: once shown, a reload shows nothing."""
    if ONCE_COOKIE in request.cookies:
        response.delete_cookie(
            ONCE_COOKIE, path=path, httponly=True, secure=is_https(request), samesite="strict"
        )


# -- sign-in through the IdP: the flow's state between the redirect out and the one back ----


@dataclass(frozen=True)
class OidcFlow:
    """One authorization request: what the callback must see again (state, nonce) and the
    PKCE verifier it must present to the token endpoint; `next` is where to land after."""

    state: str
    nonce: str
    verifier: str
    next: str
    started: int


def _oidc_key(ctx: Context) -> bytes:
    return hashlib.sha256(b"evidence-store ui oidc flow v1\0" + _session_key(ctx)).digest()


def new_oidc_flow(next_url: str | None) -> OidcFlow:
    return OidcFlow(
        state=secrets.token_urlsafe(24),
        nonce=secrets.token_urlsafe(24),
        verifier=pkce_verifier(),
        next=safe_next(next_url) or "/ui/",
        started=int(clock.now().timestamp()),
    )


def put_oidc_flow(request: Request, response: Response, flow: OidcFlow) -> None:
    """Keep `flow` in the browser, AES-256-GCM-sealed (so the PKCE verifier is not readable
    and nothing can be changed), HttpOnly, for OIDC_FLOW_SECONDS. SameSite=Lax, not Strict:
    the IdP's redirect back is a top-level GET from another site, which a Strict cookie would
    not accompany. Lax is safe here: the cookie only names a pending sign-in, opens nothing,
    and the callback is a GET that needs the IdP's code for it as well."""
    payload = json.dumps(flow.__dict__, separators=(",", ":")).encode()
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_oidc_key(request.app.state.ctx)).encrypt(nonce, payload, OIDC_COOKIE.encode())
    response.set_cookie(
        cookie_name(request, OIDC_COOKIE),
        base64.urlsafe_b64encode(nonce + sealed).decode(),
        max_age=OIDC_FLOW_SECONDS,
        path="/",
        httponly=True,
        secure=is_https(request),
        samesite="lax",
    )


def take_oidc_flow(request: Request) -> OidcFlow | None:
    """The pending sign-in this browser started: None when there is none, it was tampered
    with, or it is older than OIDC_FLOW_SECONDS."""
    raw = request.cookies.get(cookie_name(request, OIDC_COOKIE))
    if not raw or len(raw) > 2048:
        return None
    try:
        blob = base64.urlsafe_b64decode(raw.encode())
        data = json.loads(
            AESGCM(_oidc_key(request.app.state.ctx)).decrypt(
                blob[:12], blob[12:], OIDC_COOKIE.encode()
            )
        )
        flow = OidcFlow(**data)
    except (InvalidTag, ValueError, TypeError):
        return None
    if clock.now().timestamp() - flow.started > OIDC_FLOW_SECONDS:
        return None
    return flow


def oidc_state_ok(flow: OidcFlow | None, state: str | None) -> bool:
    """The IdP's `state` is the one this browser's pending sign-in was sent with."""
    return bool(flow and state) and hmac.compare_digest(flow.state.encode(), (state or "").encode())  # type: ignore[union-attr]


def clear_oidc_flow(request: Request, response: Response) -> None:
    """A flow is used once: every answer of the callback forgets it."""
    response.delete_cookie(
        cookie_name(request, OIDC_COOKIE),
        path="/",
        httponly=True,
        secure=is_https(request),
        samesite="lax",
    )


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def set_login_nonce(request: Request, response: Response, nonce: str) -> None:
    _set_cookie(response, request, LOGIN_COOKIE, nonce, max_age=LOGIN_NONCE_SECONDS)


def login_nonce_ok(request: Request, nonce: str) -> bool:
    """The sign-in form's double-submit check (there is no session to bind it to yet)."""
    _same_site_request(request)
    cookie = request.cookies.get(cookie_name(request, LOGIN_COOKIE), "")
    return bool(nonce and cookie) and hmac.compare_digest(nonce, cookie)
