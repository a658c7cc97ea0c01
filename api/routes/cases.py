"""Cases: exhibits and members (shares and bundles come with the court-bundle work)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.gates import gate
from evidence.access import Principal
from evidence.cases import service

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])


class NewCase(BaseModel):
    title: str = Field(min_length=1, max_length=255)
    reference: str = Field(min_length=1, max_length=100)


class Items(BaseModel):
    clip_ids: list[str] = Field(min_length=1, max_length=500)


class Member(BaseModel):
    username: str = Field(min_length=1, max_length=100)


@router.post("", status_code=201)
def create_case(body: NewCase, request: Request,
                principal: Principal = Depends(gate("cases.create"))) -> dict:
    return service.create_case(request.app.state.ctx, principal, body.title, body.reference)


@router.get("")
def list_cases(request: Request, principal: Principal = Depends(gate("cases.read"))) -> dict:
    return {"items": service.list_cases(request.app.state.ctx, principal)}


@router.get("/{case_id}")
def case_detail(case_id: str, request: Request,
                principal: Principal = Depends(gate("cases.read"))) -> dict:
    return service.case_detail(request.app.state.ctx, principal, case_id)


@router.post("/{case_id}/items")
def add_items(case_id: str, body: Items, request: Request,
              principal: Principal = Depends(gate("cases.manage"))) -> dict:
    return service.add_items(request.app.state.ctx, principal, case_id, body.clip_ids)


@router.post("/{case_id}/members", status_code=204)
def add_member(case_id: str, body: Member, request: Request,
               principal: Principal = Depends(gate("cases.manage"))) -> None:
    service.add_member(request.app.state.ctx, principal, case_id, body.username)
