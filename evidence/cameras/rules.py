"""Where each camera vendor leaves its serial number, as a table of data (docs/cameras.md).

A rule says where to look (a container tag, the folder path, the file name or the mounted
volume's label), a regular expression whose `serial` group is the serial, and the make and
model the match implies. Supporting another camera is one more row here, and a test.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Where(enum.StrEnum):
    tag = "tag"  # one of the container's own tags (ffprobe's format tags), by key
    path = "path"  # the file's path on the camera's storage, as the dock found it
    filename = "filename"  # the file's own name
    volume_label = "volume_label"  # the label of the volume the camera mounts as


@dataclass(frozen=True)
class Rule:
    vendor: str  # how the reason names the rule: "folder naming (Axon Body 3)"
    where: Where
    pattern: re.Pattern[str]  # must have a group named `serial`
    make: str | None = None
    model: str | None = None
    keys: tuple[str, ...] = ()  # for tag rules: the tag keys to read (lower case)

    def find(self, text: str) -> str | None:
        m = self.pattern.search(text)
        return m.group("serial").upper() if m else None


_I = re.IGNORECASE
SERIAL_TAG_KEYS = (
    "serial",
    "serial_number",
    "serialnumber",
    "camera_serial",
    "com.apple.quicktime.camera.identifier",
)
TEXT_TAG_KEYS = (
    "comment",
    "description",
    "encoder",
    "com.apple.quicktime.make",
    "com.apple.quicktime.model",
    "make",
    "model",
    "title",
)

RULES: tuple[Rule, ...] = (
    # Tags first: the camera wrote them into the file itself.
    Rule(
        "Axon Body 3",
        Where.tag,
        re.compile(r"\bAxon Body 3\b\W*(?P<serial>X[0-9A-Z]{8})\b", _I),
        "Axon",
        "Body 3",
        TEXT_TAG_KEYS,
    ),
    Rule(
        "Motorola VB400",
        Where.tag,
        re.compile(r"\b(?P<serial>VB400-\d{4,8})\b", _I),
        "Motorola Solutions",
        "VB400",
        TEXT_TAG_KEYS,
    ),
    # A tag that holds nothing but a serial (serials have a digit: "unknown" is no serial).
    Rule(
        "serial tag",
        Where.tag,
        re.compile(r"^\s*(?P<serial>(?=[A-Z_-]*\d)[A-Z0-9][A-Z0-9_-]{2,63})\s*$", _I),
        keys=SERIAL_TAG_KEYS,
    ),
    # "S/N: 12345", "serial=HX-2231" inside free text.
    Rule(
        "serial in text",
        Where.tag,
        re.compile(
            r"\b(?:serial(?:[ _]?(?:number|no))?|s/n|sn)\b\s*[:=#]?\s*"
            r"(?P<serial>(?=[A-Z_-]*\d)[A-Z0-9][A-Z0-9_-]{2,63})",
            _I,
        ),
        keys=TEXT_TAG_KEYS,
    ),
    # Folder and file naming: what the camera's own storage layout says.
    Rule(
        "Axon Body 3",
        Where.path,
        re.compile(r"(?:^|/)Axon[ _]Body[ _]3/(?P<serial>X[0-9A-Z]{8})/", _I),
        "Axon",
        "Body 3",
    ),
    Rule(
        "Motorola VB400",
        Where.filename,
        re.compile(r"^(?P<serial>VB400-\d{4,8})_\d{8}_\d{6}\.", _I),
        "Motorola Solutions",
        "VB400",
    ),
    # A force convention for generic cameras (docs/cameras.md): the DCIM folder is named
    # after the camera's asset number, DCIM/100BWC12/ for camera BWC12.
    Rule("DCIM folder", Where.path, re.compile(r"(?:^|/)DCIM/\d{3}(?P<serial>BWC\d{1,8})/", _I)),
    # The volume label, when the force labels each camera's storage with its asset number.
    Rule("volume label", Where.volume_label, re.compile(r"^\s*(?P<serial>BWC-?\d{1,8})\s*$", _I)),
)


@dataclass(frozen=True)
class Found:
    serial: str
    how: str
    make: str | None = None
    model: str | None = None


def from_tags(tags: dict[str, str]) -> Found | None:
    """The serial a container tag gives (keys compared case-insensitively), by rule order."""
    lowered = {k.lower(): v for k, v in tags.items() if isinstance(v, str)}
    for rule in RULES:
        if rule.where != Where.tag:
            continue
        for key in rule.keys:
            if key in lowered and (serial := rule.find(lowered[key])):
                return Found(serial, f"container tag '{key}'", rule.make, rule.model)
    return None


def from_path(path: str | None, filename: str) -> Found | None:
    """The serial the camera's folder or file naming gives; the path is the dock's relative
    path (with / separators), the file name the declared one."""
    path = (path or "").replace("\\", "/")
    name = path.rsplit("/", 1)[-1] or filename
    for rule in RULES:
        text = {Where.path: path, Where.filename: name}.get(rule.where)
        if text and (serial := rule.find(text)):
            naming = "folder" if rule.where == Where.path else "file"
            return Found(serial, f"{naming} naming ({rule.vendor})", rule.make, rule.model)
    if name != filename:  # the path's last part and the declared name can differ (a rename)
        return from_path(None, filename)
    return None


def from_volume_label(label: str | None) -> Found | None:
    for rule in RULES:
        if rule.where == Where.volume_label and label and (serial := rule.find(label)):
            return Found(serial, f"volume label {label.strip()}", rule.make, rule.model)
    return None
