"""Cases: exhibits and members (shares and bundles come with the court-bundle work)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.gates import gate
from api.schemas import cases as out
from api.schemas.problems import CHANGE, ONE_OBJECT, SIGNED_IN
from evidence.access import Principal
from evidence.cases import service, shares

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])


class NewCase(BaseModel):
    title: str = Field(min_length=1, max_length=255)
    reference: str = Field(min_length=1, max_length=100)


class Items(BaseModel):
    clip_ids: list[str] = Field(min_length=1, max_length=500)


class Member(BaseModel):
    username: str = Field(min_length=1, max_length=100)


@router.post("", status_code=201, response_model=out.CaseOut, responses=SIGNED_IN)
def create_case(
    body: NewCase, request: Request, principal: Principal = Depends(gate("cases.create"))
) -> dict:
    return service.create_case(request.app.state.ctx, principal, body.title, body.reference)


@router.get("", response_model=out.CaseListOut, responses=SIGNED_IN)
def list_cases(request: Request, principal: Principal = Depends(gate("cases.read"))) -> dict:
    return {"items": service.list_cases(request.app.state.ctx, principal)}


@router.get("/{case_id}", response_model=out.CaseDetailOut, responses=ONE_OBJECT)
def case_detail(
    case_id: str, request: Request, principal: Principal = Depends(gate("cases.read"))
) -> dict:
    return service.case_detail(request.app.state.ctx, principal, case_id)


@router.post("/{case_id}/items", response_model=out.ItemsAddedOut, responses=ONE_OBJECT)
def add_items(
    case_id: str,
    body: Items,
    request: Request,
    principal: Principal = Depends(gate("cases.manage")),
) -> dict:
    return service.add_items(request.app.state.ctx, principal, case_id, body.clip_ids)


class ExhibitRef(BaseModel):
    exhibit_ref: str = Field(min_length=1, max_length=100)


@router.patch("/{case_id}/items/{clip_id}", response_model=out.ExhibitRefOut, responses=CHANGE)
def set_exhibit_ref(
    case_id: str,
    clip_id: str,
    body: ExhibitRef,
    request: Request,
    principal: Principal = Depends(gate("cases.manage")),
) -> dict:
    """Change an exhibit's reference (1-32 characters, unique in the case; a ledger entry)."""
    return service.set_exhibit_ref(
        request.app.state.ctx, principal, case_id, clip_id, body.exhibit_ref
    )


@router.post("/{case_id}/members", status_code=204, responses=CHANGE)
def add_member(
    case_id: str,
    body: Member,
    request: Request,
    principal: Principal = Depends(gate("cases.manage")),
) -> None:
    service.add_member(request.app.state.ctx, principal, case_id, body.username)


class Reason(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


@router.post("/{case_id}/close", response_model=out.CaseStateOut, responses=CHANGE)
def close_case(
    case_id: str,
    body: Reason,
    request: Request,
    principal: Principal = Depends(gate("cases.manage")),
) -> dict:
    """Conclude the case: its exhibits are reviewed under their categories' rules, with notice
    (never disposed of at once); `rescheduled` lists the clips whose schedule changed."""
    return service.close_case(request.app.state.ctx, principal, case_id, body.reason)


@router.post("/{case_id}/reopen", response_model=out.CaseStateOut, responses=CHANGE)
def reopen_case(
    case_id: str,
    body: Reason,
    request: Request,
    principal: Principal = Depends(gate("cases.manage")),
) -> dict:
    """Work on the case again: its exhibits are kept again and any review stops."""
    return service.reopen_case(request.app.state.ctx, principal, case_id, body.reason)


class NewShare(BaseModel):
    """To one person (`username`) or one organisation (`organisation_id`); the whole case,
    or the exhibits in `clip_ids`; `redacted_only`: exhibits given as their redacted copy."""

    username: str | None = Field(None, min_length=1, max_length=100)
    organisation_id: str | None = Field(None, min_length=1, max_length=36)
    expires_at: dt.datetime
    purpose: str = Field(min_length=3, max_length=shares.MAX_TEXT)
    legal_basis: str = Field(min_length=3, max_length=shares.MAX_TEXT)
    clip_ids: list[str] | None = Field(None, max_length=shares.MAX_EXHIBITS)
    redacted_only: list[str] = Field(default_factory=list, max_length=shares.MAX_EXHIBITS)
    watermark: bool = False  # also a copy of each exhibit naming the recipient and the share


@router.post(
    "/{case_id}/shares", status_code=201, response_model=out.ShareOut, responses=ONE_OBJECT
)
def share_case(
    case_id: str,
    body: NewShare,
    request: Request,
    principal: Principal = Depends(gate("shares.manage")),
) -> dict:
    return shares.share_case(
        request.app.state.ctx,
        principal,
        case_id,
        expires_at=body.expires_at,
        purpose=body.purpose,
        legal_basis=body.legal_basis,
        username=body.username,
        organisation_id=body.organisation_id,
        clip_ids=body.clip_ids,
        redacted_only=body.redacted_only,
        watermark=body.watermark,
    )


@router.get("/{case_id}/shares", response_model=out.ShareListOut, responses=ONE_OBJECT)
def list_shares(
    case_id: str, request: Request, principal: Principal = Depends(gate("shares.manage"))
) -> dict:
    return {"items": shares.shares_of(request.app.state.ctx, principal, case_id)}


shares_router = APIRouter(prefix="/api/v1/shares", tags=["cases"])


@shares_router.delete("/{share_id}", status_code=204, responses=CHANGE)
def revoke_share(
    share_id: str, request: Request, principal: Principal = Depends(gate("shares.manage"))
) -> None:
    shares.revoke_share(request.app.state.ctx, principal, share_id)
