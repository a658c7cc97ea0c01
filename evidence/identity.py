"""Identity: who a person is, proven by a local password (+ TOTP) or the force's IdP.

Two ways in, chosen by `settings.identity_mode` ("local", "oidc" or "both"):

- local: `login` checks an argon2id password (and a TOTP code when the user has a secret)
  and issues a short-lived JWT signed by this store (EdDSA/Ed25519, key in
  `{data_dir}/keys/jwt.key`, 0600, made on first use). Ed25519 rather than HS256: the key
  that verifies can be handed out without handing out the power to mint tokens, and the
  algorithm is pinned to exactly `EdDSA` both ways.
- oidc: bearer tokens from the force's identity provider, checked against its JWKS
  (issuer, audience, expiry and algorithm pinned to `oidc_algorithms`, asymmetric only).
  The role comes from a claim; first sight of a person provisions a User row (with an
  unusable password) and a `user.provisioned` ledger entry, so the ledger can name them.
  The UI signs people in through the IdP with the authorization code flow and PKCE
  (`oidc_authorization_url`, `oidc_sign_in`, at the end of this module).

`principal_from_token` turns either kind of token into the `Principal` routes receive. For
local tokens the role, the enabled flag and the lock are re-read from the database on every
request: the token only says who, never what they may do, so disabling a user takes effect
at once rather than when their token expires.

Guessing defences, and what is audited:

- Lock-out: `login_max_failures` failed sign-ins in a row lock the account for
  `login_lockout_seconds`; each lock-out is a `user.locked_out` ledger entry with the
  source address. Single failed sign-ins are NOT ledger entries: anyone can make them, so an
  attacker could flood the permanent, never-pruned ledger. They are counted in Prometheus
  (`evidence_login_failures_total`, one count whatever the reason) and logged instead; every successful sign-in is a
  `user.logged_in` entry (source address, method; never a secret).
- A refused sign-in always says the same thing ("invalid credentials or account locked"),
  whether the name is unknown, the password or code wrong, or the account disabled or
  locked, and argon2 runs in every case (against a dummy hash for unknown names), so
  neither the answer nor its timing tells an attacker which names exist. A locked account
  therefore gets 401, not 429: a 429 would confirm that the name exists (only real accounts
  lock). 429 + Retry-After is the per-address rate limit.
- Rate limit: failed sign-ins per source address in a sliding window, in this process's
  memory (`login_rate_limit` per `login_rate_window_seconds`). Only failures count, so a
  station of officers behind one NAT address can all sign in at shift change. With several
  API replicas each keeps its own window: rate-limit the token endpoint at the proxy too.
- TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step either side for clock drift). A code
  is accepted once per user (a step no later than the last accepted one is refused), so a
  code seen over a shoulder cannot be replayed. That memory is in the database
  (`users.totp_last_step`, one conditional UPDATE), as the lock-out counter is, so both hold
  behind any number of API processes. A one-time recovery code (evidence/accounts/own.py)
  may stand in for the code; each works once.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import math
import re
import secrets
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import Counter
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from evidence import clock
from evidence.access import Principal
from evidence.accounts.models import RecoveryCode, RevokedToken, Role, User
from evidence.accounts.service import check_password, hash_password
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import (
    AccessDenied,
    EvidenceError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    TooManyAttempts,
)
from evidence.keyfiles import create_once, read_private

log = logging.getLogger(__name__)

REFUSED = "invalid credentials or account locked"
LOCAL_ALGORITHM = "EdDSA"
# What an IdP may sign with. Symmetric (HS*) and "none" are never allowed: with HS* the
# IdP's public key would become an HMAC secret (the classic key-confusion forgery).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# The password_hash of a user provisioned from the IdP: never a valid argon2 hash, so no
# password matches it, and it binds the row to the IdP's (issuer, subject) pair.
OIDC_HASH_PREFIX = "!oidc:"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,99}$")  # as accounts.service allows

TOTP_PERIOD = 30
TOTP_DIGITS = 6
TOTP_DRIFT_STEPS = 1

# One count for every refusal: a count by reason (unknown name, wrong password, locked,
# disabled) would tell whoever reads it which names exist. The reason is in the server log.
LOGIN_FAILURES = Counter(
    "evidence_login_failures_total",
    "Refused sign-ins, whatever the reason (never in the ledger)",
)
LOGIN_LOCKOUTS = Counter("evidence_login_lockouts_total", "Accounts locked after repeated failures")
LOGIN_RATE_LIMITED = Counter(
    "evidence_login_rate_limited_total", "Sign-ins refused because the address failed too often"
)
LOGINS = Counter("evidence_logins_total", "Successful sign-ins, by method", ["method"])


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    token_type: str = "bearer"
    expires_in: int = 0


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str  # base32, for typing into an authenticator app
    uri: str  # otpauth://totp/..., for a QR code


# -- TOTP (RFC 6238 over RFC 4226) -----------------------------------------------------------


def new_totp_secret() -> str:
    """160 random bits (RFC 4226's recommended length), base32 without padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def totp_step(at: dt.datetime) -> int:
    return int(at.timestamp()) // TOTP_PERIOD


def totp_code(secret: str, step: int, digits: int = TOTP_DIGITS) -> str:
    """The code for time step `step`: HOTP(K, T) with HMAC-SHA-1 and dynamic truncation."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def matching_totp_step(secret: str, code: str | None, at: dt.datetime) -> int | None:
    """The time step (now, or one either side) whose code is `code`, else None."""
    if not code:
        return None
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    now = totp_step(at)
    for step in (now, now - TOTP_DRIFT_STEPS, now + TOTP_DRIFT_STEPS):
        if hmac.compare_digest(totp_code(secret, step), code):
            return step
    return None


def totp_uri(secret: str, username: str, issuer: str) -> str:
    label = quote(f"{issuer}:{username}", safe=":@")
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": TOTP_DIGITS,
            "period": TOTP_PERIOD,
        }
    )
    return f"otpauth://totp/{label}?{query}"


# -- per-address failures: a sliding window in memory -----------------------------------------


class FailureWindow:
    """Failed sign-ins per source address within the last `window` seconds.

    One process's memory: several API replicas each count their own share, so put a rate
    limit on the token endpoint at the reverse proxy as well in production.
    """

    def __init__(self, limit: int, window: int, max_addresses: int = 100_000):
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses  # bounded, so spoofed address floods cannot grow it
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str, at: dt.datetime) -> int:
        """Seconds until `address` may try again; 0 when it may now."""
        now = at.timestamp()
        with self._lock:
            times = self._times.get(address)
            if times is None:
                return 0
            self._expire(times, now)
            if len(times) < self.limit:
                return 0
            return max(1, math.ceil(times[0] + self.window - now))

    def record(self, address: str, at: dt.datetime) -> None:
        now = at.timestamp()
        with self._lock:
            times = self._times.setdefault(address, deque())
            self._expire(times, now)
            times.append(now)
            if len(self._times) > self.max_addresses:
                self._prune(now)

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def _prune(self, now: float) -> None:
        for address in [a for a, t in self._times.items() if not t or t[-1] <= now - self.window]:
            del self._times[address]
        while len(self._times) > self.max_addresses:  # still too many: forget the oldest
            del self._times[next(iter(self._times))]


# -- per-context state -------------------------------------------------------------------------


@dataclass
class _State:
    settings: Settings
    failures: FailureWindow
    signing_key: Ed25519PrivateKey
    key_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    _jwks: jwt.PyJWKClient | None = None

    @property
    def verify_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    def jwks(self) -> jwt.PyJWKClient:
        """The IdP's keys, fetched lazily and cached (refetched on an unknown `kid`)."""
        with self.lock:
            if self._jwks is None:
                s = self.settings
                self._jwks = jwt.PyJWKClient(
                    str(s.oidc_jwks_url),
                    cache_jwk_set=True,
                    lifespan=s.oidc_jwks_cache_seconds,
                    timeout=10,
                )
            return self._jwks


_state_lock = threading.Lock()


def _state(ctx: Context) -> _State:
    # Kept on the context (which the accounts/identity code does not own) so each context,
    # that is each app or test, has its own rate-limit window, TOTP memory and JWKS cache.
    state = ctx.identity_state
    if state is not None:
        return state
    with _state_lock:
        state = ctx.identity_state
        if state is None:
            check_identity_settings(ctx.settings)
            key = load_or_create_jwt_key(jwt_key_path(ctx.settings))
            state = _State(
                settings=ctx.settings,
                failures=FailureWindow(
                    ctx.settings.login_rate_limit, ctx.settings.login_rate_window_seconds
                ),
                signing_key=key,
                key_id=_key_id(key.public_key()),
            )
            ctx.identity_state = state
    return state


def check_identity_settings(settings: Settings) -> None:
    """Refuse settings that would make token checking unsafe or impossible (a 500: the
    operator, not the caller, has to fix it)."""
    if settings.identity_mode in ("oidc", "both"):
        missing = [
            n for n in ("oidc_issuer", "oidc_audience", "oidc_jwks_url") if not getattr(settings, n)
        ]
        if missing:
            names = ", ".join(f"EVIDENCE_{n.upper()}" for n in missing)
            raise EvidenceError(f"identity_mode={settings.identity_mode} needs {names}")
        bad = [a for a in settings.oidc_algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not settings.oidc_algorithms:
            raise EvidenceError(
                f"EVIDENCE_OIDC_ALGORITHMS may only name asymmetric algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); refused: {bad or 'an empty list'}"
            )
        if settings.oidc_issuer == settings.jwt_issuer:
            raise EvidenceError("EVIDENCE_OIDC_ISSUER must differ from EVIDENCE_JWT_ISSUER")


# -- the local signing key ----------------------------------------------------------------------


def jwt_key_path(settings: Settings) -> Path:
    return (settings.jwt_key_path or settings.secrets_dir() / "jwt.key").resolve()


def load_or_create_jwt_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key local tokens are signed with; made on first use, kept 0600.

    Creation is atomic (write a temporary file, then hard-link it into place), so API
    replicas starting together on a shared volume agree on one key.
    """
    if not path.exists():
        create_once(
            path,
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    key = serialization.load_pem_private_key(read_private(path, "token signing key"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{path} does not hold an Ed25519 private key")
    return key


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- local sign-in ------------------------------------------------------------------------------

_dummy_hash: str | None = None


def _timing_hash() -> str:
    """An argon2id hash of nothing anyone knows: verified against when there is no real one."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password(secrets.token_urlsafe(32))
    return _dummy_hash


def _has_local_password(user: User | None) -> bool:
    return user is not None and not user.password_hash.startswith(OIDC_HASH_PREFIX)


def _is_locked(user: User, at: dt.datetime) -> bool:
    return user.locked_until is not None and user.locked_until > at


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
    return issue_token(ctx, user)


def _refuse(state: _State, source_ip: str, at: dt.datetime, reason: str, username: str) -> NoReturn:
    state.failures.record(source_ip, at)
    LOGIN_FAILURES.inc()
    log.info("sign-in refused for %r from %s: %s", username, source_ip, reason)
    raise NotAuthenticated(REFUSED)


def _count_failure(
    ctx: Context, state: _State, user_id: str, source_ip: str, at: dt.datetime, reason: str
) -> NoReturn:
    """Count a wrong password or code against the account; lock it at the limit; refuse."""
    settings = ctx.settings
    with ctx.db.write_session() as s:
        # FOR UPDATE so concurrent failures on PostgreSQL each count (SQLite's write
        # session already holds the database write lock).
        user = s.scalar(select(User).where(User.id == user_id).with_for_update())
        if user is not None and not _is_locked(user, at):
            user.failed_logins = (user.failed_logins or 0) + 1
            if user.failed_logins >= settings.login_max_failures:
                until = at + dt.timedelta(seconds=settings.login_lockout_seconds)
                user.locked_until = until
                user.failed_logins = 0
                ctx.ledger.append_in(
                    s,
                    "user.locked_out",
                    actor="system:identity",
                    subject={"user": user.id},
                    username=user.username,
                    source_ip=source_ip,
                    failures=settings.login_max_failures,
                    locked_until=clock.rfc3339(until),
                )
                LOGIN_LOCKOUTS.inc()
                log.warning(
                    "account %r locked until %s after failed sign-ins from %s",
                    user.username,
                    until.isoformat(),
                    source_ip,
                )
    _refuse(state, source_ip, at, reason, user.username if user else user_id)


def count_wrong_password(ctx: Context, user_id: str, source_ip: str) -> None:
    """A wrong password given outside the sign-in form (changing one's own): it counts
    against the account's lock-out exactly as a failed sign-in does."""
    try:
        _count_failure(ctx, _state(ctx), user_id, source_ip, clock.now(), "bad_password")
    except NotAuthenticated:
        pass


def has_local_password(user: User | None) -> bool:
    """True for an account that signs in with a password held here (not the IdP's)."""
    return _has_local_password(user)


def _record_success(ctx: Context, user_id: str, source_ip: str, method: str) -> None:
    with ctx.db.write_session() as s:
        user = s.scalar(select(User).where(User.id == user_id).with_for_update())
        assert user is not None
        user.failed_logins = 0
        user.locked_until = None
        ctx.ledger.append_in(
            s,
            "user.logged_in",
            actor=f"user:{user.username}",
            subject={"user": user.id},
            source_ip=source_ip,
            method=method,
        )


def claim_totp_step(ctx: Context, user_id: str, step: int) -> bool:
    """Use up `step` for this user; False if it, or a later step, was used already (replay).

    One conditional UPDATE in the database, so the memory is shared by every API process
    and two processes racing with one code cannot both win: only one row update happens."""
    with ctx.db.write_session() as s:
        done = s.execute(
            update(User)
            .where(
                User.id == user_id,
                or_(User.totp_last_step.is_(None), User.totp_last_step < step),
            )
            .values(totp_last_step=step)
        )
        return done.rowcount == 1


RECOVERY_CODE = re.compile(r"^[a-z2-7]{4}(-?[a-z2-7]{4}){3}$")


def recovery_code_hash(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").lower().encode()).hexdigest()


def use_recovery_code(ctx: Context, user_id: str, code: str | None) -> bool:
    """Spend one of the user's recovery codes (each works once, on any process)."""
    code = (code or "").strip().lower().replace(" ", "")
    if not RECOVERY_CODE.match(code):
        return False
    with ctx.db.write_session() as s:
        done = s.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == recovery_code_hash(code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=clock.now())
        )
        return done.rowcount == 1


def password_version(user: User) -> int:
    """Which password a token was issued under (milliseconds of its last change, 0 for
    never): a token naming an older one is refused, so a change ends every other session."""
    changed = user.password_changed_at
    return 0 if changed is None else int(changed.timestamp() * 1000)


def issue_token(ctx: Context, user: User) -> IssuedToken:
    """A JWT naming `user`; it carries no role: that is read from the database each time."""
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
    token = jwt.encode(
        claims, state.signing_key, algorithm=LOCAL_ALGORITHM, headers={"kid": state.key_id}
    )
    return IssuedToken(token, "bearer", settings.jwt_ttl_seconds)


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
    return Principal(user.id, user.username, Role(user.role), user.officer_id)


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


def _oidc_principal(ctx: Context, state: _State, token: str) -> Principal:
    settings = ctx.settings
    algorithms = list(settings.oidc_algorithms)
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        raise NotAuthenticated("the bearer token is not a well-formed JWT") from None
    if alg not in algorithms:
        # Checked before any key lookup, so junk tokens never make us fetch the JWKS.
        raise NotAuthenticated(f"the bearer token's algorithm {alg!r} is not allowed here")
    try:
        key = state.jwks().get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError as exc:
        log.error("could not fetch the identity provider's keys: %s", exc)
        raise NotAuthenticated(
            "the identity provider's signing keys could not be fetched: try again shortly"
        ) from None
    except jwt.PyJWTError as exc:
        raise NotAuthenticated(f"the bearer token was refused: {exc}") from None
    try:
        # Passing the PyJWK (not its raw key) also binds the algorithm to the key's type.
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.oidc_audience,
            issuer=settings.oidc_issuer,
            options=_options(["exp", "iss", "aud", "sub"]),
        )
    except jwt.PyJWTError as exc:
        raise NotAuthenticated(f"the bearer token was refused: {exc}") from None
    check_token_times(claims, clock.now(), leeway=settings.oidc_leeway_seconds)
    role = role_from_claims(claims, settings.oidc_role_claim)
    if role is None:
        known = ", ".join(r.value for r in Role)
        raise AccessDenied(
            f"the identity provider gave this person no role the evidence store knows "
            f"(claim {settings.oidc_role_claim!r}); ask for one of: {known}"
        )
    username = claims.get(settings.oidc_username_claim)
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise NotAuthenticated(
            f"the token's {settings.oidc_username_claim!r} claim is missing or not a usable "
            "user name (2-100 letters, digits, '.', '_', '@' or '-')"
        )
    officer = claims.get(settings.oidc_officer_id_claim)
    officer_id = str(officer) if isinstance(officer, (str, int)) and str(officer) else None
    user = _provisioned_user(
        ctx, str(claims["iss"]), str(claims["sub"]), username, role, officer_id
    )
    if user.disabled:
        raise AccessDenied("this account has been disabled in the evidence store: ask an admin")
    return Principal(user.id, user.username, role, user.officer_id)


def _claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name; a dotted name reaches into objects (Keycloak's realm_access.roles)
    when no top-level claim has that exact name (Auth0's URL-named claims contain dots)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


_ROLE_NAMES = frozenset(r.value for r in Role)


def role_from_claims(claims: dict[str, Any], claim: str) -> Role | None:
    """The first value of the role claim (a list, or a space-separated string) that names
    one of our roles."""
    value = _claim(claims, claim)
    values = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    for v in values:
        if isinstance(v, str) and v in _ROLE_NAMES:
            return Role(v)
    return None


def oidc_password_hash(issuer: str, subject: str) -> str:
    """The unusable password hash that also records which IdP identity owns the row."""
    return OIDC_HASH_PREFIX + hashlib.sha256(f"{issuer}\0{subject}".encode()).hexdigest()


def _provisioned_user(
    ctx: Context, issuer: str, subject: str, username: str, role: Role, officer_id: str | None
) -> User:
    """The User row for this IdP identity: made on first sight, kept in step with the IdP's
    role and officer id (each change a ledger entry). A name already held by a local user
    or another IdP subject is refused, never merged: that would hand over their identity."""
    marker = oidc_password_hash(issuer, subject)
    with ctx.db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
    if (
        user is not None
        and user.password_hash == marker
        and (user.role == role.value and user.officer_id == officer_id)
    ):
        return user  # the usual case: no write
    for attempt in (1, 2):
        try:
            return _write_provisioned(ctx, marker, issuer, subject, username, role, officer_id)
        except IntegrityError:
            if attempt == 2:  # two first requests raced to create the row; re-read once
                raise
    raise AssertionError("unreachable")


def _write_provisioned(
    ctx: Context,
    marker: str,
    issuer: str,
    subject: str,
    username: str,
    role: Role,
    officer_id: str | None,
) -> User:
    with ctx.db.write_session() as s:
        user = s.scalar(select(User).where(User.username == username).with_for_update())
        if (
            officer_id is not None
            and s.scalar(
                select(User.id).where(User.officer_id == officer_id, User.username != username)
            )
            is not None
        ):
            # Officer ids are unique (docs/accounts.md): another account's id would open
            # that officer's clips to this person.
            raise AccessDenied(
                f"the officer id {officer_id!r} from the identity provider already belongs to "
                "another account here: an admin must resolve it"
            )
        if user is None:
            user = User(
                username=username,
                role=role.value,
                officer_id=officer_id,
                password_hash=marker,
                created_at=clock.now(),
                disabled=False,
                failed_logins=0,
            )
            s.add(user)
            s.flush()
            ctx.ledger.append_in(
                s,
                "user.provisioned",
                actor="system:oidc",
                subject={"user": user.id},
                username=username,
                role=role.value,
                officer_id=officer_id,
                issuer=issuer,
                idp_subject=subject,
            )
            return user
        if user.password_hash != marker:
            raise AccessDenied(
                f"the user name {username!r} already belongs to another account here (a local "
                "user or another identity at the provider): an admin must resolve it"
            )
        changes: dict[str, Any] = {}
        if user.role != role.value:
            changes["role"] = role.value
        if user.officer_id != officer_id:
            changes["officer_id"] = officer_id
        if changes:
            for k, v in changes.items():
                setattr(user, k, v)
            ctx.ledger.append_in(
                s,
                "user.updated",
                actor="system:oidc",
                subject={"user": user.id},
                username=username,
                source="identity provider",
                **changes,
            )
        return user


# -- enrolment -------------------------------------------------------------------------------------


def set_totp(ctx: Context, username: str, *, actor: str = "system:cli") -> TotpEnrolment:
    """Give a local user a new TOTP secret (replacing any old one); from now on sign-in
    needs a code. The secret is returned once and never written to the ledger."""
    secret = new_totp_secret()
    with ctx.db.write_session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username!r}")
        if not _has_local_password(user):
            raise InvalidInput(
                f"{username} signs in through the identity provider: set up two-factor there"
            )
        user.totp_secret, user.totp_pending, user.totp_last_step = secret, None, None
        ctx.ledger.append_in(
            s, "user.totp_enabled", actor=actor, subject={"user": user.id}, username=username
        )
    return TotpEnrolment(secret, totp_uri(secret, username, ctx.settings.jwt_issuer))


# -- browser sign-in through the IdP: authorization code flow with PKCE -------------------------
#
# The UI (api/ui/routes.py) sends the browser to the IdP with a state, a nonce and a PKCE
# challenge, and on its return exchanges the code here. Which token the session keeps: the
# IdP's ACCESS token, because that is what the API already accepts as a bearer token
# (audience `oidc_audience`), so `principal_from_token` checks it on every request exactly as
# it checks an API caller's. The id_token's audience is the client id, not ours, so it is only
# used to prove this sign-in: its signature, issuer, audience (client id), times and nonce are
# checked, and its subject must be the access token's. An IdP whose access tokens are opaque or
# meant for another audience cannot be used for the UI (configure an audience mapper there).

OIDC_CALLBACK_PATH = "/ui/login/oidc/callback"
_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,40}$")  # RFC 6749 §5.2 error codes


@dataclass(frozen=True)
class OidcSignIn:
    principal: Principal
    token: IssuedToken  # the IdP's access token, kept in the UI session


def oidc_browser_sign_in_enabled(settings: Settings) -> bool:
    """True when the UI can send people to the IdP: OIDC is on and the client is configured."""
    return settings.identity_mode in ("oidc", "both") and all(
        (settings.oidc_authorization_url, settings.oidc_token_url, settings.oidc_client_id)
    )


def oidc_redirect_uri(settings: Settings) -> str:
    """Where the IdP sends the browser back; register exactly this at the IdP."""
    return settings.public_url.rstrip("/") + OIDC_CALLBACK_PATH


def pkce_verifier() -> str:
    """A PKCE code verifier: 32 random bytes, base64url (43 characters, RFC 7636 §4.1)."""
    return secrets.token_urlsafe(32)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge: BASE64URL(SHA256(ASCII(verifier))) without padding."""
    if not _PKCE_VERIFIER.match(verifier):
        raise InvalidInput("a PKCE code verifier is 43-128 unreserved characters")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _oidc_scopes(settings: Settings) -> str:
    scopes = settings.oidc_scopes.split()
    return " ".join(scopes if "openid" in scopes else ["openid", *scopes])


def oidc_authorization_url(settings: Settings, *, state: str, nonce: str, verifier: str) -> str:
    """The IdP's authorization endpoint with this sign-in's parameters."""
    if not oidc_browser_sign_in_enabled(settings):
        raise NotFound("sign-in through the identity provider is not configured here")
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.oidc_client_id,
            "redirect_uri": oidc_redirect_uri(settings),
            "scope": _oidc_scopes(settings),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    base = str(settings.oidc_authorization_url)
    return base + ("&" if "?" in base else "?") + query


def oidc_exchange_code(settings: Settings, code: str, verifier: str) -> dict[str, Any]:
    """POST the code and PKCE verifier to the token endpoint; the JSON answer, or
    NotAuthenticated with a message safe to show (the IdP's own words are not echoed)."""
    import httpx  # only this path needs it

    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": oidc_redirect_uri(settings),
        "code_verifier": verifier,
        "client_id": str(settings.oidc_client_id),
    }
    secret = settings.oidc_client_secret
    auth = (str(settings.oidc_client_id), secret.get_secret_value()) if secret else None
    try:
        r = httpx.post(
            str(settings.oidc_token_url),
            data=data,
            auth=auth,
            timeout=settings.oidc_timeout_seconds,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        log.error("identity provider token endpoint unreachable: %s", exc)
        raise NotAuthenticated(
            "the identity provider could not be reached: try again shortly"
        ) from None
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        log.warning("identity provider refused the code exchange: HTTP %s %r", r.status_code, error)
        # Only a plain RFC 6749 error code is repeated, never the IdP's free text.
        code = f", {error}" if isinstance(error, str) and _OAUTH_ERROR.match(error) else ""
        raise NotAuthenticated(
            f"the identity provider refused to complete the sign-in (HTTP {r.status_code}{code})"
        )
    return body


def verify_id_token(ctx: Context, id_token: str, nonce: str) -> dict[str, Any]:
    """The id_token's claims, checked as `_oidc_principal` checks a bearer token (pinned
    algorithms, the IdP's JWKS, issuer, times with leeway) but for the audience of this
    client, with `azp` (when there are several audiences) and the sign-in's nonce."""
    settings = ctx.settings
    state = _state(ctx)
    algorithms = list(settings.oidc_algorithms)
    try:
        alg = jwt.get_unverified_header(id_token).get("alg")
    except jwt.PyJWTError:
        raise NotAuthenticated(
            "the identity provider's id_token is not a well-formed JWT"
        ) from None
    if alg not in algorithms:
        raise NotAuthenticated(f"the id_token's algorithm {alg!r} is not allowed here")
    try:
        key = state.jwks().get_signing_key_from_jwt(id_token)
        claims = jwt.decode(
            id_token,
            key,
            algorithms=algorithms,
            audience=settings.oidc_client_id,
            issuer=settings.oidc_issuer,
            options=_options(["exp", "iat", "iss", "aud", "sub"]),
        )
    except jwt.PyJWKClientConnectionError:
        raise NotAuthenticated(
            "the identity provider's signing keys could not be fetched: try again shortly"
        ) from None
    except jwt.PyJWTError as exc:
        raise NotAuthenticated(f"the id_token was refused: {exc}") from None
    check_token_times(claims, clock.now(), leeway=settings.oidc_leeway_seconds)
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != settings.oidc_client_id:
        raise NotAuthenticated("the id_token was issued to another client (azp)")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise NotAuthenticated("the id_token does not belong to this sign-in (nonce)")
    return claims


def oidc_sign_in(
    ctx: Context, code: str, *, verifier: str, nonce: str, source_ip: str
) -> OidcSignIn:
    """Finish a browser sign-in: exchange the code, check the id_token (nonce) and the access
    token (exactly as a bearer token, with provisioning), write `user.logged_in` (method
    "oidc"). NotAuthenticated or AccessDenied (no known role, disabled, name taken) on any
    failure, before anything is written."""
    settings = ctx.settings
    if not oidc_browser_sign_in_enabled(settings):
        raise NotFound("sign-in through the identity provider is not configured here")
    body = oidc_exchange_code(settings, code, verifier)
    id_token, access_token = body.get("id_token"), body.get("access_token")
    if not isinstance(id_token, str) or not id_token:
        raise NotAuthenticated(
            "the identity provider sent no id_token (is 'openid' an allowed scope?)"
        )
    if not isinstance(access_token, str) or not access_token:
        raise NotAuthenticated("the identity provider sent no access token")
    id_claims = verify_id_token(ctx, id_token, nonce)
    try:
        access_claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise NotAuthenticated(
            "the identity provider's access token is not a JWT: the UI needs one it can check "
            f"(audience {settings.oidc_audience!r})"
        ) from None
    if access_claims.get("iss") != settings.oidc_issuer:
        raise NotAuthenticated("the access token was not issued by the identity provider")
    if access_claims.get("sub") != id_claims["sub"]:
        raise NotAuthenticated("the access token and the id_token name different people")
    # Fully verified here (signature, audience, times, role, provisioning), before any entry.
    principal = _oidc_principal(ctx, _state(ctx), access_token)
    _record_success(ctx, principal.user_id, source_ip, "oidc")
    LOGINS.labels("oidc").inc()
    expires_in = max(0, int(float(access_claims.get("exp", 0)) - clock.now().timestamp()))
    return OidcSignIn(principal, IssuedToken(access_token, "bearer", expires_in))


def is_local_token(settings: Settings, token: str) -> bool:
    """True when `token` claims to be one this store issued (unverified: for choosing what to
    do with a token already checked, such as renewing it, never for trusting it)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return claims.get("iss") == settings.jwt_issuer
