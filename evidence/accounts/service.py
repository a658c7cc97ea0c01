"""Creating users and devices. Each change is a ledger entry, committed with the row."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from evidence import clock
from evidence.access import Principal, require
from evidence.accounts.models import Device, DeviceKind, Role, User
from evidence.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from evidence.ledger.service import Ledger

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,99}$")
MIN_PASSWORD = 12
DEVICE_KEY_PREFIX = "evd_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_device_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise InvalidInput(
            f"{what} name {name!r} is not allowed: use 2-100 letters, digits, '.', '_', '@' or '-'"
        )


def create_user(
    ledger: Ledger, username: str, role: str, password: str, *,
    officer_id: str | None = None, actor: str = "system:cli",
) -> User:
    _check_name(username, "user")
    try:
        role = Role(role).value
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {role!r}; choose one of: {roles}") from None
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password too short: use at least {MIN_PASSWORD} characters")
    with ledger.db.write_session() as s:
        if s.scalar(select(User.id).where(User.username == username)):
            raise Conflict(f"user {username!r} already exists")
        user = User(
            username=username, role=role, officer_id=officer_id,
            password_hash=hash_password(password), created_at=clock.now(),
            disabled=False, failed_logins=0,
        )
        s.add(user)
        s.flush()
        ledger.append_in(
            s, "user.created", actor=actor, subject={"user": user.id},
            username=username, role=role, officer_id=officer_id,
        )
    return user


@dataclass(frozen=True)
class NewDevice:
    device: Device
    key: str  # shown once; only its hash is stored


def create_device(
    ledger: Ledger, name: str, *, kind: str = DeviceKind.dock.value, actor: str = "system:cli"
) -> NewDevice:
    _check_name(name, "device")
    try:
        kind = DeviceKind(kind).value
    except ValueError:
        raise InvalidInput(f"unknown device kind {kind!r}; choose dock or camera") from None
    key = DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)
    with ledger.db.write_session() as s:
        if s.scalar(select(Device.id).where(Device.name == name)):
            raise Conflict(f"device {name!r} already exists")
        device = Device(
            name=name, kind=kind, key_hash=hash_device_key(key), created_at=clock.now(),
            disabled=False,
        )
        s.add(device)
        s.flush()
        ledger.append_in(
            s, "device.created", actor=actor, subject={"device": device.id}, name=name, kind=kind
        )
    return NewDevice(device, key)


def authenticate_device(ledger: Ledger, key: str) -> Device:
    """The enabled device holding `key`, or NotAuthenticated."""
    if not key.startswith(DEVICE_KEY_PREFIX):
        raise NotAuthenticated("not a device key: send `Authorization: Device <key>`")
    with ledger.db.session() as s:
        device = s.scalar(select(Device).where(Device.key_hash == hash_device_key(key)))
    if device is None or device.disabled:
        raise NotAuthenticated("the device key was refused: check it, or ask an admin to create the device")
    return device


# -- administration through the API (the CLI above is the bootstrap path) -------------------


def _admin_actor(principal: Principal) -> str:
    require(principal, "users.manage")
    return principal.actor


def list_users(ledger: Ledger, principal: Principal) -> list[dict[str, object]]:
    _admin_actor(principal)
    with ledger.db.session() as s:
        users = s.scalars(select(User).order_by(User.username)).all()
    return [_user_dict(u) for u in users]


def _user_dict(u: User) -> dict[str, object]:
    locked = u.locked_until is not None and u.locked_until > clock.now()
    return {"id": u.id, "username": u.username, "role": u.role, "officer_id": u.officer_id,
            "disabled": u.disabled, "totp": u.totp_secret is not None,
            "locked_until": u.locked_until.isoformat() if u.locked_until else None,
            "locked": locked}


def set_user_state(
    ledger: Ledger, principal: Principal, username: str, *, disabled: bool | None = None,
    role: str | None = None,
) -> dict[str, object]:
    """Disable or re-enable a user, or change their role; each change is a ledger entry."""
    actor = _admin_actor(principal)
    if role is not None:
        try:
            role = Role(role).value
        except ValueError:
            raise InvalidInput(f"unknown role {role!r}") from None
    with ledger.db.write_session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username!r}")
        if user.id == principal.user_id and (disabled or (role and role != user.role)):
            raise Conflict("you cannot disable yourself or change your own role")
        changes: dict[str, object] = {}
        if disabled is not None and disabled != user.disabled:
            user.disabled = disabled
            changes["disabled"] = disabled
        if role is not None and role != user.role:
            changes["role"], changes["previous_role"] = role, user.role
            user.role = role
        if changes:
            ledger.append_in(s, "user.updated", actor=actor,
                             subject={"user": [user.id, principal.user_id]}, username=username,
                             **changes)
        return _user_dict(user)


def list_devices(ledger: Ledger, principal: Principal) -> list[dict[str, object]]:
    require(principal, "devices.manage")
    with ledger.db.session() as s:
        devices = s.scalars(select(Device).order_by(Device.name)).all()
    return [{"id": d.id, "name": d.name, "kind": d.kind, "disabled": d.disabled,
             "created_at": d.created_at.isoformat()} for d in devices]


def set_device_disabled(ledger: Ledger, principal: Principal, name: str, disabled: bool) -> None:
    require(principal, "devices.manage")
    with ledger.db.write_session() as s:
        device = s.scalar(select(Device).where(Device.name == name))
        if device is None:
            raise NotFound(f"no device {name!r}")
        if device.disabled != disabled:
            device.disabled = disabled
            ledger.append_in(s, "device.updated", actor=principal.actor,
                             subject={"device": device.id, "user": principal.user_id},
                             name=name, disabled=disabled)
