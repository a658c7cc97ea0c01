"""Security headers on every response, a client address that is an address, and request
bodies of a bounded size.

The UI is server-rendered with its scripts and styles in /ui/static, so the policy can
forbid inline code and any other origin; nothing may frame the app (clickjacking).
"""

from __future__ import annotations

import logging

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import PROBLEM_JSON
from evidence.access import client_address

log = logging.getLogger(__name__)

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith(("/api/v1/auth", "/ui")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


class ClientAddress:
    """Every route sees the client's address in normal form, a short name, or "invalid".

    Behind a trusted proxy uvicorn takes it from X-Forwarded-For, i.e. from the client, and
    routes write it into the permanent ledger (sign-ins, footage): no request may put 10 KB
    of text there that way (evidence.access.client_address)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            host, port = scope["client"]
            scope = {**scope, "client": (client_address(host), port)}
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """No request body beyond `limit` bytes reaches a route: a 413 problem instead, whether
    the client declared its length or streamed it in chunks. Object parts are exempt; their
    presigned URL signs their size, which their route enforces (api/routes/objects.py).

    Without it, a route parses whatever it is sent (a 10 MB sidecar in a declaration, a
    form) before any check of its own can run."""

    EXEMPT = ("/api/v1/objects/",)

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.EXEMPT):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        over = False
        answered = False

        async def counted() -> dict:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise _BodyTooLarge
            return message

        async def answer(message: dict) -> None:
            # Whatever the route made of a body cut short (a 400, a 500), the client is told
            # what happened: 413.
            nonlocal answered
            if over:
                if not answered:
                    answered = True
                    await self._refuse(send)
                return
            await send(message)

        try:
            await self.app(scope, counted, answer)
        except Exception as exc:
            if not over:
                raise
            # Our own _BodyTooLarge, or what a parser made of it: the 413 below says why.
            log.debug(
                "%s %s: body over %d bytes cut short (%r)",
                scope["method"],
                scope["path"],
                self.limit,
                exc,
            )
        if over and not answered:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = (
            b'{"type":"about:blank","title":"Too large","status":413,"detail":"a request body '
            b"may be at most " + str(self.limit).encode() + b' bytes"}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
