"""Signing in with a password, and recognising whoever a bearer token names.

`login` checks an argon2id password (and a TOTP code when the user has a secret,
evidence/identity/totp.py) and issues a short-lived token (evidence/identity/tokens.py).
A refused sign-in always says the same thing ("invalid credentials or account locked"),
whether the name is unknown, the password or code wrong, or the account disabled or locked,
and argon2 runs in every case (against a dummy hash for unknown names), so neither the
answer nor its timing tells an attacker which names exist. Lock-out and the rate limit are
in evidence/identity/lockout.py.

`principal_from_token` turns either kind of token, the store's own or the force's IdP's
(evidence/identity/oidc.py), into the `Principal` routes receive.
"""

from __future__ import annotations

import logging
import secrets

import jwt
from sqlalchemy import select

from evidence import clock
from evidence.access import Principal
from evidence.accounts.models import User
from evidence.accounts.service import check_password, hash_password
from evidence.context import Context
from evidence.errors import NotAuthenticated, TooManyAttempts
from evidence.identity.lockout import (
    LOGIN_RATE_LIMITED,
    LOGINS,
    _count_failure,
    _is_locked,
    _record_success,
    _refuse,
)
from evidence.identity.oidc import _has_local_password, _oidc_principal
from evidence.identity.state import _state
from evidence.identity.tokens import IssuedToken, _local_principal, issue_token
from evidence.identity.totp import claim_totp_step, matching_totp_step, use_recovery_code

log = logging.getLogger(__name__)


# -- local sign-in ------------------------------------------------------------------------------

_dummy_hash: str | None = None


def _timing_hash() -> str:
    """An argon2id hash of nothing anyone knows: verified against when there is no real one."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password(secrets.token_urlsafe(32))
    return _dummy_hash


def login(
    ctx: Context, username: str, password: str, totp_code: str | None, *, source_ip: str
) -> IssuedToken:
    """Check a password (and TOTP code) and issue a short-lived token.

    Raises TooManyAttempts when `source_ip` failed too often lately, else NotAuthenticated
    with one message for every kind of refusal (see the module docstring).
    """
    settings = ctx.settings
    if settings.identity_mode == "oidc":
        raise NotAuthenticated(
            "password sign-in is turned off here: sign in through the force's identity provider"
        )
    state = _state(ctx)
    now = clock.now()
    wait = state.failures.retry_after(source_ip, now)
    if wait:
        LOGIN_RATE_LIMITED.inc()
        log.warning("sign-in from %s refused: rate limited for %ss", source_ip, wait)
        raise TooManyAttempts(
            f"too many failed sign-ins from your address: try again in {wait} s",
            retry_after=wait,
        )
    with ctx.db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
    # argon2 runs exactly once whatever happens next, so the time taken does not tell
    # whether the name exists, is disabled or is locked.
    local = _has_local_password(user)
    password_ok = check_password(user.password_hash if local else _timing_hash(), password)
    if user is None or not local:
        _refuse(state, source_ip, now, "unknown_user", username)
    if user.disabled:
        _refuse(state, source_ip, now, "disabled", username)
    if _is_locked(user, now):
        _refuse(state, source_ip, now, "locked", username)
    if not password_ok:
        _count_failure(ctx, state, user.id, source_ip, now, "bad_password")
    method = "password"
    if user.totp_secret:
        step = matching_totp_step(user.totp_secret, totp_code, now)
        if step is not None and claim_totp_step(ctx, user.id, step):
            method = "password+totp"
        elif step is None and use_recovery_code(ctx, user.id, totp_code):
            method = "password+recovery_code"
        else:
            _count_failure(ctx, state, user.id, source_ip, now, "bad_totp")
    if not user.approved:
        # Said only to someone who knew the password (and code): it tells nobody else
        # that the account exists.
        raise NotAuthenticated(
            "this account is waiting for a second administrator's approval: ask an administrator"
        )
    _record_success(ctx, user.id, source_ip, method)
    LOGINS.labels(method).inc()
    return issue_token(ctx, user, second_factor=method != "password")


def count_wrong_password(ctx: Context, user_id: str, source_ip: str) -> None:
    """A wrong password given outside the sign-in form (changing one's own): it counts
    against the account's lock-out exactly as a failed sign-in does."""
    try:
        _count_failure(ctx, _state(ctx), user_id, source_ip, clock.now(), "bad_password")
    except NotAuthenticated:
        pass


# -- tokens to principals ------------------------------------------------------------------------


def principal_from_token(ctx: Context, token: str) -> Principal:
    """The person a bearer token names, or NotAuthenticated (AccessDenied: no known role)."""
    if not token:
        raise NotAuthenticated("no bearer token")
    state = _state(ctx)
    settings = ctx.settings
    try:
        # Unverified, only to choose which verifier to use; each one checks everything
        # with its own pinned key and algorithms.
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        raise NotAuthenticated("the bearer token is not a well-formed JWT") from None
    mode = settings.identity_mode
    if issuer == settings.jwt_issuer and mode in ("local", "both"):
        return _local_principal(ctx, state, token)
    if settings.oidc_issuer and issuer == settings.oidc_issuer and mode in ("oidc", "both"):
        return _oidc_principal(ctx, state, token)
    raise NotAuthenticated("the bearer token's issuer is not trusted here")
