"""Who is calling. Devices send `Authorization: Device <key>`; people get JWTs (identity issue)."""

from __future__ import annotations

from fastapi import Request

from evidence.accounts.models import Device
from evidence.accounts.service import authenticate_device
from evidence.errors import NotAuthenticated


def current_device(request: Request) -> Device:
    """The calling device, or 401: a device may only create, read and complete uploads."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "device" or not key.strip():
        raise NotAuthenticated("this route is for docking devices: send `Authorization: Device <key>`")
    return authenticate_device(request.app.state.ctx.ledger, key.strip())
