"""A person's own account: their password and their two-factor sign-in.

- Changing the password needs the current one. A wrong current password counts against
  the account's lock-out like a failed sign-in (so a session left open is no way to guess
  it); the change ends every other token and session of the account
  (`users.password_changed_at`) and gives the caller a fresh token.
- TOTP self-enrolment: `start_totp` keeps a new secret aside (`users.totp_pending`) and
  returns it with its otpauth:// URI and a QR code of that URI as SVG (segno; no script
  and no network). Sign-in is unchanged until `confirm_totp` receives a code from the
  new secret: then it is in force, and ten recovery codes are shown once.
- Recovery codes: 80 random bits each (16 base32 characters, written in groups of four),
  stored as SHA-256 (a fast hash is enough for that much randomness); each can stand in
  for one TOTP code, once. `new_recovery_codes` replaces them all, given a current code.

Every step is a ledger entry; no secret, code or password ever is.
"""

from __future__ import annotations

import base64
import io
import secrets
from dataclasses import dataclass

import segno
from sqlalchemy import delete, select

from evidence import clock
from evidence.access import Principal, require
from evidence.accounts.models import RecoveryCode, User
from evidence.context import Context
from evidence.errors import InvalidInput
from evidence.identity.oidc import has_local_password
from evidence.identity.signin import count_wrong_password
from evidence.identity.tokens import IssuedToken, issue_token
from evidence.identity.totp import (
    claim_totp_step,
    matching_totp_step,
    new_totp_secret,
    recovery_code_hash,
    totp_uri,
)

RECOVERY_CODES = 10


@dataclass(frozen=True)
class TotpStart:
    secret: str  # base32, to type into an authenticator app
    uri: str  # otpauth://totp/...
    qr_svg: str  # the URI as a QR code, an SVG document


def _local_user(s, principal: Principal) -> User:  # type: ignore[no-untyped-def]
    user = s.get(User, principal.user_id)
    if user is None or not has_local_password(user):
        raise InvalidInput(
            "you sign in through the identity provider: manage your password "
            "and two-factor sign-in there"
        )
    return user


def change_password(
    ctx: Context, principal: Principal, current: str, new: str, *, source_ip: str
) -> IssuedToken:
    from evidence.accounts.enrolment import check_new_password
    from evidence.accounts.service import check_password, hash_password

    require(principal, "account.manage")
    with ctx.db.session() as s:
        user = _local_user(s, principal)
        password_hash = user.password_hash
    if not check_password(password_hash, current):
        count_wrong_password(ctx, principal.user_id, source_ip[:64])
        raise InvalidInput("the current password is not right")
    check_new_password(new, username=principal.username)
    if new == current:
        raise InvalidInput("choose a password different from the current one")
    hashed = hash_password(new)
    with ctx.db.write_session() as s:
        user = _local_user(s, principal)
        user.password_hash = hashed
        user.password_changed_at = clock.now()
        ctx.ledger.append_in(
            s,
            "user.password_changed",
            actor=principal.actor,
            subject={"user": user.id},
            source_ip=source_ip[:64],
        )
    with ctx.db.session() as s:
        return issue_token(ctx, _local_user(s, principal), second_factor=principal.second_factor)


def qr_svg(data: str) -> str:
    out = io.BytesIO()
    segno.make(data, error="m").save(
        out,
        kind="svg",
        scale=5,
        border=2,
        xmldecl=False,
        svgns=True,
        title="Two-factor sign-in QR code",
    )
    return out.getvalue().decode()


def qr_data_uri(svg: str) -> str:
    """The SVG as a data: URI for an <img> (the UI's policy allows data: images only, and
    an image cannot run script)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def start_totp(ctx: Context, principal: Principal) -> TotpStart:
    require(principal, "account.manage")
    secret = new_totp_secret()
    with ctx.db.write_session() as s:
        user = _local_user(s, principal)
        user.totp_pending = secret
        ctx.ledger.append_in(
            s, "user.totp_enrolment_started", actor=principal.actor, subject={"user": user.id}
        )
    uri = totp_uri(secret, principal.username, ctx.settings.jwt_issuer)
    return TotpStart(secret, uri, qr_svg(uri))


def pending_totp(ctx: Context, principal: Principal) -> TotpStart | None:
    """The enrolment started and not yet confirmed, to show its QR code again."""
    require(principal, "account.manage")
    with ctx.db.session() as s:
        user = s.get(User, principal.user_id)
        secret = user.totp_pending if user else None
    if not secret:
        return None
    uri = totp_uri(secret, principal.username, ctx.settings.jwt_issuer)
    return TotpStart(secret, uri, qr_svg(uri))


def confirm_totp(ctx: Context, principal: Principal, code: str) -> list[str]:
    """Put the pending secret in force, given a code from it; returns the recovery codes
    (shown once)."""
    require(principal, "account.manage")
    with ctx.db.session() as s:
        secret = _local_user(s, principal).totp_pending
    if not secret:
        raise InvalidInput("start setting up two-factor sign-in first")
    step = matching_totp_step(secret, code, clock.now())
    if step is None:
        raise InvalidInput(
            "that code does not match: check the authenticator app's clock "
            "and type the current code"
        )
    codes = _new_codes()
    with ctx.db.write_session() as s:
        user = _local_user(s, principal)
        if user.totp_pending != secret:
            raise InvalidInput(
                "two-factor set-up was started again meanwhile: use the newest QR code"
            )
        user.totp_secret, user.totp_pending, user.totp_last_step = secret, None, step
        _store_codes(s, user.id, codes)
        ctx.ledger.append_in(
            s,
            "user.totp_enabled",
            actor=principal.actor,
            subject={"user": user.id},
            username=user.username,
            recovery_codes=len(codes),
        )
    return codes


def new_recovery_codes(ctx: Context, principal: Principal, code: str) -> list[str]:
    """Replace every recovery code, given a current TOTP code."""
    require(principal, "account.manage")
    with ctx.db.session() as s:
        secret = _local_user(s, principal).totp_secret
    if not secret:
        raise InvalidInput("two-factor sign-in is not on for your account")
    step = matching_totp_step(secret, code, clock.now())
    if step is None or not claim_totp_step(ctx, principal.user_id, step):
        raise InvalidInput("that code does not match (or was used already)")
    codes = _new_codes()
    with ctx.db.write_session() as s:
        _store_codes(s, principal.user_id, codes)
        ctx.ledger.append_in(
            s,
            "user.recovery_codes_issued",
            actor=principal.actor,
            subject={"user": principal.user_id},
            recovery_codes=len(codes),
        )
    return codes


def recovery_codes_left(ctx: Context, principal: Principal) -> int:
    with ctx.db.session() as s:
        return len(
            s.scalars(
                select(RecoveryCode.id).where(
                    RecoveryCode.user_id == principal.user_id, RecoveryCode.used_at.is_(None)
                )
            ).all()
        )


def _new_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 16 characters
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def _store_codes(s, user_id: str, codes: list[str]) -> None:  # type: ignore[no-untyped-def]
    s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    now = clock.now()
    s.add_all(
        RecoveryCode(user_id=user_id, code_hash=recovery_code_hash(c), created_at=now)
        for c in codes
    )
