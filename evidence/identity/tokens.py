"""Tokens: the short-lived JWTs this store issues, turning them back into a person, and
ending them at sign-out.

A local token is signed by this store (EdDSA/Ed25519, key in evidence/identity/state.py) and
the algorithm is pinned to exactly `EdDSA` both ways. It names the person and carries no
role: the role, the enabled flag and the lock are re-read from the database on every
request, so disabling a user takes effect at once rather than when their token expires. A
password change ends every token issued before it (`pwv`), and sign-out records the token's
`jti` so it is refused from then on.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import delete

from evidence import clock
from evidence.access import Principal
from evidence.accounts.models import RevokedToken, Role, User
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import InvalidInput, NotAuthenticated
from evidence.identity.lockout import _is_locked
from evidence.identity.state import _State, _state

LOCAL_ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    token_type: str = "bearer"
    expires_in: int = 0


def password_version(user: User) -> int:
    """Which password a token was issued under (milliseconds of its last change, 0 for
    never): a token naming an older one is refused, so a change ends every other session."""
    changed = user.password_changed_at
    return 0 if changed is None else int(changed.timestamp() * 1000)


def issue_token(ctx: Context, user: User, *, second_factor: bool = False) -> IssuedToken:
    """A JWT naming `user`; it carries no role: that is read from the database each time.
    `second_factor`: the sign-in used a TOTP or recovery code (claim `amr`, RFC 8176)."""
    state = _state(ctx)
    settings = ctx.settings
    now = int(clock.now().timestamp())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": user.id,
        "preferred_username": user.username,  # for people reading a token; never trusted
        "iat": now,
        "nbf": now,
        "exp": now + settings.jwt_ttl_seconds,
        "jti": secrets.token_urlsafe(16),
    }
    if user.password_changed_at is not None:
        claims["pwv"] = password_version(user)
    claims["amr"] = ["pwd", "otp"] if second_factor else ["pwd"]
    token = jwt.encode(
        claims, state.signing_key, algorithm=LOCAL_ALGORITHM, headers={"kid": state.key_id}
    )
    return IssuedToken(token, "bearer", settings.jwt_ttl_seconds)


# Time claims are checked against evidence.clock (below), not PyJWT's own clock, so that
# tests move time instead of waiting and every time decision reads one clock.
def _options(required: list[str]) -> Any:
    return {"require": required, "verify_exp": False, "verify_nbf": False, "verify_iat": False}


def _local_principal(ctx: Context, state: _State, token: str) -> Principal:
    settings = ctx.settings
    try:
        claims = jwt.decode(
            token,
            state.verify_key,
            algorithms=[LOCAL_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options=_options(["exp", "iat", "nbf", "iss", "aud", "sub"]),
        )
    except jwt.PyJWTError as exc:
        raise NotAuthenticated(f"the bearer token was refused: {exc}") from None
    check_token_times(claims, clock.now(), leeway=0)
    with ctx.db.session() as s:
        user = s.get(User, str(claims["sub"]))
        revoked = s.get(RevokedToken, str(claims.get("jti", "")))
    if revoked is not None:
        raise NotAuthenticated("this token was ended at sign-out: sign in again")
    if user is None or user.disabled or not user.approved or _is_locked(user, clock.now()):
        raise NotAuthenticated("the account this token names is disabled, locked or gone")
    if claims.get("pwv", 0) != password_version(user):
        # A password change or a forced reset ends every token issued before it.
        raise NotAuthenticated(
            "the password was changed since this token was issued: sign in again"
        )
    amr = claims.get("amr")
    second = isinstance(amr, list) and "otp" in amr and user.totp_secret is not None
    return Principal(user.id, user.username, Role(user.role), user.officer_id, second_factor=second)


def revoke_token(ctx: Context, token: str, *, source_ip: str) -> None:
    """Sign-out: the store's own token is refused from now on, not merely forgotten by the
    browser. Idempotent. Tokens from the force's identity provider are the IdP's to end."""
    state = _state(ctx)
    settings = ctx.settings
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        raise NotAuthenticated("not a well-formed JWT") from None
    if issuer != settings.jwt_issuer:
        raise InvalidInput("this token was issued by the force's identity provider: sign out there")
    try:
        claims = jwt.decode(
            token,
            state.verify_key,
            algorithms=[LOCAL_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options=_options(["exp", "sub", "jti"]),
        )
    except jwt.PyJWTError as exc:
        raise NotAuthenticated(f"not a token this store issued: {exc}") from None
    jti, user_id = str(claims["jti"]), str(claims["sub"])
    expires = dt.datetime.fromtimestamp(float(claims["exp"]), dt.UTC)
    with ctx.db.write_session() as s:
        if s.get(RevokedToken, jti) is not None:
            return
        user = s.get(User, user_id)
        if user is None:
            return  # nothing it could open any more
        # Expired tokens are refused anyway: their rows can go, so the table stays small.
        s.execute(delete(RevokedToken).where(RevokedToken.expires_at < clock.now()))
        s.add(RevokedToken(jti=jti, user_id=user_id, expires_at=expires, revoked_at=clock.now()))
        ctx.ledger.append_in(
            s,
            "user.logged_out",
            actor=f"user:{user.username}",
            subject={"user": user.id},
            source_ip=source_ip,
        )


def check_token_times(claims: dict[str, Any], at: dt.datetime, *, leeway: int) -> None:
    """exp (required), nbf and iat (when present) against `at`, allowing `leeway` seconds."""
    now = at.timestamp()
    times: dict[str, float] = {}
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NotAuthenticated(f"the bearer token's {name} claim is not a number")
        times[name] = float(value)
    if "exp" not in times:
        raise NotAuthenticated("the bearer token has no expiry (exp)")
    if times["exp"] <= now - leeway:
        raise NotAuthenticated("the bearer token has expired: sign in again")
    if times.get("nbf", -math.inf) > now + leeway:
        raise NotAuthenticated("the bearer token is not valid yet (nbf)")
    if times.get("iat", -math.inf) > now + leeway:
        raise NotAuthenticated("the bearer token was issued in the future (iat)")


def is_local_token(settings: Settings, token: str) -> bool:
    """True when `token` claims to be one this store issued (unverified: for choosing what to
    do with a token already checked, such as renewing it, never for trusting it)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return claims.get("iss") == settings.jwt_issuer
