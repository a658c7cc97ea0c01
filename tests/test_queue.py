"""The queue's composition: one module of names (evidence/queue.py), one builder of the
Celery app (workers/app.py), and modules that do nothing when imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MODULES = ["evidence.queue", "workers.app", "workers.beat", "workers.tasks", "api.app", "cli.main"]


@pytest.mark.parametrize("module", MODULES)
def test_importing_creates_no_file(tmp_path: Path, module: str) -> None:
    """The defaults put the data directory at ./var: importing must not make it (or any
    file); only a process's composition root, building its Celery app, does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    subprocess.run(
        [sys.executable, "-c", f"import {module}"], cwd=tmp_path, env=env, check=True, timeout=120
    )
    assert list(tmp_path.iterdir()) == []


def test_a_worker_consumes_the_queues_it_is_given_and_refuses_an_unknown_one() -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from evidence.queue import LEGACY_QUEUE, QUEUES, parse_queues

    assert parse_queues("ingest, maintenance") == ("ingest", "maintenance")
    assert parse_queues("all") == parse_queues("") == (*QUEUES, LEGACY_QUEUE)
    refused = CliRunner().invoke(app, ["worker", "--queues", "ingest,medai"])
    assert refused.exit_code == 2 and "medai" in refused.output
