"""Administration: users and devices, the two-person rule's approvals, and the auditors'
alerts about them. Admins manage accounts and see no footage; they never set anyone's
password (a new or reset account gets an enrolment link, docs/accounts.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.gates import gate
from api.schemas import accounts as out
from api.schemas.audit import AlertsOut
from api.schemas.problems import CHANGE, ONE_OBJECT, SIGNED_IN, problems
from evidence.access import Principal
from evidence.accounts import alerts, approvals, service
from evidence.types import MAX_BIGINT

router = APIRouter(prefix="/api/v1", tags=["admin"])


class NewUser(BaseModel):
    # A password is refused outright rather than ignored: the caller must learn that the
    # person chooses it themselves, through the enrolment link in the answer.
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=100)
    role: str = Field(max_length=32)
    officer_id: str | None = Field(None, max_length=64)
    full_name: str | None = Field(None, max_length=100, description="as documents name the person")


class UserChange(BaseModel):
    disabled: bool | None = None
    role: str | None = Field(None, max_length=32)


class EmailBody(BaseModel):
    email: str | None = Field(None, max_length=254, description="none or empty: no e-mail")


class ResetBody(BaseModel):
    clear_totp: bool = False


def _new_account(new: service.NewAccount) -> dict:
    return {
        **new.user,
        "enrolment_url": new.enrolment_url,
        "enrolment_expires_at": new.expires_at,
        "pending_approval": new.pending,
    }


class NewDevice(BaseModel):
    name: str = Field(min_length=2, max_length=100)
    kind: str = "dock"


class DeviceChange(BaseModel):
    disabled: bool


@router.get("/users", response_model=out.UserListOut, responses=SIGNED_IN)
def list_users(request: Request, principal: Principal = Depends(gate("users.manage"))) -> dict:
    return {"items": service.list_users(request.app.state.ctx, principal)}


@router.post(
    "/users", status_code=201, response_model=out.NewAccountOut, responses=SIGNED_IN | problems(409)
)
def create_user(
    body: NewUser, request: Request, principal: Principal = Depends(gate("users.manage"))
) -> dict:
    """The account and its one-time enrolment link (`enrolment_url`, shown once): hand it
    to the person, who chooses their own password. `pending_approval`: the role opens
    footage or administers, so it opens nothing until a second admin approves."""
    ctx = request.app.state.ctx
    return _new_account(
        service.invite_user(
            ctx,
            principal,
            body.username,
            body.role,
            officer_id=body.officer_id,
            full_name=body.full_name,
        )
    )


@router.patch("/users/{username}", response_model=out.UserOut, responses=CHANGE)
def change_user(
    username: str,
    body: UserChange,
    request: Request,
    principal: Principal = Depends(gate("users.manage")),
) -> dict:
    return service.set_user_state(
        request.app.state.ctx, principal, username, disabled=body.disabled, role=body.role
    )


@router.put("/users/{username}/email", response_model=out.UserOut, responses=CHANGE)
def set_email(
    username: str,
    body: EmailBody,
    request: Request,
    principal: Principal = Depends(gate("users.manage")),
) -> dict:
    """Where the person's notifications go (a case shared with them, a bundle ready)."""
    return service.set_email(request.app.state.ctx, principal, username, body.email)


@router.post("/users/{username}/unlock", response_model=out.UserOut, responses=ONE_OBJECT)
def unlock_user(
    username: str, request: Request, principal: Principal = Depends(gate("users.manage"))
) -> dict:
    return service.unlock_user(request.app.state.ctx, principal, username)


@router.post("/users/{username}/reset", response_model=out.NewAccountOut, responses=CHANGE)
def reset_user(
    username: str,
    request: Request,
    body: ResetBody | None = None,
    principal: Principal = Depends(gate("users.manage")),
) -> dict:
    """The old password stops working; the answer's enrolment link lets the person choose
    a new one. `clear_totp` also removes their authenticator (a lost phone)."""
    ctx = request.app.state.ctx
    return _new_account(
        service.force_reset(
            ctx,
            principal,
            username,
            clear_totp=body.clear_totp if body else False,
        )
    )


@router.get(
    "/approvals",
    response_model=out.ApprovalListOut,
    response_model_exclude_unset=True,  # a grant's four fields: for grants only
    responses=SIGNED_IN,
)
def list_approvals(
    request: Request, principal: Principal = Depends(gate("accounts.approve"))
) -> dict:
    """Changes waiting for a second administrator (`mine`: asked for by the caller, who
    cannot decide them)."""
    return {"items": approvals.list_pending(request.app.state.ctx, principal)}


@router.post("/approvals/{request_id}/approve", response_model=out.DecisionOut, responses=CHANGE)
def approve(
    request_id: str, request: Request, principal: Principal = Depends(gate("accounts.approve"))
) -> dict:
    return approvals.decide(request.app.state.ctx, principal, request_id, approve=True)


@router.post("/approvals/{request_id}/refuse", response_model=out.DecisionOut, responses=CHANGE)
def refuse(
    request_id: str, request: Request, principal: Principal = Depends(gate("accounts.approve"))
) -> dict:
    return approvals.decide(request.app.state.ctx, principal, request_id, approve=False)


@router.get("/audit/alerts", response_model=AlertsOut, responses=SIGNED_IN)
def list_alerts(
    request: Request,
    limit: int = Query(100, ge=1, le=500),
    before: int | None = Query(None, ge=0, le=MAX_BIGINT),
    principal: Principal = Depends(gate("audit.read")),
) -> dict:
    """Every change to accounts, roles, approvals and grants, newest first (ledger entries)."""
    return {
        "items": alerts.list_alerts(request.app.state.ctx, principal, limit=limit, before=before)
    }


@router.get("/devices", response_model=out.DeviceListOut, responses=SIGNED_IN)
def list_devices(request: Request, principal: Principal = Depends(gate("devices.manage"))) -> dict:
    return {"items": service.list_devices(request.app.state.ctx, principal)}


@router.post(
    "/devices",
    status_code=201,
    response_model=out.NewDeviceOut,
    responses=SIGNED_IN | problems(409),
)
def create_device(
    body: NewDevice, request: Request, principal: Principal = Depends(gate("devices.manage"))
) -> dict:
    """The key is in this answer once; only its hash is kept."""
    new = service.create_device(request.app.state.ctx, principal, body.name, kind=body.kind)
    return {"id": new.device.id, "name": new.device.name, "kind": new.device.kind, "key": new.key}


@router.patch("/devices/{name}", status_code=204, responses=ONE_OBJECT)
def change_device(
    name: str,
    body: DeviceChange,
    request: Request,
    principal: Principal = Depends(gate("devices.manage")),
) -> None:
    service.set_device_disabled(request.app.state.ctx, principal, name, body.disabled)
