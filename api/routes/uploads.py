"""Ingest routes for docking devices (docs/ingest.md)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import current_device
from api.schemas import uploads as out
from api.schemas.problems import problems
from evidence.accounts.models import Device
from evidence.ingest import service
from evidence.ingest.models import UploadState
from evidence.types import MAX_BIGINT

router = APIRouter(prefix="/api/v1/uploads", tags=["ingest"])


class Source(BaseModel):
    """Where the dock found the clip: the camera's attribution reads it (docs/cameras.md)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, max_length=1024, description="path on the camera's storage")
    volume_label: str | None = Field(None, max_length=64)
    volume_uuid: str | None = Field(None, max_length=64)


class Declaration(BaseModel):
    sha256: str = Field(min_length=64, max_length=64, description="SHA-256 of the clip, hex")
    size: int = Field(ge=0, le=MAX_BIGINT)
    filename: str = Field(min_length=1, max_length=255)
    metadata: dict[str, Any] | None = None
    source: Source | None = None


@router.post(
    "",
    status_code=201,
    response_model=out.UploadDeclaredOut,
    responses={
        200: {"model": out.UploadExistsOut, "description": "the store has these bytes already"},
        **problems(401, 409, 413, 422, 503, 507),
    },
)
def declare(
    body: Declaration, request: Request, device: Device = Depends(current_device)
) -> JSONResponse:
    d = service.declare_upload(
        request.app.state.ctx,
        device,
        sha256=body.sha256,
        size=body.size,
        filename=body.filename,
        metadata=body.metadata,
        source=body.source.model_dump(exclude_none=True) if body.source else None,
    )
    if d.state == UploadState.duplicate:
        # No clip id: knowing a hash is not a right to a clip (docs/ingest.md).
        return JSONResponse({"id": d.upload_id, "state": "exists"})
    return JSONResponse(
        {
            "id": d.upload_id,
            "state": d.state,
            "part_size": d.part_size,
            "parts": [p.__dict__ for p in d.parts],
        },
        status_code=201,
    )


@router.post(
    "/{upload_id}/complete",
    status_code=202,
    response_model=out.UploadCompletedOut,
    responses=problems(401, 404, 409, 422, 503),
)
def complete(
    upload_id: str, request: Request, device: Device = Depends(current_device)
) -> JSONResponse:
    done = service.complete_upload(request.app.state.ctx, device, upload_id)
    upload = done.upload
    # Also when completing again: work a broker outage held back in the outbox goes now.
    request.app.state.relay_outbox()
    return JSONResponse(
        {
            "id": upload.id,
            "state": upload.state,
            "clip_id": service.visible_clip_id(request.app.state.ctx, upload),
        },
        status_code=202,
    )


@router.get(
    "/{upload_id}", response_model=out.UploadStatusOut, responses=problems(401, 404, 422, 503)
)
def status(upload_id: str, request: Request, device: Device = Depends(current_device)) -> dict:
    return dataclasses.asdict(service.upload_status(request.app.state.ctx, device, upload_id))
