"""Organisations: who evidence is disclosed to (the CPS, another force, a council, another
agency, a defence firm). Administrators keep the list and say who belongs where; a share with
an organisation reaches each of its members (evidence/cases/shares.py, docs/disclosure.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from evidence import clock
from evidence.access import Principal, require
from evidence.accounts.models import Organisation, OrganisationKind, User
from evidence.context import Context
from evidence.errors import Conflict, InvalidInput, NotFound

MAX_NAME = 100


def check_kind(kind: str) -> str:
    try:
        return OrganisationKind(kind).value
    except ValueError:
        kinds = ", ".join(k.value for k in OrganisationKind)
        raise InvalidInput(f"unknown organisation kind {kind!r}; choose one of: {kinds}") from None


def check_name(name: str) -> str:
    text = " ".join((name or "").split())
    if not 2 <= len(text) <= MAX_NAME or not text.isprintable():
        raise InvalidInput(f"an organisation's name is 2-{MAX_NAME} printable characters")
    return text


def organisation_dict(org: Organisation, members: int = 0) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "kind": org.kind,
        "members": members,
        "created_at": clock.rfc3339(org.created_at),
    }


def create_organisation(
    ctx: Context, principal: Principal | None, name: str, kind: str
) -> dict[str, Any]:
    """A new organisation; `principal` None: the server's operator (the admin CLI)."""
    if principal is not None:
        require(principal, "organisations.manage")
    name, kind = check_name(name), check_kind(kind)
    with ctx.db.write_session() as s:
        if s.scalar(select(Organisation.id).where(Organisation.name == name)):
            raise Conflict(f"an organisation named {name!r} exists already")
        org = Organisation(
            name=name,
            kind=kind,
            created_by=principal.user_id if principal else None,
            created_at=clock.now(),
        )
        s.add(org)
        s.flush()
        ctx.ledger.append_in(
            s,
            "organisation.created",
            actor=principal.actor if principal else "system:cli",
            subject={"organisation": org.id, **({"user": principal.user_id} if principal else {})},
            name=name,
            kind=kind,
        )
        return organisation_dict(org)


def list_organisations(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    require(principal, "organisations.read")
    with ctx.db.session() as s:
        orgs = s.scalars(select(Organisation).order_by(Organisation.name)).all()
        counts: dict[str, int] = {}
        for org_id in s.scalars(
            select(User.organisation_id).where(User.organisation_id.is_not(None))
        ):
            counts[org_id] = counts.get(org_id, 0) + 1
        return [organisation_dict(o, counts.get(o.id, 0)) for o in orgs]


def set_member(
    ctx: Context, principal: Principal | None, username: str, organisation_id: str | None
) -> dict[str, Any]:
    """Put a person in an organisation (None: in none). Every share with the organisation
    reaches them from now on, and ends for them when they leave it."""
    if principal is not None:
        require(principal, "organisations.manage")
    with ctx.db.write_session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username!r}")
        org = None
        if organisation_id is not None:
            org = s.get(Organisation, organisation_id)
            if org is None:
                raise NotFound(f"no organisation {organisation_id}")
        if user.organisation_id == organisation_id:
            return {"username": username, "organisation_id": organisation_id}
        previous, user.organisation_id = user.organisation_id, organisation_id
        people = [user.id, *([principal.user_id] if principal else [])]
        ctx.ledger.append_in(
            s,
            "user.organisation_set",
            actor=principal.actor if principal else "system:cli",
            subject={"user": people, "organisation": organisation_id or previous},
            member=username,
            organisation=org.name if org else None,
            previous_organisation=previous,
        )
        return {"username": username, "organisation_id": organisation_id}


def organisation_name(s: Any, organisation_id: str | None) -> str | None:
    if organisation_id is None:
        return None
    org = s.get(Organisation, organisation_id)
    return org.name if org else None
