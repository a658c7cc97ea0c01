"""deploy/prometheus/alerts.yaml against what /metrics really serves: every evidence_* metric
a rule names is exported by the running API (read from a real scrape), and the queue gauge
counts the tasks really waiting in a real Redis."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from evidence.config import Settings
from evidence.queue import BUNDLES, INGEST, QUEUES
from workers.app import make_celery

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yaml"
SCRAPER = {"Authorization": "Bearer scrape-me"}


def _rules() -> list[dict]:  # type: ignore[type-arg]
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _served(settings: Settings) -> str:
    with TestClient(create_app(settings)) as client:
        answer = client.get("/metrics", headers=SCRAPER)
        assert answer.status_code == 200, answer.text
        return answer.text


def _names(text: str) -> set[str]:
    return set(re.findall(r"^(evidence_\w+?)(?:_total|_created)?(?:\{| )", text, re.M)) | set(
        re.findall(r"^# TYPE (evidence_\w+) ", text, re.M)
    )


def test_every_metric_in_the_rules_is_served(
    tmp_path: Path, redis_url: str, sqlite_url: str
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=sqlite_url,
        broker_url=redis_url,
        metrics_token=SecretStr("scrape-me"),
    )
    served = _names(_served(settings))
    rules = _rules()
    assert {r["alert"] for r in rules} >= {
        "EvidenceIntegrityFailure",
        "EvidenceScrubStalled",
        "EvidenceQueueBacklog",
    }
    named = set()
    for rule in rules:
        named |= set(re.findall(r"\b(evidence_[a-z_]+)", rule["expr"]))
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    assert len(named) >= 4
    assert sorted(named - served) == [], f"served: {sorted(served)}"


def test_the_queue_gauge_counts_the_tasks_waiting_in_redis(
    tmp_path: Path, redis_url: str, sqlite_url: str
) -> None:
    import redis

    settings = Settings(
        data_dir=tmp_path,
        database_url=sqlite_url,
        broker_url=redis_url,
        metrics_token=SecretStr("scrape-me"),
    )
    client = redis.Redis.from_url(redis_url)
    client.delete(*QUEUES)
    sender = make_celery(settings)
    for _ in range(3):
        sender.send_task("evidence.test.nobody_runs_this", queue=INGEST)
    sender.send_task("evidence.test.nobody_runs_this", queue=BUNDLES)
    try:
        text = _served(settings)
        lengths = dict(re.findall(r'^evidence_queue_length\{queue="(\w+)"\} (\S+)$', text, re.M))
        assert {q: float(n) for q, n in lengths.items()} == {
            q: {INGEST: 3.0, BUNDLES: 1.0}.get(q, 0.0) for q in QUEUES
        }
    finally:
        client.delete(*QUEUES)
        client.close()
    # A broker that does not answer: the gauge is left out, the scrape still answers.
    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    assert "evidence_queue_length" not in _served(down)
    assert "evidence_integrity_failures" in _served(down)
