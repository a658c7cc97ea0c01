"""Two-factor sign-in: TOTP codes, one-time recovery codes, and setting up a secret.

TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step either side for clock drift). A code
is accepted once per user (a step no later than the last accepted one is refused), so a
code seen over a shoulder cannot be replayed. That memory is in the database
(`users.totp_last_step`, one conditional UPDATE), so it holds behind any number of API
processes. A one-time recovery code (evidence/accounts/own.py) may stand in for the code;
each works once.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
import struct
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from sqlalchemy import or_, select, update

from evidence import clock
from evidence.accounts.models import RecoveryCode, User
from evidence.context import Context
from evidence.errors import InvalidInput, NotFound
from evidence.identity.oidc import _has_local_password

TOTP_PERIOD = 30
TOTP_DIGITS = 6
TOTP_DRIFT_STEPS = 1


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
