"""Counting attempts per key (a source address, a public link) within a window: the sign-in
rate limit (evidence/identity/lockout.py) and the public-submission limits
(evidence/submissions/service.py) ask the same two questions of an `AttemptWindow`.

Two implementations, chosen by configuration (`window_for`):

- `FailureWindow`: a sliding window in this process's memory. The embedded profile runs one
  API process, so its memory is the whole truth there.
- `RedisWindow`: a counter in Redis, shared by every API replica, used whenever a Redis URL
  is configured (`EVIDENCE_RATE_LIMIT_URL`, by default the broker's URL when the broker is
  Redis). Each key is one counter that starts its window at the first attempt: INCR and
  EXPIRE run together in one Lua script, so no counter is ever left without an expiry and
  two replicas counting at once both count.

If Redis cannot be reached, `RedisWindow` raises `RateLimitUnavailable` (HTTP 503) for the
question and for the count alike: the caller refuses the request rather than allowing
attempts nobody counts. That is failing closed, on purpose: a store that let sign-ins
through unlimited whenever Redis was down would hand a guesser the moment to try.

The lock-out counter (`users.failed_logins`) and the TOTP replay memory
(`users.totp_last_step`) are not here: they are in the database already, one row per
account, so every replica sees them.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import deque
from typing import Protocol

import redis

from evidence.config import Settings
from evidence.errors import RateLimitUnavailable

# How long one Redis call may take before the store gives up and refuses (seconds).
REDIS_TIMEOUT = 2.0
KEY_PREFIX = "evidence:attempts"

# INCR and, on the first attempt of a window, EXPIRE: one script, so both or neither.
# Returns the count and the seconds left in the window.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


class AttemptWindow(Protocol):
    """Attempts per key within the last `window` seconds, at most `limit` of them."""

    limit: int
    window: int

    def retry_after(self, key: str, at: dt.datetime) -> int:
        """Seconds until `key` may try again; 0 when it may now."""
        ...

    def record(self, key: str, at: dt.datetime) -> None:
        """Count one attempt by `key` at `at`."""
        ...

    def hit(self, key: str, at: dt.datetime) -> int:
        """Count one attempt by `key` if it is within the limit, in one step (two replicas
        cannot both take the last place); seconds to wait, 0 when it was let through."""
        ...


class FailureWindow:
    """Attempts per key within the last `window` seconds, in this process's memory."""

    def __init__(self, limit: int, window: int, max_addresses: int = 100_000):
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses  # bounded, so spoofed address floods cannot grow it
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str, at: dt.datetime) -> int:
        now = at.timestamp()
        with self._lock:
            times = self._times.get(key)
            if times is None:
                return 0
            self._expire(times, now)
            if len(times) < self.limit:
                return 0
            return max(1, math.ceil(times[0] + self.window - now))

    def record(self, key: str, at: dt.datetime) -> None:
        now = at.timestamp()
        with self._lock:
            times = self._times.setdefault(key, deque())
            self._expire(times, now)
            times.append(now)
            if len(self._times) > self.max_addresses:
                self._prune(now)

    def hit(self, key: str, at: dt.datetime) -> int:
        now = at.timestamp()
        with self._lock:
            times = self._times.setdefault(key, deque())
            self._expire(times, now)
            if len(times) >= self.limit:
                return max(1, math.ceil(times[0] + self.window - now))
            times.append(now)
            if len(self._times) > self.max_addresses:
                self._prune(now)
            return 0

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._times.items() if not t or t[-1] <= now - self.window]:
            del self._times[key]
        while len(self._times) > self.max_addresses:  # still too many: forget the oldest
            del self._times[next(iter(self._times))]


class RedisWindow:
    """Attempts per key in Redis, shared by every process that uses the same Redis.

    The window is Redis's clock, not the caller's `at`: it starts at a key's first attempt
    and ends `window` seconds later (when the key expires)."""

    def __init__(self, client: redis.Redis, name: str, limit: int, window: int):
        self.client = client
        self.name = name
        self.limit = limit
        self.window = window
        self._count = client.register_script(_COUNT)

    def _key(self, key: str) -> str:
        return f"{KEY_PREFIX}:{self.name}:{key}"

    def retry_after(self, key: str, at: dt.datetime) -> int:
        try:
            with self.client.pipeline(transaction=True) as p:
                p.get(self._key(key))
                p.ttl(self._key(key))
                count, ttl = p.execute()
        except redis.RedisError as e:
            raise _unavailable(self.name, e) from e
        if count is None or int(count) < self.limit:
            return 0
        return max(1, int(ttl)) if ttl and int(ttl) > 0 else self.window

    def record(self, key: str, at: dt.datetime) -> None:
        self._counted(key)

    def hit(self, key: str, at: dt.datetime) -> int:
        count, ttl = self._counted(key)
        return 0 if count <= self.limit else max(1, ttl)

    def _counted(self, key: str) -> tuple[int, int]:
        try:
            count, ttl = self._count(keys=[self._key(key)], args=[self.window])
        except redis.RedisError as e:
            raise _unavailable(self.name, e) from e
        return int(count), int(ttl)


def _unavailable(name: str, error: Exception) -> RateLimitUnavailable:
    return RateLimitUnavailable(
        f"the shared attempt counter ({name}) in Redis cannot be reached, so the request "
        f"is refused rather than let through uncounted; retry when Redis is back ({error})"
    )


def rate_limit_url(settings: Settings) -> str | None:
    """The Redis the counters are shared in: EVIDENCE_RATE_LIMIT_URL, else the broker's
    URL when the broker is Redis, else None (each process counts in its own memory)."""
    if settings.rate_limit_url:
        return settings.rate_limit_url
    broker = settings.broker_url or ""
    return broker if broker.startswith(("redis://", "rediss://")) else None


_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(url: str) -> redis.Redis:
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = redis.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
            _clients[url] = client
        return client


def window_for(settings: Settings, name: str, limit: int, window: int) -> AttemptWindow:
    """The window the configuration asks for: in Redis when a Redis URL is configured,
    else in this process's memory."""
    url = rate_limit_url(settings)
    if url is None:
        return FailureWindow(limit, window)
    return RedisWindow(_client(url), name, limit, window)
