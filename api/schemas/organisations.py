"""Organisations evidence is disclosed to (evidence/accounts/organisations.py)."""

from __future__ import annotations

from api.schemas import Out


class OrganisationOut(Out):
    id: str
    name: str
    kind: str  # cps, police_force, local_authority, other_agency, defence_firm
    members: int
    created_at: str


class OrganisationListOut(Out):
    items: list[OrganisationOut]


class MembershipOut(Out):
    username: str
    organisation_id: str | None
