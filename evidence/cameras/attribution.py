"""Which camera recorded a clip and which officer wore it, worked out at ingest.

The camera: the sidecar's serial, else the container's own tags, else the vendor's folder or
file naming, else the mounted volume's label or UUID (evidence/cameras/rules.py). The officer:
the camera register's assignment covering the recording time (or, without one, the dock
time), else the sidecar's officer id. Each answer keeps a short text saying how it was
reached, for the clip page, the statement and the ledger (docs/cameras.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evidence import clock
from evidence.cameras import rules
from evidence.cameras.models import (
    AssignmentKind,
    Camera,
    CameraAssignment,
    CameraState,
    ClipAttribution,
)
from evidence.clips.models import Clip
from evidence.ledger.service import Ledger

MAX_SERIAL = 64
FIRMWARE_TAG_KEYS = ("firmware", "firmware_version", "com.apple.quicktime.software")


@dataclass(frozen=True)
class Attribution:
    camera_serial: str | None
    camera_how: str | None
    officer_id: str | None
    officer_how: str | None

    def as_entry(self) -> dict[str, Any]:
        """The `attribution` field of `clip.ingested`: null parts when unknown."""
        return {
            "camera": (
                {"serial": self.camera_serial, "how": self.camera_how}
                if self.camera_serial
                else None
            ),
            "officer": (
                {"id": self.officer_id, "how": self.officer_how} if self.officer_id else None
            ),
        }


def _clean(value: Any, limit: int = MAX_SERIAL) -> str | None:
    from evidence.ingest.service import ledger_text  # the one bounding of client text

    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return None
    text = ledger_text(str(value), limit).strip()
    return text or None


def find_camera(
    sidecar: dict[str, Any] | None,
    tags: dict[str, str],
    source: dict[str, Any] | None,
    filename: str,
) -> rules.Found | None:
    """The camera's serial by the first source that names one, in the documented order
    (the volume UUID, which needs the register, is the caller's last resort)."""
    side = sidecar or {}
    if serial := _clean(side.get("camera_serial")):
        return rules.Found(serial.upper(), "sidecar")  # the register keys serials in upper case
    if found := rules.from_tags(tags):
        return found
    src = source or {}
    if found := rules.from_path(_clean(src.get("path"), 1024), filename):
        return found
    return rules.from_volume_label(_clean(src.get("volume_label")))


def _day(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d")


def _minute(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def describe(a: CameraAssignment) -> str:
    """An assignment as the attribution's reason reads it."""
    if a.kind == AssignmentKind.personal:
        until = f" until {_day(a.ends_at)}" if a.ends_at else ""
        return f"camera register: personal issue since {_day(a.starts_at)}{until}"
    end = _minute(a.ends_at) if a.ends_at else "open"
    return f"camera register: pool checkout {_minute(a.starts_at)}\u2013{end} UTC"


def assignment_at(s: Session, serial: str, at: dt.datetime) -> CameraAssignment | None:
    """The assignment of camera `serial` covering `at` (assignments never overlap)."""
    return s.scalar(
        select(CameraAssignment)
        .where(
            CameraAssignment.camera_serial == serial,
            CameraAssignment.starts_at <= at,
            or_(CameraAssignment.ends_at.is_(None), CameraAssignment.ends_at > at),
        )
        .limit(1)
    )


def find_officer(
    s: Session,
    serial: str | None,
    recorded_at: dt.datetime | None,
    docked_at: dt.datetime,
    sidecar_officer: str | None,
) -> tuple[str | None, str | None]:
    """(officer id, how). The register outranks the sidecar: a camera's own idea of its
    wearer is whatever was typed into it last, the register is who signed it out."""
    if serial is not None:
        if recorded_at is not None:
            held = assignment_at(s, serial, recorded_at)
            if held is not None:
                return held.officer_id, describe(held)
        else:
            # Without a recording time, the dock time is the best clue: a camera is docked
            # at the end of the shift it recorded.
            held = assignment_at(s, serial, docked_at)
            if held is not None:
                return held.officer_id, f"{describe(held)}; no recording time, dock time used"
    if sidecar_officer:
        return sidecar_officer, "sidecar"
    return None, None


def _firmware(sidecar: dict[str, Any] | None, tags: dict[str, str]) -> str | None:
    if fw := _clean((sidecar or {}).get("firmware")):
        return fw
    lowered = {k.lower(): v for k, v in tags.items()}
    for key in FIRMWARE_TAG_KEYS:
        if fw := _clean(lowered.get(key)):
            return fw
    return None


def attribute_at_ingest(
    ledger: Ledger,
    s: Session,
    clip: Clip,
    *,
    sidecar: dict[str, Any] | None,
    tags: dict[str, str],
    source: dict[str, Any] | None,
    filename: str,
    docked_at: dt.datetime,
    actor: str,
) -> Attribution:
    """Work out the clip's camera and officer, register an unseen camera, and write the
    clip's columns and its first attribution row, all in the caller's transaction (the one
    that writes `clip.ingested`, which carries `Attribution.as_entry()`)."""
    found = find_camera(sidecar, tags, source, filename)
    if found is None and (uuid := (_clean((source or {}).get("volume_uuid")) or "").upper()):
        # A volume UUID says nothing by itself: it names a camera only if the register has
        # one under it (a force may register generic cameras by their storage's UUID).
        if s.get(Camera, uuid) is not None:
            found = rules.Found(uuid, f"volume UUID {uuid}")
    serial = found.serial if found else None
    if found is not None:
        _seen(ledger, s, found, clip, _firmware(sidecar, tags), actor)
    officer, officer_how = find_officer(
        s, serial, clip.recorded_at, docked_at, _clean((sidecar or {}).get("officer_id"))
    )
    result = Attribution(serial, found.how if found else None, officer, officer_how)
    clip.camera_serial, clip.camera_how = result.camera_serial, result.camera_how
    clip.officer_id, clip.officer_how = result.officer_id, result.officer_how
    s.add(
        ClipAttribution(
            clip_id=clip.id,
            camera_serial=serial,
            officer_id=officer,
            camera_how=result.camera_how,
            officer_how=officer_how,
            actor=actor,
            reason=None,
            at=clock.now(),
        )
    )
    return result


def _seen(
    ledger: Ledger, s: Session, found: rules.Found, clip: Clip, firmware: str | None, actor: str
) -> None:
    """Keep the register current: an unseen serial registers its camera (so it can be
    assigned); a known one records the firmware it now runs."""
    camera = s.get(Camera, found.serial)
    if camera is None:
        now = clock.now()
        camera = Camera(
            serial=found.serial,
            make=found.make,
            model=found.model,
            firmware=firmware,
            state=CameraState.in_service.value,
            registered_at=now,
            registered_by=actor,
            first_seen_at=now,
        )
        try:
            with s.begin_nested():  # two workers may meet the same new camera at once
                s.add(camera)
        except IntegrityError:
            return  # the other one registered it (and wrote the entry); nothing more to do
        ledger.append_in(
            # The camera's record, not the clip's: the clip's own timeline says how it was
            # attributed in its `clip.ingested` entry.
            s,
            "camera.registered",
            actor=actor,
            subject={"camera": camera.serial},
            serial=camera.serial,
            make=camera.make,
            model=camera.model,
            firmware=firmware,
            how=f"seen in a docked clip: {found.how}",
            seen_in=clip.id,
        )
        return
    if firmware and camera.firmware != firmware:
        camera.firmware = firmware
    if found.make and not camera.make:
        camera.make, camera.model = found.make, camera.model or found.model
