"""Organisations: who evidence is disclosed to, kept by administrators (docs/disclosure.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.gates import gate
from api.schemas import organisations as out
from api.schemas.problems import CHANGE, SIGNED_IN, problems
from evidence.access import Principal
from evidence.accounts import organisations

router = APIRouter(prefix="/api/v1", tags=["admin"])


class NewOrganisation(BaseModel):
    name: str = Field(min_length=2, max_length=organisations.MAX_NAME)
    kind: str = Field(max_length=32)


class Membership(BaseModel):
    organisation_id: str | None = Field(None, max_length=36, description="null: in none")


@router.get("/organisations", response_model=out.OrganisationListOut, responses=SIGNED_IN)
def list_organisations(
    request: Request, principal: Principal = Depends(gate("organisations.read"))
) -> dict:
    return {"items": organisations.list_organisations(request.app.state.ctx, principal)}


@router.post(
    "/organisations",
    status_code=201,
    response_model=out.OrganisationOut,
    responses=SIGNED_IN | problems(409),
)
def create_organisation(
    body: NewOrganisation,
    request: Request,
    principal: Principal = Depends(gate("organisations.manage")),
) -> dict:
    return organisations.create_organisation(request.app.state.ctx, principal, body.name, body.kind)


@router.put("/users/{username}/organisation", response_model=out.MembershipOut, responses=CHANGE)
def set_organisation(
    username: str,
    body: Membership,
    request: Request,
    principal: Principal = Depends(gate("organisations.manage")),
) -> dict:
    """Put the person in an organisation: every share with it reaches them from now on."""
    return organisations.set_member(
        request.app.state.ctx, principal, username, body.organisation_id
    )
