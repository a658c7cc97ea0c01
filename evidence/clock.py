"""The one clock the store reads, so tests can move time instead of waiting."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

_now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)


def now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return _now()


def set_clock(fn: Callable[[], dt.datetime] | None) -> None:
    """Replace the clock (tests); `None` restores the system clock."""
    global _now
    _now = fn if fn is not None else (lambda: dt.datetime.now(dt.UTC))


def rfc3339(t: dt.datetime) -> str:
    """UTC RFC 3339 with microseconds and a `Z`, the form every ledger entry uses."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
