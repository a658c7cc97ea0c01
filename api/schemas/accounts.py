"""Accounts and devices, administered (evidence/accounts/service.py, approvals.py)."""

from __future__ import annotations

from api.schemas import Out


class UserOut(Out):
    id: str
    username: str
    full_name: str | None
    email: str | None  # where notifications go (docs/notifications.md)
    role: str
    officer_id: str | None
    disabled: bool
    totp: bool  # two-factor sign-in is on
    locked_until: str | None
    locked: bool  # locked out now, after failed sign-ins
    approved: bool
    pending_role: str | None  # a role change waiting for a second administrator
    enrolled: bool  # has chosen a password
    organisation_id: str | None  # the organisation they belong to (docs/disclosure.md)


class UserListOut(Out):
    items: list[UserOut]


class NewAccountOut(UserOut):
    """A new or reset account: the one-time enrolment link is in this answer only."""

    enrolment_url: str
    enrolment_expires_at: str
    pending_approval: bool


class ApprovalOut(Out):
    """A change waiting for a second administrator; a footage grant's request also names
    what it grants."""

    id: str
    kind: str  # account, role or grant
    username: str
    officer_id: str | None
    role: str | None
    current_role: str
    requested_by: str | None
    requested_at: str
    mine: bool  # asked for by the caller, who cannot decide it
    about_me: bool
    clip_id: str | None = None  # the four fields of a grant's request, for grants only
    case_id: str | None = None
    reason: str | None = None
    expires_at: str | None = None


class ApprovalListOut(Out):
    items: list[ApprovalOut]


class DecisionOut(Out):
    id: str
    kind: str
    state: str  # approved or refused
    username: str


class DeviceOut(Out):
    id: str
    name: str
    kind: str
    disabled: bool
    created_at: str


class DeviceListOut(Out):
    items: list[DeviceOut]


class NewDeviceOut(Out):
    """A new device and its key, which is in this answer only (the store keeps its hash)."""

    id: str
    name: str
    kind: str
    key: str
