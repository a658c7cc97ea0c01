"""PostgreSQL stopped for 30 s and started again while a court bundle is being built
(production profile: PostgreSQL, Redis, a worker process, the local object store).

The build in hand meets OperationalError part-way through; it must neither end `failed` nor
leave a half-written ZIP behind: the task retries with backoff, the rebuild starts cleanly,
and within a minute of the database's return the bundle is `ready`, its ZIP verifies, the
ledger verifies and no original is lost, with no manual step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from evidence import queue
from evidence.access import Principal
from evidence.accounts.models import Role
from evidence.accounts.service import create_device, create_user
from evidence.bundles import service as bundles
from evidence.bundles.models import Bundle
from evidence.cases.service import add_items, create_case
from evidence.context import Context
from evidence.ingest import service as ingest
from evidence.migrate import upgrade
from tests.fixtures.databases import make_settings
from tests.fixtures.faults import (
    OUTAGE_SECONDS,
    RECOVERED_WITHIN,
    assert_nothing_lost,
    running_worker,
    wait_for,
)
from tests.fixtures.ingest import ingest_file
from tests.fixtures.postgres import PostgresServer, throwaway_postgres
from tests.fixtures.redis import RedisServer
from tests.fixtures.store_faults import make_clips

pytestmark = [pytest.mark.fault, pytest.mark.postgres, pytest.mark.timeout(900)]

# Enough footage (about 5 MB a clip, 400 MB in all) that the build takes seconds, so the
# outage starts while it is part-way through rather than after it.
CLIPS = 80
SECONDS_PER_CLIP = 12


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: stopping the session's would disturb other tests."""
    with throwaway_postgres() as server:
        yield server


def _bundle_row(ctx: Context, bundle_id: str) -> tuple[str, int]:
    with ctx.db.session() as s:
        b = s.get(Bundle, bundle_id)
        assert b is not None
        return b.state, b.progress


def _wait_building(ctx: Context, bundle_id: str) -> None:
    """Returns as soon as the worker has taken the build (polled closely: it lasts seconds)."""
    deadline = time.monotonic() + 120
    while _bundle_row(ctx, bundle_id)[0] != "building":
        assert time.monotonic() < deadline, "the worker never took the bundle build"
        time.sleep(0.02)


def test_postgres_restarted_during_a_bundle_build_ends_ready_by_itself(
    own_postgres: PostgresServer,
    restartable_redis: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = own_postgres.create_database()
    upgrade(url)
    settings = make_settings(tmp_path, url, broker_url=restartable_redis.url)
    ctx = Context(settings)
    clips = make_clips(
        tmp_path / "clips",
        CLIPS,
        tag="pgbundle",
        size="320x240",
        seconds=SECONDS_PER_CLIP,
        lossless=True,
    )
    device = create_device(ctx, None, "dock-pg-bundle").device
    with monkeypatch.context() as m:
        m.setattr(ingest, "DERIVATIVES", {})  # a bundle of originals: no proxies to make
        clip_ids = [ingest_file(ctx, c, device=device) for c in clips]
    assert max(c.size for c in clips) < 8 * 1024 * 1024, "ingest_file sends one part"
    user = create_user(ctx, "eo_pg_bundle", "evidence_officer", "a long enough password")
    eo = Principal(user.id, user.username, Role.evidence_officer)
    case = create_case(ctx, eo, "Restart", "URN restart")
    add_items(ctx, eo, case["id"], clip_ids)

    log = tmp_path / "worker.log"
    with running_worker(settings, log=log):
        bundle_id = bundles.request_bundle(ctx, eo, case["id"])["id"]  # sent by the outbox relay
        _wait_building(ctx, bundle_id)
        own_postgres.stop()
        down_at = time.monotonic()
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))

        own_postgres.start()
        took = wait_for(
            lambda: _bundle_row(ctx, bundle_id)[0] == "ready",
            RECOVERED_WITHIN,
            "the bundle built during the restart, ready after PostgreSQL returned",
        )
        print(f"ready {took:.1f} s after PostgreSQL returned")

    retried = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if queue.BUILD_BUNDLE in line and "retry" in line
    ]
    assert retried and "OperationalError" in retried[0], "the build in hand met the outage"
    with ctx.db.session() as s:
        b = s.get(Bundle, bundle_id)
        assert b is not None and b.error is None
        key, sha256 = b.key, b.sha256
    assert [o.key for o in ctx.store.list("bundles/")] == [key], "one ZIP, no half-written one"
    assert not list((settings.data_dir / "work" / "bundles").glob("*")), "no work files left"
    path = tmp_path / "bundle.zip"
    with path.open("wb") as f:
        for chunk in ctx.store.open(key):
            f.write(chunk)
    assert ctx.store.stat(key).sha256 == sha256
    verified = CliRunner().invoke(
        app,
        [
            "verify",
            "bundle",
            str(path),
            "--key",
            ctx.ledger.verifier_key,
            "--bundle-key",
            str(settings.secrets_dir() / "bundle.pub.pem"),
        ],
    )
    assert verified.exit_code == 0, verified.output
    assert_nothing_lost(ctx, clips)
