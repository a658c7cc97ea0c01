"""The administrator's pages: users, devices, footage grants. As everywhere in the UI, each
route parses the form, calls the service the JSON API calls (api/routes/admin.py,
api/routes/audit.py) and renders; the services and the policy decide, not these routes.

A refused form (a name or officer id taken, disabling yourself) is answered with the same
page, the service's message beside the form and what was typed kept; a change that worked
is a redirect with a message (POST-redirect-GET).
A new device's key, and a new or reset account's enrolment link, is shown once: it crosses
the redirect sealed to this session (`session.put_once`) and is gone when the page has been
shown. Administrators never type a password for anyone (docs/accounts.md).

The two-person rule's page (/ui/approvals) lists what waits for a second administrator;
the auditors' alerts page (/ui/alerts) lists every account change from the ledger.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from api.gates import ui_gate
from api.ui import session as ui_session
from api.ui.render import ROLE_LABELS, UIRoute, render, see_other
from api.ui.session import csrf_protect
from evidence import audit, clock
from evidence.access import Principal
from evidence.accounts import alerts, approvals
from evidence.accounts import service as accounts
from evidence.accounts.models import DeviceKind, Role
from evidence.context import Context
from evidence.errors import Conflict, InvalidInput, NotFound
from evidence.types import MAX_BIGINT

router = APIRouter(prefix="/ui", route_class=UIRoute, include_in_schema=False)

CSRF = Depends(csrf_protect)
NEW_KEY_PAGE = "/ui/devices/new-key"
NEW_LINK_PAGE = "/ui/users/new-link"
GRANT_DAYS = 90  # as evidence.audit.grant_footage allows


def _ctx(request: Request) -> Context:
    return request.app.state.ctx


def _users_url(anchor: str = "") -> str:
    return "/ui/users" + (f"#{anchor}" if anchor else "")


# -- users ---------------------------------------------------------------------------------------


def _users_page(
    request: Request,
    principal: Principal,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
    row_error: tuple[str, str] | None = None,
) -> Response:
    return render(
        request,
        "users.html",
        status=status,
        users=accounts.list_users(_ctx(request), principal),
        roles=[r.value for r in Role],
        needs_approval=approvals.NEEDS_APPROVAL,
        error=error,
        form=form or {},
        row_error=row_error,
    )


@router.get("/users")
def users_page(
    request: Request, principal: Principal = Depends(ui_gate("users.manage"))
) -> Response:
    return _users_page(request, principal)


@router.post("/users")
def create_user(
    request: Request,
    username: Annotated[str, Form(max_length=100)] = "",
    role: Annotated[str, Form(max_length=32)] = "",
    officer_id: Annotated[str, Form(max_length=64)] = "",
    full_name: Annotated[str, Form(max_length=100)] = "",
    principal: Principal = Depends(ui_gate("users.manage")),
    _: None = CSRF,
) -> Response:
    """No password field: the new person chooses theirs through the enrolment link shown
    next, once."""
    ctx = _ctx(request)
    username, officer_id = username.strip(), officer_id.strip()
    try:
        new = accounts.invite_user(
            ctx,
            principal,
            username,
            role,
            officer_id=officer_id or None,
            full_name=full_name or None,
        )
    except (InvalidInput, Conflict) as exc:
        form = {
            "username": username,
            "role": role,
            "officer_id": officer_id,
            "full_name": full_name,
        }
        return _users_page(request, principal, status=exc.status, error=str(exc), form=form)
    return _show_link(request, new, "new")


def _show_link(request: Request, new: accounts.NewAccount, purpose: str) -> Response:
    response = see_other(request, NEW_LINK_PAGE)
    shown = {
        "username": new.user["username"],
        "url": new.enrolment_url,
        "expires_at": new.expires_at,
        "pending": new.pending,
        "purpose": purpose,
    }
    ui_session.put_once(request, response, NEW_LINK_PAGE, json.dumps(shown).encode())
    return response


@router.get("/users/new-link")
def new_enrolment_link(
    request: Request, principal: Principal = Depends(ui_gate("users.manage"))
) -> Response:
    """The enrolment link of the account just created or reset, this once (only its hash
    is kept)."""
    sealed = ui_session.take_once(request)
    response = render(request, "enrol_link.html", new=json.loads(sealed) if sealed else None)
    ui_session.clear_once(request, response, NEW_LINK_PAGE)
    return response


@router.post("/users/{username}/unlock")
def unlock_user(
    username: str,
    request: Request,
    principal: Principal = Depends(ui_gate("users.manage")),
    _: None = CSRF,
) -> Response:
    try:
        accounts.unlock_user(_ctx(request), principal, username)
    except NotFound as exc:
        return _users_page(request, principal, status=exc.status, error=str(exc))
    return see_other(request, _users_url(f"user-{username}"), ok=f"{username} unlocked.")


@router.post("/users/{username}/reset")
def reset_user(
    username: str,
    request: Request,
    clear_totp: Annotated[str, Form(max_length=10)] = "",
    principal: Principal = Depends(ui_gate("users.manage")),
    _: None = CSRF,
) -> Response:
    ctx = _ctx(request)
    try:
        new = accounts.force_reset(ctx, principal, username, clear_totp=clear_totp == "yes")
    except (InvalidInput, Conflict) as exc:
        return _users_page(request, principal, status=exc.status, row_error=(username, str(exc)))
    return _show_link(request, new, "reset")


def _change_user(
    request: Request,
    principal: Principal,
    username: str,
    *,
    disabled: bool | None = None,
    role: str | None = None,
) -> Response:
    try:
        accounts.set_user_state(_ctx(request), principal, username, disabled=disabled, role=role)
    except (InvalidInput, Conflict) as exc:
        return _users_page(request, principal, status=exc.status, row_error=(username, str(exc)))
    if disabled is not None:
        done = "disabled: they are signed out at their next click" if disabled else "enabled"
    elif role in approvals.NEEDS_APPROVAL:
        done = (
            f"will have the role {ROLE_LABELS.get(role or '', role)} once another "
            "administrator approves it (Approvals)"
        )
    else:
        done = f"now has the role {ROLE_LABELS.get(role or '', role)}"
    return see_other(request, _users_url(f"user-{username}"), ok=f"{username} {done}.")


@router.post("/users/{username}/state")
def change_user_state(
    username: str,
    request: Request,
    action: Annotated[Literal["disable", "enable"], Form()],
    principal: Principal = Depends(ui_gate("users.manage")),
    _: None = CSRF,
) -> Response:
    return _change_user(request, principal, username, disabled=action == "disable")


@router.post("/users/{username}/role")
def change_user_role(
    username: str,
    request: Request,
    role: Annotated[str, Form(max_length=32)] = "",
    principal: Principal = Depends(ui_gate("users.manage")),
    _: None = CSRF,
) -> Response:
    return _change_user(request, principal, username, role=role)


@router.post("/users/{username}/email")
def change_user_email(
    username: str,
    request: Request,
    email: Annotated[str, Form(max_length=254)] = "",
    principal: Principal = Depends(ui_gate("users.manage")),
    _: None = CSRF,
) -> Response:
    """Where the person's notifications go; empty removes the address."""
    try:
        user = accounts.set_email(_ctx(request), principal, username, email)
    except (InvalidInput, Conflict) as exc:
        return _users_page(request, principal, status=exc.status, row_error=(username, str(exc)))
    done = f"is notified at {user['email']}" if user["email"] else "has no e-mail address"
    return see_other(request, _users_url(f"user-{username}"), ok=f"{username} {done}.")


# -- devices -------------------------------------------------------------------------------------


def _devices_page(
    request: Request,
    principal: Principal,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "devices.html",
        status=status,
        devices=accounts.list_devices(_ctx(request), principal),
        kinds=[k.value for k in DeviceKind],
        error=error,
        form=form or {},
    )


@router.get("/devices")
def devices_page(
    request: Request, principal: Principal = Depends(ui_gate("devices.manage"))
) -> Response:
    return _devices_page(request, principal)


@router.post("/devices")
def create_device(
    request: Request,
    name: Annotated[str, Form(max_length=100)] = "",
    kind: Annotated[str, Form(max_length=16)] = DeviceKind.dock.value,
    principal: Principal = Depends(ui_gate("devices.manage")),
    _: None = CSRF,
) -> Response:
    name = name.strip()
    try:
        new = accounts.create_device(_ctx(request), principal, name, kind=kind)
    except (InvalidInput, Conflict) as exc:
        return _devices_page(
            request, principal, status=exc.status, error=str(exc), form={"name": name, "kind": kind}
        )
    response = see_other(request, NEW_KEY_PAGE)
    shown = {"name": new.device.name, "kind": new.device.kind, "key": new.key}
    ui_session.put_once(request, response, NEW_KEY_PAGE, json.dumps(shown).encode())
    return response


@router.get("/devices/new-key")
def new_device_key(
    request: Request, principal: Principal = Depends(ui_gate("devices.manage"))
) -> Response:
    """The key of the device just created, this once (the store keeps only its hash)."""
    sealed = ui_session.take_once(request)
    response = render(request, "device_key.html", new=json.loads(sealed) if sealed else None)
    ui_session.clear_once(request, response, NEW_KEY_PAGE)
    return response


@router.post("/devices/{name}/state")
def change_device_state(
    name: str,
    request: Request,
    action: Annotated[Literal["disable", "enable"], Form()],
    principal: Principal = Depends(ui_gate("devices.manage")),
    _: None = CSRF,
) -> Response:
    disabled = action == "disable"
    accounts.set_device_disabled(_ctx(request), principal, name, disabled)
    done = "disabled: its key is refused from now on" if disabled else "enabled"
    return see_other(request, f"/ui/devices#device-{quote(name)}", ok=f"Device {name} {done}.")


# -- footage grants ------------------------------------------------------------------------------


def _grants_page(
    request: Request,
    principal: Principal,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    ctx = _ctx(request)
    today = clock.now().date()
    return render(
        request,
        "grants.html",
        status=status,
        grants=audit.list_grants(ctx, principal),
        auditors=audit.grantees(ctx, principal),
        error=error,
        form=form or {},
        min_date=(today + dt.timedelta(days=1)).isoformat(),
        max_date=(today + dt.timedelta(days=GRANT_DAYS)).isoformat(),
        default_date=(today + dt.timedelta(days=7)).isoformat(),
        days=GRANT_DAYS,
    )


@router.get("/grants")
def grants_page(
    request: Request, principal: Principal = Depends(ui_gate("grants.manage"))
) -> Response:
    return _grants_page(request, principal)


@router.post("/grants")
def create_grant(
    request: Request,
    username: Annotated[str, Form(max_length=100)] = "",
    target: Annotated[str, Form(max_length=10)] = "clip",
    target_id: Annotated[str, Form(max_length=100)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    ends: Annotated[str, Form(max_length=20)] = "",
    principal: Principal = Depends(ui_gate("grants.manage")),
    _: None = CSRF,
) -> Response:
    """The grant ends at 00:00 UTC on the chosen day (so the latest day allowed is exactly
    the service's 90 days from today)."""
    target_id = target_id.strip()
    form = {
        "username": username,
        "target": target,
        "target_id": target_id,
        "reason": reason,
        "ends": ends,
    }

    def again(message: str, status: int) -> Response:
        return _grants_page(request, principal, status=status, error=message, form=form)

    if target not in ("clip", "case") or not target_id:
        return again("Give the id of the clip or of the case the grant is for.", 400)
    try:
        expires = dt.datetime.combine(dt.date.fromisoformat(ends.strip()), dt.time(), dt.UTC)
    except ValueError:
        return again("Choose the day the grant ends (YYYY-MM-DD).", 400)
    try:
        grant = audit.grant_footage(
            _ctx(request),
            principal,
            username=username,
            reason=reason,
            expires_at=expires,
            clip_id=target_id if target == "clip" else None,
            case_id=target_id if target == "case" else None,
        )
    except (InvalidInput, NotFound) as exc:
        return again(str(exc), exc.status)
    return see_other(
        request,
        "/ui/grants#active",
        ok=f"Grant for {grant['username']} to play the footage of {target} "
        f"{target_id} until {expires:%Y-%m-%d} 00:00 UTC asked for: it opens "
        "nothing until another administrator approves it (Approvals).",
    )


@router.post("/grants/{grant_id}/revoke")
def revoke_grant(
    grant_id: str,
    request: Request,
    principal: Principal = Depends(ui_gate("grants.manage")),
    _: None = CSRF,
) -> Response:
    try:
        audit.revoke_grant(_ctx(request), principal, grant_id)
    except (Conflict, NotFound) as exc:
        return see_other(request, "/ui/grants#active", error=str(exc))
    return see_other(
        request,
        "/ui/grants#active",
        ok="Grant revoked: the auditor can no longer play that footage.",
    )


# -- the two-person rule -------------------------------------------------------------------------


@router.get("/approvals")
def approvals_page(
    request: Request, principal: Principal = Depends(ui_gate("accounts.approve"))
) -> Response:
    return render(request, "approvals.html", items=approvals.list_pending(_ctx(request), principal))


@router.post("/approvals/{request_id}")
def decide(
    request_id: str,
    request: Request,
    decision: Annotated[Literal["approve", "refuse"], Form()],
    principal: Principal = Depends(ui_gate("accounts.approve")),
    _: None = CSRF,
) -> Response:
    try:
        done = approvals.decide(_ctx(request), principal, request_id, approve=decision == "approve")
    except (Conflict, NotFound) as exc:
        return see_other(request, "/ui/approvals", error=str(exc))
    what = {"account": "account", "role": "role change", "grant": "footage grant"}[done["kind"]]
    return see_other(
        request, "/ui/approvals", ok=f"The {what} for {done['username']} was {done['state']}."
    )


# -- the auditors' alerts --------------------------------------------------------------------


@router.get("/alerts")
def alerts_page(
    request: Request,
    before: Annotated[int | None, Query(ge=0, le=MAX_BIGINT)] = None,
    principal: Principal = Depends(ui_gate("audit.read")),
) -> Response:
    items = alerts.list_alerts(_ctx(request), principal, limit=100, before=before)
    return render(
        request, "alerts.html", items=items, older=items[-1]["index"] if len(items) == 100 else None
    )
