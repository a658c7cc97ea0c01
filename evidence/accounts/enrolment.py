"""Enrolment links: how a person sets their own password, so no administrator ever knows it.

Creating an account (or forcing a reset of its password) issues a one-time link,
`{public_url}/ui/enrol/<token>`, valid for `ENROLMENT_HOURS`. The administrator hands it to
the person; they open it and choose their password (the JSON equivalent is
POST /api/v1/auth/enrol). Only the token's SHA-256 is stored: the token is 256 random bits,
so a fast hash is enough and a copy of the database opens no account. A newer link for the
same account ends the older ones. Issuing (`user.enrolment_issued`) and using
(`user.enrolled`, with the source address) a link are ledger entries.

An account signed in through the force's identity provider needs no link and gets none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from evidence import clock
from evidence.accounts.models import Enrolment, User
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import InvalidInput, NotFound
from evidence.ledger.service import Ledger

ENROLMENT_HOURS = 72  # long enough for a link handed over at the start of a rest day
ENROL_PATH = "/ui/enrol/"
# The password_hash of an account waiting for its owner: never a valid argon2 hash, so no
# password opens it until the link is used.
UNSET_PASSWORD = "!enrol"
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class EnrolmentLink:
    url: str
    token: str  # in the URL; shown once, only its hash is kept
    expires_at: dt.datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def enrol_url(settings: Settings, token: str) -> str:
    return settings.public_url.rstrip("/") + ENROL_PATH + token


def issue_in(
    s: Session,
    ledger: Ledger,
    settings: Settings,
    user: User,
    *,
    purpose: str,
    actor: str,
    created_by: str | None,
) -> EnrolmentLink:
    """A new link for `user`, inside the caller's transaction; earlier unused links end."""
    now = clock.now()
    s.execute(
        update(Enrolment)
        .where(
            Enrolment.user_id == user.id, Enrolment.used_at.is_(None), Enrolment.expires_at > now
        )
        .values(expires_at=now)
    )
    token = secrets.token_urlsafe(32)
    expires = now + dt.timedelta(hours=ENROLMENT_HOURS)
    s.add(
        Enrolment(
            user_id=user.id,
            token_hash=token_hash(token),
            purpose=purpose,
            created_by=created_by,
            created_at=now,
            expires_at=expires,
        )
    )
    subject: dict[str, str | list[str]] = {"user": [user.id, created_by] if created_by else user.id}
    ledger.append_in(
        s,
        "user.enrolment_issued",
        actor=actor,
        subject=subject,
        username=user.username,
        purpose=purpose,
        expires_at=clock.rfc3339(expires),
    )
    return EnrolmentLink(enrol_url(settings, token), token, expires)


def _usable(s: Session, token: str, *, lock: bool = False) -> tuple[Enrolment, User]:
    gone = NotFound(
        "this enrolment link is unknown, already used or expired: ask an "
        "administrator for a new one"
    )
    if not 20 <= len(token) <= 100 or not set(token) <= _TOKEN_CHARS:
        raise gone
    q = select(Enrolment).where(Enrolment.token_hash == token_hash(token))
    # FOR UPDATE: two uses of one link at once on PostgreSQL, only one sets the password.
    row = s.scalar(q.with_for_update() if lock else q)
    if row is None or row.used_at is not None or row.expires_at <= clock.now():
        raise gone
    user = s.get(User, row.user_id)
    if user is None or user.disabled:
        raise gone
    return row, user


def describe(ctx: Context, token: str) -> dict[str, str]:
    """Whose link this is (for the page that asks for the password); NotFound if unusable."""
    with ctx.db.session() as s:
        row, user = _usable(s, token)
        return {
            "username": user.username,
            "purpose": row.purpose,
            "expires_at": clock.rfc3339(row.expires_at),
        }


def check_new_password(password: str, *, username: str) -> None:
    from evidence.accounts.service import MIN_PASSWORD

    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password too short: use at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise InvalidInput("password too long: at most 1024 characters")
    if password.strip().lower() == username.lower():
        raise InvalidInput("the password may not be the user name")


def enrol(ctx: Context, token: str, password: str, *, source_ip: str) -> str:
    """Use a link: set the person's own password. Returns the user name."""
    from evidence.accounts.service import hash_password

    with ctx.db.session() as s:
        _, user = _usable(s, token)
        username = user.username
    check_new_password(password, username=username)
    hashed = hash_password(password)  # slow: outside the write transaction
    with ctx.db.write_session() as s:
        row, user = _usable(s, token, lock=True)
        row.used_at = clock.now()
        user.password_hash = hashed
        user.password_changed_at = clock.now()
        user.failed_logins, user.locked_until = 0, None
        ctx.ledger.append_in(
            s,
            "user.enrolled",
            actor=f"user:{user.username}",
            subject={"user": user.id},
            purpose=row.purpose,
            source_ip=source_ip[:64],
        )
        return user.username
