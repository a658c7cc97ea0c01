"""The administrator's Organisations page: who evidence is disclosed to, and who belongs to
each (docs/disclosure.md). Each route parses the form and calls the service the JSON API
calls (api/routes/organisations.py); the service and the policy decide."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from api.gates import ui_gate
from api.ui.render import UIRoute, render, see_other
from api.ui.session import csrf_protect
from evidence.access import Principal
from evidence.accounts import organisations
from evidence.accounts import service as accounts
from evidence.accounts.models import OrganisationKind
from evidence.errors import Conflict, InvalidInput, NotFound

router = APIRouter(prefix="/ui", route_class=UIRoute, include_in_schema=False)
CSRF = Depends(csrf_protect)
PAGE = "/ui/organisations"


@router.get("/organisations")
def organisations_page(
    request: Request, principal: Principal = Depends(ui_gate("organisations.manage"))
) -> Response:
    ctx = request.app.state.ctx
    return render(
        request,
        "organisations.html",
        organisations=organisations.list_organisations(ctx, principal),
        users=accounts.list_users(ctx, principal),
        kinds=[k.value for k in OrganisationKind],
    )


@router.post("/organisations")
def create_organisation(
    request: Request,
    name: Annotated[str, Form(max_length=organisations.MAX_NAME)] = "",
    kind: Annotated[str, Form(max_length=32)] = "",
    principal: Principal = Depends(ui_gate("organisations.manage")),
    _: None = CSRF,
) -> Response:
    try:
        org = organisations.create_organisation(request.app.state.ctx, principal, name, kind)
    except (InvalidInput, Conflict) as exc:
        return see_other(request, PAGE, error=str(exc))
    return see_other(request, PAGE, ok=f"Organisation {org['name']} added.")


@router.post("/organisations/members")
def set_member(
    request: Request,
    username: Annotated[str, Form(max_length=100)] = "",
    organisation_id: Annotated[str, Form(max_length=36)] = "",
    principal: Principal = Depends(ui_gate("organisations.manage")),
    _: None = CSRF,
) -> Response:
    try:
        organisations.set_member(
            request.app.state.ctx, principal, username.strip(), organisation_id.strip() or None
        )
    except (InvalidInput, NotFound) as exc:
        return see_other(request, PAGE, error=str(exc))
    return see_other(request, PAGE, ok=f"{username} moved.")
