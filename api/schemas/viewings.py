"""Viewings: the answer to opening one (evidence/viewings.py; docs/media.md, "Viewings")."""

from __future__ import annotations

from pydantic import Field

from api.schemas import Out


class ViewingOut(Out):
    """POST /clips/{id}/viewings and /bundles/{id}/viewings: where to fetch the bytes."""

    url: str = Field(description="serves the bytes with Range until expires_at; no credentials")
    expires_at: str
    media_type: str
    size: int
    sha256: str
