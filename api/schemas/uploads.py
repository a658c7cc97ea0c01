"""Ingest, for docking devices (evidence/ingest/service.py; docs/ingest.md)."""

from __future__ import annotations

from api.schemas import Out


class PartOut(Out):
    number: int
    offset: int
    size: int
    url: str  # presigned: PUT the part's bytes there
    uploaded: bool


class UploadDeclaredOut(Out):
    """201: send the parts, then complete."""

    id: str
    state: str
    part_size: int
    parts: list[PartOut]


class UploadExistsOut(Out):
    """200: the store has these bytes already; nothing to send (and no clip id: knowing a
    hash is not a right to a clip)."""

    id: str
    state: str  # exists


class UploadCompletedOut(Out):
    id: str
    state: str
    clip_id: str | None  # once the clip is stored, for the device that docked it


class UploadStatusOut(Out):
    id: str
    state: str
    verified: bool
    clip_id: str | None
    error: str | None
