"""The camera register (evidence/cameras/service.py)."""

from __future__ import annotations

from api.schemas import Out


class AssignmentOut(Out):
    id: str
    camera_serial: str
    officer_id: str
    kind: str  # personal or pool
    starts_at: str | None
    ends_at: str | None  # exclusive; null: open
    created_by: str
    created_at: str | None
    ended_at: str | None
    ended_by: str | None
    describe: str  # the assignment in words, as the clip page shows it


class CameraOut(Out):
    serial: str
    make: str | None
    model: str | None
    firmware: str | None
    state: str  # in_service, lost or retired
    registered_at: str | None
    registered_by: str
    first_seen_at: str | None
    holder: AssignmentOut | None  # who holds it now


class CameraListOut(Out):
    items: list[CameraOut]


class CameraDetailOut(CameraOut):
    assignments: list[AssignmentOut]
    clips_total: int
    clips_last_30_days: int
