from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from evidence.db import Base
from evidence.types import UTCDateTime, new_id


class Role(enum.StrEnum):
    officer = "officer"
    evidence_officer = "evidence_officer"
    cps = "cps"
    auditor = "auditor"
    admin = "admin"
    # A partner agency's or defence firm's person: sees only what was disclosed to them or
    # their organisation, and only after signing in with a TOTP code (docs/disclosure.md).
    external = "external"


class OrganisationKind(enum.StrEnum):
    cps = "cps"
    police_force = "police_force"
    local_authority = "local_authority"
    other_agency = "other_agency"
    defence_firm = "defence_firm"


class Organisation(Base):
    """Someone evidence is disclosed to: the CPS, another force, a council, a defence firm."""

    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    # Who made it: a user id (not a foreign key: users point at organisations) or None for
    # the server's operator; the ledger's `organisation.created` entry names them too.
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    # A collar number or similar: links an officer to the clips their camera records, so
    # it is unique (two accounts with one number would both see that officer's clips).
    officer_id: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    # The person's name as documents name them ("PC Jane Brown"): a continuity statement
    # names people, not login ids. Optional: an account made without one reads as its login.
    full_name: Mapped[str | None] = mapped_column(String(100))
    # Where notifications go (evidence/notifications.py); optional: no address, no e-mail.
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # False while a second administrator has yet to approve the account (its role opens
    # footage or administration): it then opens nothing (evidence/accounts/approvals.py).
    approved: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The last TOTP time step accepted: in the database, so a code used on one API process
    # is refused on every other one.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # A secret being enrolled: it becomes totp_secret once a code from it is confirmed.
    totp_pending: Mapped[str | None] = mapped_column(String(64))
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The organisation the person works for; a share with it reaches its members.
    organisation_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True)


class AccountRequest(Base):
    """A change that opens footage or administration, waiting for a second person:
    kind "account" (a new or reset account with such a role), "role" (a role change to one)
    or "grant" (an auditor's footage grant)."""

    __tablename__ = "account_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str | None] = mapped_column(String(32))
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("access_grants.id"))
    requested_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending, approved, refused
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Enrolment(Base):
    """A one-time link with which a person sets their own password: only its SHA-256 is
    kept (the token is 256 random bits, so a fast hash is enough)."""

    __tablename__ = "enrolments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))  # "new" or "reset"
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class RecoveryCode(Base):
    """A one-time code that stands in for a TOTP code when the authenticator is lost; only
    its SHA-256 is kept (80 random bits each)."""

    __tablename__ = "recovery_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class RevokedToken(Base):
    """A signed-out token: refused until it would have expired anyway (then it can go)."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class DeviceKind(enum.StrEnum):
    dock = "dock"
    camera = "camera"


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default=DeviceKind.dock.value)
    # SHA-256 of the device key: the key is 256 random bits, so a fast hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
