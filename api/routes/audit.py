"""The auditor's view of access, the admin's grants, and who am I."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from api.gates import gate
from api.schemas import audit as out
from api.schemas import not_json
from api.schemas.problems import CHANGE, ONE_OBJECT, SIGNED_IN
from api.streaming import csv_download
from evidence import audit
from evidence.access import ACTIONS, Principal
from evidence.types import MAX_BIGINT

router = APIRouter(prefix="/api/v1", tags=["audit"])


def log_filter(
    person: str | None = Query(None, max_length=100, description="a user name"),
    clip: str | None = Query(None, max_length=36),
    case: str | None = Query(None, max_length=36),
    type: str | None = Query(None, max_length=64, description="one entry type"),
    since: dt.datetime | None = Query(None, alias="from", description="inclusive, ISO 8601"),
    until: dt.datetime | None = Query(None, alias="to", description="exclusive, ISO 8601"),
) -> audit.LogFilter:
    return audit.LogFilter(
        person=person or None,
        clip_id=clip or None,
        case_id=case or None,
        entry_type=type or None,
        since=_utc(since),
        until=_utc(until),
    )


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.get("/audit/access", response_model=out.AccessLogOut, responses=SIGNED_IN)
def access_log(
    request: Request,
    f: audit.LogFilter = Depends(log_filter),
    limit: int = Query(100, ge=1, le=audit.LOG_PAGE_MAX),
    before: int | None = Query(None, ge=0, le=MAX_BIGINT),
    principal: Principal = Depends(gate("audit.read")),
) -> dict:
    """Access, sign-in, administrative and retention entries, newest first, filtered; page
    with `before` (the last index of the previous page). Reading it is recorded."""
    items = audit.access_log(
        request.app.state.ctx, principal, f, limit=limit, before=before, source_ip=_ip(request)
    )
    return {"items": items, "next_before": items[-1]["index"] if len(items) == limit else None}


@router.get(
    "/audit/access.csv",
    response_class=Response,
    responses=not_json("the access log as CSV", "text/csv") | SIGNED_IN,
)
def access_log_csv(
    request: Request,
    f: audit.LogFilter = Depends(log_filter),
    principal: Principal = Depends(gate("audit.read")),
) -> StreamingResponse:
    """The same log as CSV (newest first, at most audit.CSV_MAX_ROWS rows); recorded."""
    lines = audit.access_log_csv(request.app.state.ctx, principal, f, source_ip=_ip(request))
    return csv_download(lines, "access-log.csv")


class GrantBody(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=5, max_length=500)
    expires_at: dt.datetime
    clip_id: str | None = None
    case_id: str | None = None


@router.post("/grants", status_code=201, response_model=out.GrantOut, responses=ONE_OBJECT)
def create_grant(
    body: GrantBody, request: Request, principal: Principal = Depends(gate("grants.manage"))
) -> dict:
    expires = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=dt.UTC)
    return audit.grant_footage(
        request.app.state.ctx,
        principal,
        username=body.username,
        reason=body.reason,
        expires_at=expires,
        clip_id=body.clip_id,
        case_id=body.case_id,
    )


@router.delete("/grants/{grant_id}", status_code=204, responses=CHANGE)
def revoke_grant(
    grant_id: str, request: Request, principal: Principal = Depends(gate("grants.manage"))
) -> None:
    audit.revoke_grant(request.app.state.ctx, principal, grant_id)


@router.get("/me", response_model=out.MeOut, responses=SIGNED_IN)
def me(principal: Principal = Depends(gate("session.read"))) -> dict:
    return {
        "username": principal.username,
        "role": principal.role.value,
        "officer_id": principal.officer_id,
        "may": sorted(a for a, roles in ACTIONS.items() if principal.role in roles),
    }
