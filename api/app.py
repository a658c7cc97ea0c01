"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from api import problems
from api.security import ClientAddress, SecurityHeaders
from api.routes import admin, audit, auth, cases, clips, health, ledger, uploads
from api.ui import admin as ui_admin
from api.ui import retention as ui_retention
from api.ui import routes as ui
from api.routes import bundles, retention
from evidence import __version__
from evidence.config import Settings, get_settings
from evidence.context import Context


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    ctx = Context(settings)
    app = FastAPI(
        title="Evidence store",
        version=__version__,
        description="Body-worn video evidence: audited access, tamper-evident ledger, court bundles.",
        openapi_url="/openapi.json",
    )
    app.state.ctx = ctx
    app.state.store = ctx.store  # opened now: a wrong S3 setting fails at start, not mid-request
    problems.install(app)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ClientAddress)  # before any route reads request.client
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(ledger.router)
    app.include_router(uploads.router)
    app.include_router(clips.router)
    app.include_router(cases.router)
    app.include_router(cases.shares_router)
    app.include_router(audit.router)
    app.include_router(admin.router)
    app.include_router(ui.router)  # the review UI under /ui (docs/ui.md)
    app.include_router(ui_admin.router)  # its administrator's pages
    app.include_router(ui_retention.router)  # retention queue, schedule, holds
    app.state.enqueue_processing = _enqueuer(settings)
    app.include_router(bundles.router)  # court bundles (docs/bundles.md)
    app.include_router(retention.router)  # retention, holds, disposals (docs/retention.md)
    app.state.enqueue_bundle = _bundle_enqueuer(settings)
    app.state.enqueue_redaction = _redaction_enqueuer(settings)  # docs/media.md, Redactions
    if settings.storage_backend == "local":
        from api.routes import objects

        app.include_router(objects.router)
    return app


def _enqueuer(settings: Settings):  # type: ignore[no-untyped-def]
    """Send ingest work to the workers' queue (by task name: the API runs no task code)."""
    from workers.app import make_celery

    celery = make_celery(settings)

    def enqueue(upload_id: str) -> None:
        celery.send_task("evidence.ingest.process_upload", args=[upload_id])

    return enqueue


def _bundle_enqueuer(settings: Settings):  # type: ignore[no-untyped-def]
    """Send bundle builds to the workers' queue, by task name like ingest work."""
    from workers.app import make_celery

    celery = make_celery(settings)

    def enqueue(bundle_id: str) -> None:
        celery.send_task("evidence.bundles.build", args=[bundle_id])

    return enqueue


def _redaction_enqueuer(settings: Settings):  # type: ignore[no-untyped-def]
    """Send redactions to the workers' queue, by task name like ingest work."""
    from workers.app import make_celery

    celery = make_celery(settings)

    def enqueue(clip_id: str, kind: str) -> None:
        celery.send_task("evidence.media.redact", args=[clip_id, kind])

    return enqueue
