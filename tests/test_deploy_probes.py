"""`evidence ping-worker`, the liveness probe of the worker and scheduler pods, against a real
Redis broker: a worker that runs answers, a name nobody runs does not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from typer.testing import CliRunner

from cli.main import app
from evidence.config import Settings, get_settings
from workers.app import make_celery


@pytest.fixture
def broker_env(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.setenv("EVIDENCE_BROKER_URL", redis_url)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_a_running_worker_answers_and_a_missing_one_does_not(broker_env: Settings) -> None:
    node = f"probe-{uuid.uuid4().hex[:8]}@test"
    celery = make_celery(broker_env)
    with start_worker(
        celery, pool="solo", hostname=node, perform_ping_check=False, shutdown_timeout=30
    ):
        answered = CliRunner().invoke(app, ["ping-worker", "--hostname", node, "--timeout", "10"])
    assert answered.exit_code == 0, answered.output
    assert f"{node}: pong" in answered.output

    missing = CliRunner().invoke(
        app, ["ping-worker", "--hostname", f"gone-{node}", "--timeout", "1"]
    )
    assert missing.exit_code == 1
    assert "no answer within 1 s" in missing.output
