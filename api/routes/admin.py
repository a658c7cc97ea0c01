"""Administration: users and devices. Admins manage them and see no footage."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.gates import gate
from evidence.access import Principal
from evidence.accounts import service

router = APIRouter(prefix="/api/v1", tags=["admin"])


class NewUser(BaseModel):
    username: str = Field(min_length=2, max_length=100)
    role: str
    password: str = Field(min_length=1, max_length=1024)
    officer_id: str | None = Field(None, max_length=64)


class UserChange(BaseModel):
    disabled: bool | None = None
    role: str | None = None


class NewDevice(BaseModel):
    name: str = Field(min_length=2, max_length=100)
    kind: str = "dock"


class DeviceChange(BaseModel):
    disabled: bool


@router.get("/users")
def list_users(request: Request, principal: Principal = Depends(gate("users.manage"))) -> dict:
    return {"items": service.list_users(request.app.state.ctx.ledger, principal)}


@router.post("/users", status_code=201)
def create_user(body: NewUser, request: Request,
                principal: Principal = Depends(gate("users.manage"))) -> dict:
    user = service.create_user(request.app.state.ctx.ledger, body.username, body.role,
                               body.password, officer_id=body.officer_id, actor=principal.actor)
    return {"id": user.id, "username": user.username, "role": user.role,
            "officer_id": user.officer_id}


@router.patch("/users/{username}")
def change_user(username: str, body: UserChange, request: Request,
                principal: Principal = Depends(gate("users.manage"))) -> dict:
    return service.set_user_state(request.app.state.ctx.ledger, principal, username,
                                  disabled=body.disabled, role=body.role)


@router.get("/devices")
def list_devices(request: Request, principal: Principal = Depends(gate("devices.manage"))) -> dict:
    return {"items": service.list_devices(request.app.state.ctx.ledger, principal)}


@router.post("/devices", status_code=201)
def create_device(body: NewDevice, request: Request,
                  principal: Principal = Depends(gate("devices.manage"))) -> dict:
    """The key is in this answer once; only its hash is kept."""
    new = service.create_device(request.app.state.ctx.ledger, body.name, kind=body.kind,
                                actor=principal.actor)
    return {"id": new.device.id, "name": new.device.name, "kind": new.device.kind, "key": new.key}


@router.patch("/devices/{name}", status_code=204)
def change_device(name: str, body: DeviceChange, request: Request,
                  principal: Principal = Depends(gate("devices.manage"))) -> None:
    service.set_device_disabled(request.app.state.ctx.ledger, principal, name, body.disabled)
