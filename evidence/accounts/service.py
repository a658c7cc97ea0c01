"""Creating users and devices. Each change is a ledger entry, committed with the row."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evidence import clock
from evidence.access import Principal, require
from evidence.accounts.models import AccountRequest, Device, DeviceKind, Role, User
from evidence.context import Context
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


def _check_role(role: str) -> str:
    try:
        return Role(role).value
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {role!r}; choose one of: {roles}") from None


_OFFICER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")


def _check_officer_id(officer_id: str | None) -> str | None:
    officer_id = (officer_id or "").strip() or None  # "" names nobody
    if officer_id is not None and not _OFFICER_ID.match(officer_id):
        raise InvalidInput(
            f"officer id {officer_id!r} is not allowed: use up to 64 letters, "
            "digits, '.', '_', '/' or '-'"
        )
    return officer_id


MAX_FULL_NAME = 100


def check_full_name(full_name: str | None) -> str | None:
    """A person's name as printed in documents: 1-100 printable characters, or none."""
    name = " ".join((full_name or "").split())  # no newlines or runs of spaces in a document
    if not name:
        return None
    if len(name) > MAX_FULL_NAME or not name.isprintable():
        raise InvalidInput(f"a full name is 1-{MAX_FULL_NAME} printable characters")
    return name


MAX_EMAIL = 254  # RFC 5321's limit on an address
_EMAIL = re.compile(
    r"^[^@\s\"(),:;<>\[\\\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
)


def check_email(email: str | None) -> str | None:
    """Where a person's notifications go: a plain address (no display name, no spaces or
    line breaks, so it cannot smuggle a header), or none."""
    address = (email or "").strip()
    if not address:
        return None
    if len(address) > MAX_EMAIL or not _EMAIL.match(address):
        raise InvalidInput(f"{address[:MAX_EMAIL]!r} is not an e-mail address (name@example.org)")
    return address


def _refuse_taken(s: Session, username: str, officer_id: str | None) -> None:
    if s.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"user {username!r} already exists")
    if officer_id is not None:
        holder = s.scalar(
            select(User.username).where(func.lower(User.officer_id) == officer_id.lower())
        )
        if holder is not None:
            # Two accounts with one officer id would both see that officer's clips.
            raise Conflict(f"officer id {officer_id!r} already belongs to {holder}")


def _add_user(
    s: Session,
    ledger: Ledger,
    user: User,
    *,
    actor: str,
    subject_extra: str | None,
    **fields: object,
) -> User:
    _refuse_taken(s, user.username, user.officer_id)
    s.add(user)
    try:
        s.flush()
    except IntegrityError:  # another request took the name or officer id meanwhile
        raise Conflict(
            f"user {user.username!r} or officer id {user.officer_id!r} was taken "
            "at the same moment: try again"
        ) from None
    who = [user.id, subject_extra] if subject_extra else user.id
    ledger.append_in(
        s,
        "user.created",
        actor=actor,
        subject={"user": who},
        username=user.username,
        role=user.role,
        officer_id=user.officer_id,
        **({"full_name": user.full_name} if user.full_name else {}),
        **fields,
    )
    return user


def create_user(
    ctx: Context,
    username: str,
    role: str,
    password: str,
    *,
    officer_id: str | None = None,
    actor: str = "system:cli",
    full_name: str | None = None,
) -> User:
    """An account with a password chosen here, in force at once. Only for the server's own
    operator: `evidence admin create-user` bootstrapping the first admin of an empty store,
    and tests. The API and UI never set a password for someone else: they call
    `invite_user`, which issues an enrolment link and applies the two-person rule."""
    _check_name(username, "user")
    role = _check_role(role)
    officer_id = _check_officer_id(officer_id)
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password too short: use at least {MIN_PASSWORD} characters")
    with ctx.db.write_session() as s:
        user = User(
            username=username,
            role=role,
            officer_id=officer_id,
            full_name=check_full_name(full_name),
            password_hash=hash_password(password),
            created_at=clock.now(),
            disabled=False,
            failed_logins=0,
            approved=True,
        )
        return _add_user(s, ctx.ledger, user, actor=actor, subject_extra=None)


@dataclass(frozen=True)
class NewAccount:
    user: dict[str, object]
    enrolment_url: str  # shown once: the person opens it to choose their password
    expires_at: str
    pending: bool  # True until a second administrator approves it


def invite_user(
    ctx: Context,
    by: Principal | None,
    username: str,
    role: str,
    *,
    officer_id: str | None = None,
    full_name: str | None = None,
) -> NewAccount:
    """Create an account without a password and issue its enrolment link. Made by an admin
    (`by`), an account whose role opens footage or administers waits for a second admin
    (evidence/accounts/approvals.py); made by the server's operator (`by` None, the CLI) it
    is in force at once. The operator has the server itself, so a second person in the
    application would add nothing there; the ledger and the auditors' alerts record it."""
    from evidence.accounts import approvals, enrolment

    if by is not None:
        require(by, "users.manage")
    _check_name(username, "user")
    role = _check_role(role)
    officer_id = _check_officer_id(officer_id)
    pending = by is not None and approvals.needs_approval(role)
    actor = by.actor if by else "system:cli"
    with ctx.db.write_session() as s:
        user = User(
            username=username,
            role=role,
            officer_id=officer_id,
            full_name=check_full_name(full_name),
            password_hash=enrolment.UNSET_PASSWORD,
            created_at=clock.now(),
            disabled=False,
            failed_logins=0,
            approved=not pending,
        )
        _add_user(
            s,
            ctx.ledger,
            user,
            actor=actor,
            subject_extra=by.user_id if by else None,
            pending_approval=pending,
        )
        if pending:
            assert by is not None
            approvals.request_in(s, ctx.ledger, kind="account", user=user, by=by, role=role)
        link = enrolment.issue_in(
            s,
            ctx.ledger,
            ctx.settings,
            user,
            purpose="new",
            actor=actor,
            created_by=by.user_id if by else None,
        )
        return NewAccount(
            _user_dict(user, pending_role=None), link.url, clock.rfc3339(link.expires_at), pending
        )


def bootstrap_allowed(ctx: Context) -> bool:
    """True on an empty store (no account at all): the one moment the operator may set a
    password directly, for the first administrator."""
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(User)) == 0


@dataclass(frozen=True)
class NewDevice:
    device: Device
    key: str  # shown once; only its hash is stored


def create_device(
    ctx: Context, by: Principal | None, name: str, *, kind: str = DeviceKind.dock.value
) -> NewDevice:
    """A device and its key. Made by an admin (`by`) through the API or UI, or by the
    server's operator (`by` None, the CLI)."""
    if by is not None:
        require(by, "devices.manage")
    actor = by.actor if by else "system:cli"
    _check_name(name, "device")
    try:
        kind = DeviceKind(kind).value
    except ValueError:
        raise InvalidInput(f"unknown device kind {kind!r}; choose dock or camera") from None
    key = DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)
    with ctx.db.write_session() as s:
        if s.scalar(select(Device.id).where(Device.name == name)):
            raise Conflict(f"device {name!r} already exists")
        device = Device(
            name=name,
            kind=kind,
            key_hash=hash_device_key(key),
            created_at=clock.now(),
            disabled=False,
        )
        s.add(device)
        s.flush()
        ctx.ledger.append_in(
            s, "device.created", actor=actor, subject={"device": device.id}, name=name, kind=kind
        )
    return NewDevice(device, key)


def authenticate_device(ctx: Context, key: str) -> Device:
    """The enabled device holding `key`, or NotAuthenticated."""
    if not key.startswith(DEVICE_KEY_PREFIX):
        raise NotAuthenticated("not a device key: send `Authorization: Device <key>`")
    with ctx.db.session() as s:
        device = s.scalar(select(Device).where(Device.key_hash == hash_device_key(key)))
    if device is None or device.disabled:
        raise NotAuthenticated(
            "the device key was refused: check it, or ask an admin to create the device"
        )
    return device


# -- administration through the API (the CLI above is the bootstrap path) -------------------


def _admin_actor(principal: Principal) -> str:
    require(principal, "users.manage")
    return principal.actor


def list_users(ctx: Context, principal: Principal) -> list[dict[str, object]]:
    _admin_actor(principal)
    from evidence.accounts.approvals import PENDING

    with ctx.db.session() as s:
        users = s.scalars(select(User).order_by(User.username)).all()
        pending = dict(
            s.execute(
                select(AccountRequest.user_id, AccountRequest.role).where(
                    AccountRequest.kind == "role", AccountRequest.state == PENDING
                )
            ).all()
        )
    return [_user_dict(u, pending_role=pending.get(u.id)) for u in users]


def _user_dict(u: User, *, pending_role: str | None) -> dict[str, object]:
    from evidence.accounts.enrolment import UNSET_PASSWORD

    locked = u.locked_until is not None and u.locked_until > clock.now()
    return {
        "id": u.id,
        "username": u.username,
        "full_name": u.full_name,
        "email": u.email,
        "role": u.role,
        "officer_id": u.officer_id,
        "disabled": u.disabled,
        "totp": u.totp_secret is not None,
        "locked_until": u.locked_until.isoformat() if u.locked_until else None,
        "locked": locked,
        "approved": bool(u.approved),
        "pending_role": pending_role,
        "enrolled": u.password_hash != UNSET_PASSWORD,
        "organisation_id": u.organisation_id,
    }


def set_user_state(
    ctx: Context,
    principal: Principal,
    username: str,
    *,
    disabled: bool | None = None,
    role: str | None = None,
) -> dict[str, object]:
    """Disable or re-enable a user, or change their role; each change is a ledger entry.
    A role that opens footage or administers is only asked for here: it takes effect when a
    second administrator approves (`pending_role` in the answer until then)."""
    from evidence.accounts import approvals

    actor = _admin_actor(principal)
    if role is not None:
        role = _check_role(role)
    with ctx.db.write_session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username!r}")
        if user.id == principal.user_id and (disabled or (role and role != user.role)):
            raise Conflict("you cannot disable yourself or change your own role")
        changes: dict[str, object] = {}
        if disabled is not None and disabled != user.disabled:
            user.disabled = disabled
            changes["disabled"] = disabled
        if role is not None and role != user.role and approvals.needs_approval(role):
            if role == Role.officer.value and not user.officer_id:
                raise InvalidInput(
                    f"{username} has no officer id, which an officer needs: "
                    "create an officer account with one"
                )
            approvals.request_in(s, ctx.ledger, kind="role", user=user, by=principal, role=role)
        elif role is not None and role != user.role:
            changes["role"], changes["previous_role"] = role, user.role
            user.role = role
        if changes:
            ctx.ledger.append_in(
                s,
                "user.updated",
                actor=actor,
                subject={"user": [user.id, principal.user_id]},
                username=username,
                **changes,
            )
        return _user_dict(user, pending_role=approvals.pending_role(s, user.id))


def set_email(
    ctx: Context, by: Principal | None, username: str, email: str | None
) -> dict[str, object]:
    """Set or clear (None, "") where a user's notifications go. By an admin (`by`), or by the
    server's operator (`by` None, the CLI). The ledger records that the address changed,
    never the address itself."""
    from evidence.accounts import approvals

    actor = _admin_actor(by) if by is not None else "system:cli"
    address = check_email(email)
    with ctx.db.write_session() as s:
        user = _user_for_update(s, username)
        if user.email != address:
            user.email = address
            ctx.ledger.append_in(
                s,
                "user.updated",
                actor=actor,
                subject={"user": [user.id, by.user_id] if by else user.id},
                username=username,
                email_set=address is not None,
            )
        return _user_dict(user, pending_role=approvals.pending_role(s, user.id))


def unlock_user(ctx: Context, principal: Principal, username: str) -> dict[str, object]:
    """End a lock-out (after failed sign-ins) before it runs out."""
    actor = _admin_actor(principal)
    with ctx.db.write_session() as s:
        user = _user_for_update(s, username)
        user.failed_logins, user.locked_until = 0, None
        ctx.ledger.append_in(
            s,
            "user.unlocked",
            actor=actor,
            subject={"user": [user.id, principal.user_id]},
            username=username,
        )
        return _user_dict(user, pending_role=None)


def _user_for_update(s: Session, username: str) -> User:
    user = s.scalar(select(User).where(User.username == username).with_for_update())
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def force_reset(
    ctx: Context,
    principal: Principal,
    username: str,
    *,
    clear_totp: bool = False,
) -> NewAccount:
    """Make a user choose a new password through an enrolment link: the old password stops
    working and every token issued before ends. The admin never learns a password. An
    account whose role opens footage or administers waits again for a second admin's
    approval, because whoever opens the link is not known to be its owner. With
    `clear_totp` the authenticator and recovery codes are removed as well (a lost phone)."""
    from evidence.accounts import approvals, enrolment
    from evidence.identity.oidc import OIDC_HASH_PREFIX

    actor = _admin_actor(principal)
    with ctx.db.write_session() as s:
        user = _user_for_update(s, username)
        if user.id == principal.user_id:
            raise Conflict("change your own password on your account page instead")
        if user.password_hash.startswith(OIDC_HASH_PREFIX):
            raise InvalidInput(
                f"{username} signs in through the identity provider: reset the password there"
            )
        user.password_hash = enrolment.UNSET_PASSWORD
        user.password_changed_at = clock.now()  # ends every token issued before
        user.failed_logins, user.locked_until = 0, None
        if clear_totp:
            _clear_totp(s, user)
        pending = approvals.needs_approval(user.role)
        if pending:
            user.approved = False
        ctx.ledger.append_in(
            s,
            "user.reset",
            actor=actor,
            subject={"user": [user.id, principal.user_id]},
            username=username,
            cleared_totp=clear_totp,
            pending_approval=pending,
        )
        if pending:
            approvals.request_in(
                s, ctx.ledger, kind="account", user=user, by=principal, role=user.role
            )
        link = enrolment.issue_in(
            s,
            ctx.ledger,
            ctx.settings,
            user,
            purpose="reset",
            actor=actor,
            created_by=principal.user_id,
        )
        return NewAccount(
            _user_dict(user, pending_role=None), link.url, clock.rfc3339(link.expires_at), pending
        )


def _clear_totp(s: Session, user: User) -> None:
    from sqlalchemy import delete

    from evidence.accounts.models import RecoveryCode

    user.totp_secret = user.totp_pending = None
    user.totp_last_step = None
    s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def list_devices(ctx: Context, principal: Principal) -> list[dict[str, object]]:
    require(principal, "devices.manage")
    with ctx.db.session() as s:
        devices = s.scalars(select(Device).order_by(Device.name)).all()
    return [
        {
            "id": d.id,
            "name": d.name,
            "kind": d.kind,
            "disabled": d.disabled,
            "created_at": d.created_at.isoformat(),
        }
        for d in devices
    ]


def set_device_disabled(ctx: Context, principal: Principal, name: str, disabled: bool) -> None:
    require(principal, "devices.manage")
    with ctx.db.write_session() as s:
        device = s.scalar(select(Device).where(Device.name == name))
        if device is None:
            raise NotFound(f"no device {name!r}")
        if device.disabled != disabled:
            device.disabled = disabled
            ctx.ledger.append_in(
                s,
                "device.updated",
                actor=principal.actor,
                subject={"device": device.id, "user": principal.user_id},
                name=name,
                disabled=disabled,
            )
