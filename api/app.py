"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from api import problems
from api.routes import health, ledger
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
    app.state.settings = settings
    app.state.ctx = ctx
    app.state.db = ctx.db
    app.state.store = ctx.store
    problems.install(app)
    app.include_router(health.router)
    app.include_router(ledger.router)
    if settings.storage_backend == "local":
        from api.routes import objects

        app.include_router(objects.router)
    return app
