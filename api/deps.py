"""Dependencies the routes share."""

from __future__ import annotations

from fastapi import Request

from evidence.config import Settings
from evidence.context import Context
from evidence.db import Database
from evidence.storage import ObjectStore


def context(request: Request) -> Context:
    return request.app.state.ctx


def settings(request: Request) -> Settings:
    return request.app.state.settings


def database(request: Request) -> Database:
    return request.app.state.db


def store(request: Request) -> ObjectStore:
    return request.app.state.store
