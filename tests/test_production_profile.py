"""The production profile, run for real on one machine (docs/deploy.md, "Queues and
processes"): PostgreSQL, a Redis broker, Ceph's RADOS Gateway as the store, the API under two
uvicorn worker processes, and two Celery workers on separate queues, the first
(ingest,maintenance) with the one scheduler embedded, the second (media,bundles). Every
process is started here and stopped by its PID; their logs stay in the test's directory.

What it proves: `evidence dock` of a camera folder through that API gives verified, proxied
clips; a case's bundle is built by the bundles worker, downloaded, and passes `evidence verify
bundle`; the ledger passes `evidence verify ledger`. And the separation: while the bundles
worker is inside a bundle build (held there by a row lock the test takes, seen waiting in
PostgreSQL), a second dock is ingested by the ingest worker, and the ledger records that clip
before the bundle; no timing is asserted, only states and the ledger's order.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text

from evidence import queue
from evidence.accounts.service import create_device
from evidence.context import Context
from tests.fixtures.bundles import TAKE, share
from tests.fixtures.people import make_force
from tests.fixtures.services import free_port, wait_until

# (Not `postgres`: that marker is for fault tests that stop their PostgreSQL.)
pytestmark = [pytest.mark.e2e, pytest.mark.s3]

READY = 240  # seconds any one wait may take on a loaded machine (a failure, not a measure)


class Processes:
    """The processes this test starts, each in its own process group, its output in a log."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs, self.env = logs, env
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str) -> None:
        with (self.logs / f"{name}.log").open("wb") as log:
            self.started[name] = subprocess.Popen(
                [sys.executable, "-m", *argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def alive(self) -> None:
        for name, proc in self.started.items():
            assert proc.poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"

    def stop(self) -> None:
        """SIGTERM to each (a worker finishes its task), then SIGKILL to whatever is left of
        its group (prefork children, ffmpeg)."""
        for proc in self.started.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()


@contextmanager
def _processes(logs: Path, env: dict[str, str]) -> Iterator[Processes]:
    procs = Processes(logs, env)
    try:
        yield procs
    except BaseException:
        procs.stop()
        for name in procs.started:  # the logs stay in the test's directory too
            print(f"--- {name} ---\n{procs.log(name)[-4000:]}")
        raise
    procs.stop()


def _env(ctx: Context, broker: str, port: int) -> dict[str, str]:
    s = ctx.settings
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")},
        "EVIDENCE_DATA_DIR": str(s.data_dir),
        "EVIDENCE_DATABASE_URL": ctx.db.url,
        "EVIDENCE_BROKER_URL": broker,
        "EVIDENCE_STORAGE_BACKEND": "s3",
        "EVIDENCE_S3_ENDPOINT": str(s.s3_endpoint),
        "EVIDENCE_S3_ACCESS_KEY": str(s.s3_access_key),
        "EVIDENCE_S3_SECRET_KEY": s.s3_secret_key,
        "EVIDENCE_S3_BUCKET": str(s.s3_bucket),
        "EVIDENCE_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }


def _dock(folder: Path, clips: list[Any], api: str, key: str) -> None:
    folder.mkdir()
    for clip in clips:
        (folder / clip.path.name).write_bytes(clip.path.read_bytes())
    run = subprocess.run(
        [sys.executable, "-m", "cli", "dock", str(folder), "--api", api, "--device-key", key]
        + ["--wait", "0"],
        capture_output=True,
        text=True,
        timeout=READY,
    )
    assert run.returncode == 0, run.stderr


def _clips_ready(db: Any, shas: list[str]) -> bool:
    with db.connect() as c:
        states = c.execute(
            text("SELECT state FROM clips WHERE sha256 = ANY(:s)"), {"s": shas}
        ).scalars()
        return sorted(states) == ["ready"] * len(shas)


def _clip_ids(db: Any, shas: list[str]) -> list[str]:
    with db.connect() as c:
        rows = c.execute(text("SELECT sha256, id FROM clips WHERE sha256 = ANY(:s)"), {"s": shas})
        ids = {sha: clip_id for sha, clip_id in rows}
    return [ids[s] for s in shas]


def _first_index(ctx: Context, ref: str, entry_type: str) -> int:
    return min(i for i, e in ctx.ledger.entries_about(ref) if json.loads(e)["type"] == entry_type)


def test_the_production_profile_on_one_machine(
    s3_server,
    s3_bucket: str,
    postgres_server,
    redis_url: str,
    tmp_path: Path,
    clip_mov,
    clip_1080p,
    clip_silent,
) -> None:
    from evidence.migrate import upgrade

    url = postgres_server.create_database()
    upgrade(url)
    ctx = Context(s3_server.settings(s3_bucket, tmp_path / "var", database_url=url))
    ctx.ledger.verifier_key  # noqa: B018 - the keys exist before any process starts
    key = create_device(ctx, None, "dock-prod").key
    broker = redis_url.rsplit("/", 1)[0] + "/9"  # a broker database of its own
    redis.Redis.from_url(broker).flushdb()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = _env(ctx, broker, port)
    db = create_engine(url)
    logs = tmp_path / "logs"
    logs.mkdir()

    with _processes(logs, env) as procs:
        procs.start(
            "api", "uvicorn", "--factory", "api.app:create_app", "--workers", "2",
            "--host", "127.0.0.1", "--port", str(port), "--http", "httptools",
        )  # fmt: skip
        procs.start(
            "ingest", "cli", "worker", "--queues", "ingest,maintenance", "--beat",
            "--concurrency", "1", "--hostname", "ingest@%h",
        )  # fmt: skip

        def answers() -> bool:
            procs.alive()
            try:
                return httpx.get(f"{api}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, READY, "the API")

        # A camera's folder, docked: verified, stored and proxied by the ingest worker.
        first = [clip_1080p, clip_mov]
        _dock(tmp_path / "DCIM", first, api, key)
        shas = [c.sha256 for c in first]
        wait_until(lambda: procs.alive() or _clips_ready(db, shas), READY, "first dock")
        clip_ids = _clip_ids(db, shas)
        for clip_id in clip_ids:
            types = [t for _, t in _types(ctx, clip_id)]
            assert types.count("clip.ingested") == 1 and types.count("derivative.created") == 2

        # A case with both clips, shared with the CPS, and a bundle asked for. Nothing consumes
        # the bundles queue yet: the request waits there.
        http = httpx.Client(base_url=api, timeout=60)
        f = make_force(ctx, http)
        eo, cps = f.as_("eo_brown"), f.as_("cps_green")
        case = http.post(
            "/api/v1/cases", headers=eo, json={"title": "R v Doe", "reference": "URN 9"}
        ).json()
        added = http.post(
            f"/api/v1/cases/{case['id']}/items", headers=eo, json={"clip_ids": clip_ids}
        )
        assert added.status_code == 200, added.text
        assert share(f, case["id"]).status_code == 201
        asked = http.post(f"/api/v1/cases/{case['id']}/bundles", headers=eo, json={})
        assert asked.status_code == 202, asked.text
        bundle_id = asked.json()["id"]
        assert redis.Redis.from_url(broker).llen(queue.BUNDLES) == 1

        # Hold the bundle's row, then start the media+bundles worker: it takes the build and
        # waits inside it, on the lock, as a long build would keep it busy.
        hold = db.connect()
        held = hold.begin()
        hold.execute(text("SELECT id FROM bundles WHERE id = :b FOR UPDATE"), {"b": bundle_id})
        procs.start(
            "media", "cli", "worker", "--queues", "media,bundles",
            "--concurrency", "1", "--hostname", "media@%h",
        )  # fmt: skip

        def build_waiting() -> bool:
            procs.alive()
            with db.connect() as c:
                waiting = c.execute(
                    text(
                        "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    )
                ).scalars()
                return any("UPDATE bundles" in q for q in waiting)

        wait_until(build_waiting, READY, "the bundles worker inside the build")

        # Meanwhile a second dock: ingested at once by the ingest worker.
        _dock(tmp_path / "DCIM2", [clip_silent], api, key)
        wait_until(
            lambda: procs.alive() or _clips_ready(db, [clip_silent.sha256]), READY, "second dock"
        )
        (late_clip,) = _clip_ids(db, [clip_silent.sha256])
        with db.connect() as c:
            state = c.execute(text("SELECT state FROM bundles WHERE id = :b"), {"b": bundle_id})
            assert state.scalar() == "queued", "the build is still held"
        held.rollback()
        hold.close()

        def bundle_ready() -> bool:
            procs.alive()
            got = http.get(f"/api/v1/bundles/{bundle_id}", headers=cps).json()
            assert got["state"] != "failed", got
            return got["state"] == "ready"

        wait_until(bundle_ready, READY, "the bundle")
        status = http.get(f"/api/v1/bundles/{bundle_id}", headers=cps).json()
        got = http.get(f"/api/v1/bundles/{bundle_id}/download", headers=cps, params=TAKE)
        assert got.status_code == 200
        path = tmp_path / "bundle.zip"
        path.write_bytes(got.content)
        assert hashlib.sha256(got.content).hexdigest() == status["sha256"]

    # The ledger's order: the clip docked during the build was ingested before the bundle.
    ingested = _first_index(ctx, f"clip:{late_clip}", "clip.ingested")
    exported = _first_index(ctx, f"bundle:{bundle_id}", "bundle.exported")
    assert ingested < exported
    # Each worker ran its own queues' tasks only.
    ingest_log, media_log = procs.log("ingest"), procs.log("media")
    assert f"Task {queue.PROCESS_UPLOAD}[" in ingest_log
    assert f"Task {queue.BUILD_BUNDLE}[" not in ingest_log
    assert f"Task {queue.BUILD_BUNDLE}[" in media_log
    assert f"Task {queue.PROCESS_UPLOAD}[" not in media_log
    assert "beat: Starting" in ingest_log and "beat: Starting" not in media_log  # one scheduler
    assert all(p.poll() is not None for p in procs.started.values())

    for argv in (
        ["verify", "bundle", str(path)],
        ["verify", "ledger", "--db", url, "--key", ctx.ledger.verifier_key],
    ):
        run = subprocess.run(
            [sys.executable, "-m", "cli", *argv], capture_output=True, text=True, timeout=READY
        )
        assert run.returncode == 0, run.stdout + run.stderr


def _types(ctx: Context, clip_id: str) -> list[tuple[int, str]]:
    return [(i, json.loads(e)["type"]) for i, e in ctx.ledger.entries_about(f"clip:{clip_id}")]
