"""The camera register: cameras, their state and who holds them (docs/cameras.md)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.gates import gate
from api.schemas import cameras as out
from api.schemas.problems import CHANGE, ONE_OBJECT, SIGNED_IN, problems
from evidence.access import REASON_MAX, Principal
from evidence.cameras import service

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])


def _ctx(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.ctx


class NewCamera(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: str = Field(min_length=1, max_length=64)
    make: str | None = Field(None, max_length=100)
    model: str | None = Field(None, max_length=100)


class StateChange(BaseModel):
    state: str = Field(max_length=16, description="in_service, lost or retired")
    reason: str = Field(min_length=1, max_length=REASON_MAX)


class NewAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    officer_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(max_length=16, description="personal or pool")
    starts_at: dt.datetime | None = Field(None, description="default: now")
    ends_at: dt.datetime | None = Field(None, description="required for a pool checkout")


class AssignmentEnd(BaseModel):
    ends_at: dt.datetime | None = Field(None, description="default: now")


@router.get("", response_model=out.CameraListOut, responses=SIGNED_IN)
def list_cameras(request: Request, principal: Principal = Depends(gate("cameras.read"))) -> dict:
    return {"items": service.list_cameras(_ctx(request), principal)}


@router.post("", status_code=201, response_model=out.CameraOut, responses=SIGNED_IN | problems(409))
def register_camera(
    body: NewCamera, request: Request, principal: Principal = Depends(gate("cameras.manage"))
) -> dict:
    return service.register_camera(
        _ctx(request), principal, body.serial, make=body.make, model=body.model
    )


@router.get("/{serial}", response_model=out.CameraDetailOut, responses=ONE_OBJECT)
def camera_detail(
    serial: str, request: Request, principal: Principal = Depends(gate("cameras.read"))
) -> dict:
    return service.camera_detail(_ctx(request), principal, serial)


@router.post("/{serial}/state", response_model=out.CameraOut, responses=CHANGE)
def set_state(
    serial: str,
    body: StateChange,
    request: Request,
    principal: Principal = Depends(gate("cameras.manage")),
) -> dict:
    return service.set_state(_ctx(request), principal, serial, body.state, body.reason)


@router.post(
    "/{serial}/assignments", status_code=201, response_model=out.AssignmentOut, responses=CHANGE
)
def assign(
    serial: str,
    body: NewAssignment,
    request: Request,
    principal: Principal = Depends(gate("cameras.manage")),
) -> dict:
    return service.assign(
        _ctx(request),
        principal,
        serial,
        officer_id=body.officer_id,
        kind=body.kind,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
    )


@router.post(
    "/{serial}/assignments/{assignment_id}/end", response_model=out.AssignmentOut, responses=CHANGE
)
def end_assignment(
    serial: str,
    assignment_id: str,
    request: Request,
    body: AssignmentEnd | None = None,
    principal: Principal = Depends(gate("cameras.manage")),
) -> dict:
    return service.end_assignment(
        _ctx(request), principal, serial, assignment_id, ends_at=body.ends_at if body else None
    )
