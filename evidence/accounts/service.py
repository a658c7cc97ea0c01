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
from evidence.accounts.models import Device, DeviceKind, Role, User
from evidence.errors import Conflict, InvalidInput
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
    from evidence.errors import NotAuthenticated

    if not key.startswith(DEVICE_KEY_PREFIX):
        raise NotAuthenticated("not a device key: send `Authorization: Device <key>`")
    with ledger.db.session() as s:
        device = s.scalar(select(Device).where(Device.key_hash == hash_device_key(key)))
    if device is None or device.disabled:
        raise NotAuthenticated("the device key was refused: check it, or ask an admin to create the device")
    return device
