"""Liveness, readiness and Prometheus metrics.

Health answers are public (load balancers and orchestrators ask without credentials), so they
say ok or not ok per check and nothing else: which host, port or driver failed, and why, goes
to the server log. Metrics are for the monitoring system only: a bearer token of its own
(`EVIDENCE_METRICS_TOKEN`), compared in constant time; without one configured, none are served.
"""

from __future__ import annotations

import errno
import hmac
import logging
import shutil
from collections.abc import Iterator

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text

from api.gates import public
from api.schemas import not_json
from api.schemas.health import HealthOut, ReadyOut
from api.schemas.problems import problems
from evidence import notifications
from evidence.context import Context
from evidence.scrub.service import integrity_status

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", response_model=HealthOut)
def healthz(_: None = Depends(public)) -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "not ready: the checks say which"}},
)
def readyz(request: Request, _: None = Depends(public)) -> JSONResponse:
    """Ready when the database answers and the object store is reachable and has room:
    `{"database": "ok"|"failed", "storage": "ok"|"failed"|"disk full"}`."""
    ctx = request.app.state.ctx
    checks = {"database": _database(ctx), "storage": _storage(ctx)}
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


def _database(ctx: Context) -> str:
    try:
        with ctx.db.session() as s:
            s.execute(text("SELECT 1"))
        return "ok"
    except Exception:  # readiness reports any failure rather than raising it
        log.exception("readyz: the database did not answer")
        return "failed"


def _storage(ctx: Context) -> str:
    try:
        ctx.store.exists("readyz-probe")
        root = getattr(ctx.store, "root", None)  # a local store: its filesystem's free space
        if root is not None:
            free = shutil.disk_usage(root).free
            if free < ctx.settings.storage_min_free_mb * 2**20:
                log.error(
                    "readyz: the object store at %s has %d bytes free (below "
                    "EVIDENCE_STORAGE_MIN_FREE_MB=%d)",
                    root,
                    free,
                    ctx.settings.storage_min_free_mb,
                )
                return "disk full"
        return "ok"
    except Exception as exc:  # as above
        log.exception("readyz: the object store did not answer")
        return "disk full" if _no_space(exc) else "failed"


def _no_space(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def monitoring(request: Request) -> None:
    """The monitoring system's gate: `Authorization: Bearer <EVIDENCE_METRICS_TOKEN>`.
    Refused alike whether no token is configured, none was sent or a wrong one was."""
    expected = request.app.state.ctx.settings.metrics_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if (
        expected is None
        or not expected.get_secret_value()
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(given.strip().encode(), expected.get_secret_value().encode())
    ):
        raise HTTPException(
            401,
            "metrics are for the monitoring system: send its token "
            "(EVIDENCE_METRICS_TOKEN) as a bearer token",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


@router.get(
    "/metrics",
    response_class=Response,
    responses=not_json("Prometheus metrics", CONTENT_TYPE_LATEST) | problems(401),
)
def metrics(request: Request, _: None = Depends(monitoring)) -> Response:
    # The scrubber runs in a worker process, so its gauges are read from the database at
    # scrape time; a registry per scrape binds them to this app's store.
    store = CollectorRegistry(auto_describe=False)
    store.register(_IntegrityCollector(request.app.state.ctx))
    return Response(generate_latest() + generate_latest(store), media_type=CONTENT_TYPE_LATEST)


class _IntegrityCollector:
    """What an alert needs: are there failures, and is the scrubber still running?"""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = integrity_status(self.ctx)
        yield GaugeMetricFamily(
            "evidence_integrity_failures",
            "Stored objects whose last check failed (clips with integrity failed, plus "
            "bundles), from the scrubber; restore from backup: docs/backup.md",
            value=status.failures,
        )
        yield GaugeMetricFamily(
            "evidence_scrub_last_batch_timestamp_seconds",
            "Unix time of the latest scrub.batch ledger entry (0: never scrubbed)",
            value=status.last_batch_at or 0.0,
        )
        yield GaugeMetricFamily(
            "evidence_notifications_failed",
            "E-mail notifications never delivered (refused, or retries exhausted): "
            "docs/notifications.md",
            value=notifications.failed_count(self.ctx),
        )
        waiting = _queue_lengths(self.ctx)
        if waiting is not None:
            gauge = GaugeMetricFamily(
                "evidence_queue_length",
                "Tasks waiting in a Redis queue for a worker (the backlog KEDA scales on)",
                labels=["queue"],
            )
            for name, length in waiting.items():
                gauge.add_metric([name], length)
            yield gauge


def _queue_lengths(ctx: Context) -> dict[str, int] | None:
    """The length of each task queue's Redis list, by queue; None (no gauge) with another
    broker or when Redis does not answer within two seconds (logged), so a scrape never
    hangs on it."""
    url = ctx.settings.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    from evidence.queue import QUEUES

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in QUEUES:
                pipe.llen(name)
            return {name: int(n) for name, n in zip(QUEUES, pipe.execute(), strict=True)}
    except redis.RedisError:
        log.warning("metrics: the broker did not answer; evidence_queue_length left out")
        return None
    finally:
        client.close()


@router.get("/", include_in_schema=False)
def root(_: None = Depends(public)) -> RedirectResponse:
    """People who type the server's address land on the sign-in page."""
    return RedirectResponse("/ui/", status_code=307)
