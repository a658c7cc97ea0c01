"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from api.gates import public
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

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
def metrics(_: None = Depends(public)) -> Response:
    # Public on the API port like most Prometheus targets; counts only, no identities.
    # Firewall it off in production if even counts are sensitive.
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
def root(_: None = Depends(public)) -> RedirectResponse:
    """People who type the server's address land on the sign-in page."""
    return RedirectResponse("/ui/", status_code=307)
