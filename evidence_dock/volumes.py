"""Which mounted volume a path is on: its mount point, device, label, UUID, read-only flag.

A camera's storage is known by its volume (the label a vendor writes, e.g. `BWC-7788`, or the
filesystem UUID), not by where it happens to be mounted today: the agent keys its state by
it and sends it to the server for attribution. Knowing it is a nicety, never a condition:
every lookup here returns what it could find and `None` for the rest, and never raises.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
BY_LABEL = Path("/dev/disk/by-label")
BY_UUID = Path("/dev/disk/by-uuid")
BLKID_TIMEOUT = 5.0  # blkid on a dying card can hang; a dock must not


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo."""

    mount_point: Path
    device: str  # the mount source: /dev/sdb1, /dev/loop3, tmpfs, ...
    fstype: str
    read_only: bool


@dataclass(frozen=True)
class Volume:
    """The volume a path is on, as far as it could be identified."""

    mount_point: Path
    device: str
    fstype: str
    read_only: bool
    label: str | None = None
    uuid: str | None = None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a mountinfo text; lines that do not parse are skipped."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)  # optional fields end with a lone "-"
            mount_point, options = fields[4], fields[5].split(",")
            fstype, source, super_options = fields[sep + 1], fields[sep + 2], fields[sep + 3]
        except (ValueError, IndexError):
            continue
        read_only = "ro" in options or "ro" in super_options.split(",")
        mounts.append(Mount(Path(_unescape(mount_point)), _unescape(source), fstype, read_only))
    return mounts


def read_mounts(mountinfo: Path = MOUNTINFO) -> list[Mount]:
    try:
        return parse_mountinfo(mountinfo.read_text(errors="replace"))
    except OSError:
        return []


def mount_of(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount `path` is on: the deepest mount point containing it (the last one mounted,
    when several are stacked on the same point)."""
    resolved = path.resolve()
    best: Mount | None = None
    for mount in mounts:
        if resolved == mount.mount_point or mount.mount_point in resolved.parents:
            if best is None or len(mount.mount_point.parts) >= len(best.mount_point.parts):
                best = mount
    return best


def _from_symlinks(directory: Path, device: str) -> str | None:
    """The name of the /dev/disk/by-* link pointing at `device` (udev writes these)."""
    try:
        target = os.path.realpath(device)
        for link in directory.iterdir():
            if os.path.realpath(link) == target:
                # udev escapes unsafe characters in link names as \xHH.
                return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m[1], 16)), link.name)
    except OSError:
        return None
    return None


def parse_blkid_export(text: str) -> dict[str, str]:
    """`blkid -o export` output: KEY=value lines (values may be shell-quoted with \\)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = re.sub(r"\\(.)", r"\1", value.strip())
    return values


def _from_blkid(device: str) -> dict[str, str]:
    try:
        # -c /dev/null: probe the device itself. blkid's cache would name the card that was
        # in this device before (cards are swapped under the same /dev/loopN or /dev/sdX).
        done = subprocess.run(
            ["blkid", "-c", "/dev/null", "-o", "export", device],
            capture_output=True,
            text=True,
            timeout=BLKID_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_blkid_export(done.stdout) if done.returncode == 0 else {}


def identify(mount: Mount) -> Volume:
    """Label and UUID of a mount's device: from udev's symlinks when there are any, else
    blkid. Not a block device (tmpfs, overlay, a network share): neither."""
    label = uuid = None
    if mount.device.startswith("/dev/"):
        label = _from_symlinks(BY_LABEL, mount.device)
        uuid = _from_symlinks(BY_UUID, mount.device)
        if label is None or uuid is None:
            found = _from_blkid(mount.device)
            label = label or found.get("LABEL") or None
            uuid = uuid or found.get("UUID") or None
    return Volume(mount.mount_point, mount.device, mount.fstype, mount.read_only, label, uuid)


def volume_of(path: Path, mountinfo: Path = MOUNTINFO) -> Volume | None:
    """The volume `path` is on, or None if that cannot be told."""
    try:
        mount = mount_of(path, read_mounts(mountinfo))
        return identify(mount) if mount is not None else None
    except OSError:
        return None


def volume_at(path: Path, mountinfo: Path = MOUNTINFO) -> Volume | None:
    """The volume whose root `path` is (a camera's storage, mounted there), else None. Cheaper
    than volume_of for a plain folder: the PC's own disk is never probed."""
    try:
        mount = mount_of(path, read_mounts(mountinfo))
        if mount is None or mount.mount_point != path.resolve():
            return None
        return identify(mount)
    except OSError:
        return None
