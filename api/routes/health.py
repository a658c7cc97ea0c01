"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request, Response

from api.gates import public
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text

from evidence.context import Context
from evidence.scrub import integrity_status

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(_: None = Depends(public)) -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, _: None = Depends(public)) -> JSONResponse:
    """Ready when the database answers and the object store is reachable."""
    ctx = request.app.state.ctx
    checks: dict[str, str] = {}
    try:
        with ctx.db.session() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure rather than raising it
        checks["database"] = f"error: {exc}"
    try:
        ctx.store.exists("readyz-probe")
        checks["object_store"] = "ok"
    except Exception as exc:  # as above
        checks["object_store"] = f"error: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                        status_code=200 if ok else 503)


@router.get("/metrics")
def metrics(request: Request, _: None = Depends(public)) -> Response:
    # Public on the API port like most Prometheus targets; counts only, no identities.
    # Firewall it off in production if even counts are sensitive.
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


@router.get("/", include_in_schema=False)
def root(_: None = Depends(public)) -> RedirectResponse:
    """People who type the server's address land on the sign-in page."""
    return RedirectResponse("/ui/", status_code=307)
