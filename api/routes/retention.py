"""Retention: the policy, the schedule of what falls due, the disposal review queue, holds."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from api.gates import gate
from api.schemas import retention as out
from api.schemas.problems import CHANGE, ONE_OBJECT, SIGNED_IN
from evidence.access import Principal
from evidence.retention import service

router = APIRouter(prefix="/api/v1", tags=["retention"])


class Decision(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


class NewHold(BaseModel):
    clip_id: str | None = Field(default=None, max_length=36)
    case_id: str | None = Field(default=None, max_length=36)
    reason: str = Field(min_length=3, max_length=500)


@router.get("/retention/policy", response_model=out.PolicyOut, responses=SIGNED_IN)
def policy(request: Request, principal: Principal = Depends(gate("retention.read"))) -> dict:
    settings = request.app.state.ctx.settings
    return {
        "default_category": settings.retention_default_category,
        "notice_days": settings.retention_notice_days,
        "rules": {name: rule.model_dump() for name, rule in settings.retention_rules.items()},
    }


@router.get("/retention/schedule", response_model=out.ScheduleOut, responses=SIGNED_IN)
def schedule(
    request: Request,
    within_days: int = Query(90, ge=0, le=36500),
    limit: int = Query(500, ge=1, le=5000),
    principal: Principal = Depends(gate("retention.read")),
) -> dict:
    """What falls due for disposal or review within `within_days`, and what happens then."""
    return {
        "items": service.schedule(
            request.app.state.ctx, principal, within_days=within_days, limit=limit
        )
    }


@router.get("/disposals", response_model=out.DisposalQueueOut, responses=SIGNED_IN)
def disposals(
    request: Request,
    state: str = Query("pending", max_length=16),
    principal: Principal = Depends(gate("retention.read")),
) -> dict:
    return {"items": service.queue(request.app.state.ctx, principal, state=state)}


@router.post("/disposals/{disposal_id}/approve", response_model=out.DisposalOut, responses=CHANGE)
def approve(
    disposal_id: str,
    body: Decision,
    request: Request,
    principal: Principal = Depends(gate("retention.decide")),
) -> dict:
    return service.approve(request.app.state.ctx, principal, disposal_id, body.reason)


@router.post("/disposals/{disposal_id}/retain", response_model=out.DisposalOut, responses=CHANGE)
def retain(
    disposal_id: str,
    body: Decision,
    request: Request,
    principal: Principal = Depends(gate("retention.decide")),
) -> dict:
    return service.retain(request.app.state.ctx, principal, disposal_id, body.reason)


@router.get(
    "/holds",
    response_model=out.HoldListOut,
    response_model_exclude_unset=True,  # `reason_withheld`: only when so
    responses=SIGNED_IN,
)
def holds(
    request: Request, active: bool = True, principal: Principal = Depends(gate("retention.read"))
) -> dict:
    return {"items": service.list_holds(request.app.state.ctx, principal, active=active)}


@router.post("/holds", status_code=201, response_model=out.HoldOut, responses=ONE_OBJECT)
def place_hold(
    body: NewHold, request: Request, principal: Principal = Depends(gate("holds.manage"))
) -> dict:
    return service.place_hold(
        request.app.state.ctx,
        principal,
        reason=body.reason,
        clip_id=body.clip_id,
        case_id=body.case_id,
    )


@router.post("/holds/{hold_id}/release", status_code=204, responses=CHANGE)
def release_hold(
    hold_id: str,
    body: Decision,
    request: Request,
    principal: Principal = Depends(gate("holds.manage")),
) -> None:
    service.release_hold(request.app.state.ctx, principal, hold_id, body.reason)
