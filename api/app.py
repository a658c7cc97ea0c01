"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from api import problems
from api.routes import (
    admin,
    audit,
    auth,
    bundles,
    cameras,
    cases,
    clips,
    health,
    ledger,
    organisations,
    retention,
    submissions,
    uploads,
)
from api.schemas.problems import document_problems
from api.security import BodyLimit, ClientAddress, SecurityHeaders
from api.ui import account as ui_account
from api.ui import admin as ui_admin
from api.ui import cameras as ui_cameras
from api.ui import organisations as ui_organisations
from api.ui import retention as ui_retention
from api.ui import routes as ui
from api.ui import submissions as ui_submissions
from api.viewing import ViewingServer
from evidence import __version__
from evidence.config import Settings, get_settings
from evidence.context import Context
from evidence.outbox import Relay


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    ctx = Context(settings)
    app = FastAPI(
        title="Evidence store",
        version=__version__,
        description=(
            "Body-worn video evidence: audited access, tamper-evident ledger, court bundles."
        ),
        openapi_url="/openapi.json",
    )
    app.openapi = document_problems(app)  # type: ignore[method-assign]
    app.state.ctx = ctx
    app.state.store = ctx.store  # opened now: a wrong S3 setting fails at start, not mid-request
    problems.install(app)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ClientAddress)  # before any route reads request.client
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)  # before any route parses one
    # Outermost: a viewing's Range requests are answered from its signed URL before any other
    # middleware, session or query runs (api/viewing.py).
    app.add_middleware(ViewingServer, ctx=ctx)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(auth.account_router)  # your own password and two-factor sign-in
    app.include_router(ledger.router)
    app.include_router(uploads.router)
    app.include_router(clips.router)
    app.include_router(cases.router)
    app.include_router(cases.shares_router)
    app.include_router(audit.router)
    app.include_router(admin.router)
    app.include_router(organisations.router)  # who evidence is disclosed to
    app.include_router(ui_cameras.router)  # the camera register; before ui: /ui/clips/unattributed
    app.include_router(ui.router)  # the review UI under /ui (docs/ui.md)
    app.include_router(ui_admin.router)  # its administrator's pages
    app.include_router(ui_organisations.router)  # who evidence is disclosed to
    app.include_router(ui_account.router)  # your own account; enrolment links
    app.include_router(ui_retention.router)  # retention queue, schedule, holds
    # Work for the workers is in the outbox with the change that asks for it (evidence/outbox.py);
    # routes relay it to the broker after their commit, best effort.
    app.state.relay_outbox = _outbox_relay(ctx, settings)
    app.include_router(bundles.router)  # court bundles (docs/bundles.md)
    app.include_router(retention.router)  # retention, holds, disposals (docs/retention.md)
    app.include_router(cameras.router)  # the camera register (docs/cameras.md)
    app.include_router(submissions.router)  # footage from the public (docs/public-submissions.md)
    app.include_router(submissions.public_router)  # the public link's own routes
    app.include_router(ui_submissions.router)  # the public pages and the review queue
    if settings.storage_backend == "local":
        from api.routes import objects

        app.include_router(objects.router)
    return app


def _outbox_relay(ctx: Context, settings: Settings) -> Relay:
    """Relay outbox rows to the workers' queue after a request's commit (never raises).
    The API process's one Celery app, built here: it sends tasks by name and runs none."""
    from workers.app import make_celery, make_sender

    return Relay(ctx, make_sender(make_celery(settings)))
