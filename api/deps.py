"""Dependencies the routes share. Most routes read `request.app.state.ctx` directly; the
object routes take the store alone, so tests can serve them over any store."""

from __future__ import annotations

from fastapi import Request

from evidence.storage import ObjectStore


def store(request: Request) -> ObjectStore:
    return request.app.state.store
