"""Signing in: the OAuth2 password grant for local users (evidence/identity/signin.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.gates import gate, public
from api.problems import problem
from api.schemas import auth as out
from api.schemas.problems import SIGNED_IN, problems
from evidence.access import Principal
from evidence.accounts import enrolment, own
from evidence.errors import NotAuthenticated, TooManyAttempts
from evidence.identity import signin, tokens

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

# RFC 6749 §5.1: token responses (and refusals) must not be cached anywhere.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.post(
    "/token",
    response_model=out.IssuedTokenOut,
    # Every refusal is the same 401, whatever was wrong (the answer also carries
    # `error: invalid_grant`, RFC 6749 §5.2).
    responses=problems(401, 422, 429, 503),
)
def token(
    request: Request,
    username: Annotated[str, Form(min_length=1, max_length=100)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    totp: Annotated[
        str | None,
        Form(
            max_length=32,
            description="the 6-digit code, or a one-time recovery code, for "
            "accounts with two-factor sign-in",
        ),
    ] = None,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
    _: None = Depends(public),  # the sign-in form itself: rate-limited and audited
) -> JSONResponse:
    """OAuth2 password form -> `{access_token, token_type, expires_in}`.

    Every refusal is the same 401, whatever was wrong; 429 with Retry-After when this
    address failed too often lately.
    """
    # The peer address; behind a reverse proxy run uvicorn with --proxy-headers and
    # --forwarded-allow-ips so this is the client rather than the proxy.
    source_ip = request.client.host if request.client else "unknown"
    try:
        issued = signin.login(
            request.app.state.ctx, username, password, totp or None, source_ip=source_ip
        )
    except TooManyAttempts as exc:
        resp = problem(exc.status, exc.title, str(exc), error="invalid_grant")
        resp.headers.update({**_NO_STORE, "Retry-After": str(exc.retry_after)})
        return resp
    except NotAuthenticated as exc:
        resp = problem(exc.status, exc.title, str(exc), error="invalid_grant")
        resp.headers.update(_NO_STORE)
        return resp
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
        },
        headers=_NO_STORE,
    )


@router.post("/logout", status_code=204, responses=SIGNED_IN)
def logout(request: Request, _: Principal = Depends(gate("session.read"))) -> None:
    """End the bearer token this request carries: it is refused from now on (a ledger entry
    records the sign-out). Tokens from the force's identity provider are ended there."""
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    source_ip = request.client.host if request.client else "unknown"
    tokens.revoke_token(request.app.state.ctx, token, source_ip=source_ip)


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class EnrolBody(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/enrol", status_code=204, responses=problems(404, 422, 503))
def enrol(body: EnrolBody, request: Request, _: None = Depends(public)) -> None:
    """Use a one-time enrolment link's token to choose your own password. Public: the token
    (256 random bits, stored hashed, used once, expiring) is the credential."""
    enrolment.enrol(request.app.state.ctx, body.token, body.password, source_ip=_ip(request))


account_router = APIRouter(prefix="/api/v1/account", tags=["account"])


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class TotpCode(BaseModel):
    code: str = Field(min_length=1, max_length=32)


@account_router.post("/password", response_model=out.IssuedTokenOut, responses=SIGNED_IN)
def change_password(
    body: PasswordChange, request: Request, principal: Principal = Depends(gate("account.manage"))
) -> JSONResponse:
    """Your own password; the current one is required. Every other token of yours ends;
    the answer is a fresh one."""
    issued = own.change_password(
        request.app.state.ctx,
        principal,
        body.current_password,
        body.new_password,
        source_ip=_ip(request),
    )
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
        },
        headers=_NO_STORE,
    )


@account_router.post("/totp", response_model=out.TotpStartedOut, responses=SIGNED_IN)
def start_totp(
    request: Request, principal: Principal = Depends(gate("account.manage"))
) -> JSONResponse:
    """A new authenticator secret, its otpauth:// URI and a QR code (SVG); sign-in is
    unchanged until a code from it is confirmed."""
    started = own.start_totp(request.app.state.ctx, principal)
    return JSONResponse(
        {"secret": started.secret, "uri": started.uri, "qr_svg": started.qr_svg}, headers=_NO_STORE
    )


@account_router.post("/totp/confirm", response_model=out.RecoveryCodesOut, responses=SIGNED_IN)
def confirm_totp(
    body: TotpCode, request: Request, principal: Principal = Depends(gate("account.manage"))
) -> JSONResponse:
    """Turn two-factor sign-in on with a code from the new secret; the answer holds the
    recovery codes, shown this once."""
    codes = own.confirm_totp(request.app.state.ctx, principal, body.code)
    return JSONResponse({"recovery_codes": codes}, headers=_NO_STORE)


@account_router.post("/recovery-codes", response_model=out.RecoveryCodesOut, responses=SIGNED_IN)
def new_recovery_codes(
    body: TotpCode, request: Request, principal: Principal = Depends(gate("account.manage"))
) -> JSONResponse:
    """Replace your recovery codes (the old ones stop working), given a current code."""
    codes = own.new_recovery_codes(request.app.state.ctx, principal, body.code)
    return JSONResponse({"recovery_codes": codes}, headers=_NO_STORE)
