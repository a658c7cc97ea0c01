"""Who is calling. Devices send `Authorization: Device <key>`; people send
`Authorization: Bearer <token>` (a token from POST /api/v1/auth/token, or the force's IdP)."""

from __future__ import annotations

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from evidence.access import Principal
from evidence.accounts.models import Device
from evidence.accounts.service import authenticate_device
from evidence.errors import NotAuthenticated
from evidence.identity.signin import principal_from_token

TOKEN_URL = "/api/v1/auth/token"
# Declares the bearer scheme in the OpenAPI document (the docs' "Authorize" button, and
# schemathesis); `current_principal` reads the header itself.
_bearer_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
# Declares the device scheme the same way: the ingest routes show that they take
# `Authorization: Device <key>`, not a person's token. OpenAPI has no custom HTTP scheme a
# client would honour, so it is stated as an API key in the Authorization header, with the
# value's form in its description; `current_device` reads and checks the header itself.
_device_scheme = APIKeyHeader(
    name="Authorization",
    scheme_name="Device",
    description="A docking device's key, sent as `Authorization: Device <key>` (docs/ingest.md).",
    auto_error=False,
)


def current_device(request: Request, _declared: str | None = Security(_device_scheme)) -> Device:
    """The calling device, or 401 with `WWW-Authenticate: Device` (a 401 must name the scheme
    it wants, RFC 9110 §11.6.1): a device may only create, read and complete uploads."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "device" or not key.strip():
            raise NotAuthenticated(
                "this route is for docking devices: send `Authorization: Device <key>`"
            )
        return authenticate_device(request.app.state.ctx, key.strip())
    except NotAuthenticated as exc:
        raise HTTPException(
            401, str(exc), headers={"WWW-Authenticate": 'Device realm="evidence"'}
        ) from None


def current_principal(
    request: Request, _declared: str | None = Security(_bearer_scheme)
) -> Principal:
    """The signed-in person, or 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3).

    A token without a role we know is a 403 (AccessDenied), raised by the identity service.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            401,
            f"sign in first: send `Authorization: Bearer <token>` (POST {TOKEN_URL} issues one)",
            headers={"WWW-Authenticate": 'Bearer realm="evidence"'},
        )
    try:
        principal = principal_from_token(request.app.state.ctx, token)
    except NotAuthenticated as exc:
        raise HTTPException(
            401,
            str(exc),
            headers={"WWW-Authenticate": 'Bearer realm="evidence", error="invalid_token"'},
        ) from None
    request.state.principal = principal  # for access logs and audit middleware
    return principal
