"""Security headers on every response, and a client address that is an address.

The UI is server-rendered with its scripts and styles in /ui/static, so the policy can
forbid inline code and any other origin; nothing may frame the app (clickjacking).
"""

from __future__ import annotations

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from evidence.access import client_address

CSP = "; ".join([
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
])

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
