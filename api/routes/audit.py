"""The auditor's view of access, the admin's grants, and who am I."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from api.gates import gate
from evidence import audit
from evidence.access import ACTIONS, Principal
from evidence.types import MAX_BIGINT

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit/access")
def recent_access(request: Request, limit: int = Query(100, ge=1, le=500),
                  before: int | None = Query(None, ge=0, le=MAX_BIGINT),
                  principal: Principal = Depends(gate("audit.read"))) -> dict:
    return {"items": audit.recent_access(request.app.state.ctx, principal, limit=limit, before=before)}


class GrantBody(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=5, max_length=500)
    expires_at: dt.datetime
    clip_id: str | None = None
    case_id: str | None = None


@router.post("/grants", status_code=201)
def create_grant(body: GrantBody, request: Request,
                 principal: Principal = Depends(gate("grants.manage"))) -> dict:
    expires = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=dt.UTC)
    return audit.grant_footage(request.app.state.ctx, principal, username=body.username,
                               reason=body.reason, expires_at=expires, clip_id=body.clip_id,
                               case_id=body.case_id)


@router.delete("/grants/{grant_id}", status_code=204)
def revoke_grant(grant_id: str, request: Request,
                 principal: Principal = Depends(gate("grants.manage"))) -> None:
    audit.revoke_grant(request.app.state.ctx, principal, grant_id)


@router.get("/me")
def me(principal: Principal = Depends(gate("session.read"))) -> dict:
    return {"username": principal.username, "role": principal.role.value,
            "officer_id": principal.officer_id,
            "may": sorted(a for a, roles in ACTIONS.items() if principal.role in roles)}
