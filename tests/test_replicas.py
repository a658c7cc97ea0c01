"""Two API replicas sharing one PostgreSQL database and one Redis, as in production: each a
real uvicorn server with an app (and so a context, with its own memory) of its own. What a
guesser does at one replica counts at the other: the TOTP step used, the failed sign-ins
against an account and from an address, the requests through a public link. With Redis
down, sign-in is refused with 503, never let through uncounted."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from evidence import clock
from evidence.accounts.service import create_user
from evidence.config import Settings
from evidence.context import Context
from evidence.identity.totp import set_totp, totp_code, totp_step
from evidence.ratelimit import FailureWindow, RedisWindow, rate_limit_url, window_for
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.redis import RedisServer

pytestmark = pytest.mark.e2e  # running stores: see docs/testing.md

PASSWORD = "correct horse battery staple"
TOKEN = "/api/v1/auth/token"


@dataclass
class Replicas:
    ctx: Context  # the test's own view of the shared database
    a: httpx.Client
    b: httpx.Client
    redis: RedisServer | None


@pytest.fixture
def postgres_url(postgres_server, migrated_postgres: str) -> str:  # type: ignore[no-untyped-def]
    return postgres_server.create_database(migrated_postgres)


def two_replicas(settings: Settings, redis: RedisServer | None) -> Iterator[Replicas]:
    with ExitStack() as stack:
        clients = []
        for _ in range(2):
            base = stack.enter_context(running_api(settings))
            clients.append(stack.enter_context(httpx.Client(base_url=base, timeout=30)))
        yield Replicas(Context(settings), clients[0], clients[1], redis)


def shared(tmp_path: Path, url: str, redis: RedisServer, **overrides: Any) -> Settings:
    # The production profile: the broker is Redis, and the counters go with it.
    return make_settings(tmp_path, url, broker_url=redis.url, **overrides)


def sign_in(http: httpx.Client, password: str = PASSWORD, totp: str | None = None) -> int:
    data = {"username": "eo_brown", "password": password}
    if totp is not None:
        data["totp"] = totp
    return http.post(TOKEN, data=data).status_code


def test_the_counters_go_to_redis_only_when_one_is_configured(tmp_path: Path) -> None:
    embedded = make_settings(tmp_path, "sqlite:///unused.db")
    assert rate_limit_url(embedded) is None
    assert isinstance(window_for(embedded, "sign-in", 5, 60), FailureWindow)
    broker = embedded.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    assert rate_limit_url(broker) == "redis://127.0.0.1:1/0"
    assert isinstance(window_for(broker, "sign-in", 5, 60), RedisWindow)
    own = broker.model_copy(update={"rate_limit_url": "redis://127.0.0.1:2/1"})
    assert rate_limit_url(own) == "redis://127.0.0.1:2/1"


def test_two_replicas_hitting_at_once_let_exactly_the_limit_through(redis_url: str) -> None:
    """Counted and checked in one Lua step: however the hits of two processes interleave,
    no more than the limit get through."""
    name = f"race-{uuid.uuid4().hex}"
    replicas = [
        RedisWindow(redis.Redis.from_url(redis_url), name, limit=37, window=600) for _ in range(2)
    ]
    now = clock.now()
    with ThreadPoolExecutor(max_workers=8) as pool:
        waits = list(pool.map(lambda i: replicas[i % 2].hit("link", now), range(100)))
    assert sum(1 for w in waits if w == 0) == 37
    assert all(0 < w <= 600 for w in waits if w)
    assert replicas[0].retry_after("link", now) > 0 and replicas[1].retry_after("link", now) > 0


def test_the_in_memory_window_counts_and_checks_in_one_step() -> None:
    window = FailureWindow(limit=3, window=60)
    now = clock.now()
    assert [window.hit("a", now) for _ in range(4)] == [0, 0, 0, 60]
    assert window.hit("b", now) == 0, "another key has its own count"
    assert window.hit("a", now + dt.timedelta(seconds=61)) == 0, "the window moved on"


def test_a_totp_code_used_at_one_replica_is_refused_at_the_other(
    tmp_path: Path, postgres_url: str, restartable_redis: RedisServer
) -> None:
    for r in two_replicas(shared(tmp_path, postgres_url, restartable_redis), restartable_redis):
        create_user(r.ctx, "eo_brown", "evidence_officer", PASSWORD)
        secret = set_totp(r.ctx, "eo_brown").secret
        code = totp_code(secret, totp_step(clock.now()))
        assert sign_in(r.a, totp=code) == 200
        assert sign_in(r.b, totp=code) == 401, "the same step replayed at replica B"


def test_failed_sign_ins_at_both_replicas_lock_the_account_as_one(
    tmp_path: Path, postgres_url: str, restartable_redis: RedisServer
) -> None:
    settings = shared(tmp_path, postgres_url, restartable_redis, login_max_failures=4)
    for r in two_replicas(settings, restartable_redis):
        create_user(r.ctx, "eo_brown", "evidence_officer", PASSWORD)
        for http in (r.a, r.b, r.a, r.b):
            assert sign_in(http, password="wrong") == 401
        # Four failures, two at each: locked everywhere, the right password included.
        assert sign_in(r.a) == 401
        assert sign_in(r.b) == 401


def test_failed_sign_ins_from_one_address_are_limited_across_replicas(
    tmp_path: Path, postgres_url: str, restartable_redis: RedisServer
) -> None:
    settings = shared(tmp_path, postgres_url, restartable_redis, login_rate_limit=4)
    for r in two_replicas(settings, restartable_redis):
        create_user(r.ctx, "eo_brown", "evidence_officer", PASSWORD)
        for http in (r.a, r.b, r.a, r.b):
            assert sign_in(http, password="wrong") == 401
        for http in (r.a, r.b):
            answer = http.post(TOKEN, data={"username": "eo_brown", "password": PASSWORD})
            assert answer.status_code == 429
            assert int(answer.headers["retry-after"]) > 0


def test_in_memory_counters_are_per_process(tmp_path: Path, postgres_url: str) -> None:
    """Without Redis each replica counts its own failures: what the shared store is for."""
    settings = make_settings(tmp_path, postgres_url, login_rate_limit=4)
    for r in two_replicas(settings, None):
        create_user(r.ctx, "eo_brown", "evidence_officer", PASSWORD)
        for http in (r.a, r.b, r.a, r.b):
            assert sign_in(http, password="wrong") == 401
        assert sign_in(r.a) == 200, "each replica saw only two failures"


def test_a_public_links_rate_limit_holds_across_replicas(
    tmp_path: Path, postgres_url: str, restartable_redis: RedisServer
) -> None:
    settings = shared(tmp_path, postgres_url, restartable_redis, submission_rate_per_link=4)
    for r in two_replicas(settings, restartable_redis):
        create_user(r.ctx, "eo_brown", "evidence_officer", PASSWORD)
        token = r.a.post(TOKEN, data={"username": "eo_brown", "password": PASSWORD})
        officer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        links = []
        for _ in range(2):
            made = r.a.post(
                "/api/v1/submissions/invitations", json={"reference": "INC-1"}, headers=officer
            )
            assert made.status_code == 201, made.text
            links.append(f"/api/v1/public/submissions/{made.json()['url'].rsplit('/', 1)[1]}")
        link, other = links
        answers = [http.get(link).status_code for http in (r.a, r.b, r.a, r.b, r.a, r.b)]
        assert answers == [200] * 4 + [429] * 2
        assert r.b.get(other).status_code == 200, "another link is not affected"


def test_sign_in_with_redis_down_is_refused_with_503_not_let_through(
    tmp_path: Path, postgres_url: str, restartable_redis: RedisServer
) -> None:
    settings = shared(tmp_path, postgres_url, restartable_redis, login_rate_limit=2)
    for r in two_replicas(settings, restartable_redis):
        create_user(r.ctx, "eo_brown", "evidence_officer", PASSWORD)
        for http in (r.a, r.b):
            assert sign_in(http, password="wrong") == 401
        assert sign_in(r.a) == 429, "the address is limited"
        restartable_redis.stop()
        for http in (r.a, r.b):
            for password in ("wrong", PASSWORD):
                answer = http.post(TOKEN, data={"username": "eo_brown", "password": password})
                assert answer.status_code == 503, answer.text
                problem = answer.json()
                assert problem["title"] == "Rate limit store unavailable"
                assert "Redis" in problem["detail"]
        # The browser's sign-in form too, in plain words.
        form = r.a.get("/ui/login")
        found = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert found is not None, form.text
        fields = {"username": "eo_brown", "password": PASSWORD, "acknowledge": "yes"}
        page = r.a.post("/ui/login", data={**fields, "nonce": found.group(1)})
        assert page.status_code == 503 and "Sign-in is unavailable" in page.text
        # The public links fail closed as well; the public's page says so in plain words.
        assert r.a.get("/api/v1/public/submissions/" + "x" * 43).status_code == 503
        page = r.b.get("/submit/" + "x" * 43)
        assert page.status_code == 503 and "try this link again" in page.text
        assert "Redis" not in page.text
        # Back again: the count survived (append-only file), so the address is still limited.
        restartable_redis.start()
        assert sign_in(r.b) == 429
