"""Guessing defences: the per-account lock-out, the per-address rate limit, and what each
sign-in leaves behind (Prometheus counts, the server log, ledger entries).

- Lock-out: `login_max_failures` failed sign-ins in a row lock the account for
  `login_lockout_seconds`; each lock-out is a `user.locked_out` ledger entry with the
  source address. Single failed sign-ins are NOT ledger entries: anyone can make them, so an
  attacker could flood the permanent, never-pruned ledger. They are counted in Prometheus
  (`evidence_login_failures_total`, one count whatever the reason) and logged instead;
  every successful sign-in is a `user.logged_in` entry (source address, method; never a
  secret).
- A refused sign-in always says the same thing (`REFUSED`), whatever the reason
  (evidence/identity/signin.py). A locked account therefore gets 401, not 429: a 429 would
  confirm that the name exists (only real accounts lock). 429 + Retry-After is the
  per-address rate limit.
- Rate limit: failed sign-ins per source address within a window (`login_rate_limit` per
  `login_rate_window_seconds`), counted in Redis when one is configured, so every API
  replica counts against one limit, else in this process's memory (evidence/ratelimit.py).
  Only failures count, so a station of officers behind one NAT address can all sign in at
  shift change. If Redis cannot be reached the sign-in is refused with 503, never let
  through uncounted. The lock-out counter is in the database (`users.failed_logins`), so it
  holds behind any number of API processes.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, NoReturn

from prometheus_client import Counter
from sqlalchemy import select

from evidence import clock
from evidence.accounts.models import User
from evidence.context import Context
from evidence.errors import NotAuthenticated

if TYPE_CHECKING:
    from evidence.identity.state import _State

log = logging.getLogger(__name__)


REFUSED = "invalid credentials or account locked"


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


def _is_locked(user: User, at: dt.datetime) -> bool:
    return user.locked_until is not None and user.locked_until > at


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
