"""deploy/requirements.lock (made by `make lock`) against pyproject.toml, and the image's pins:
every runtime dependency, with its extras and the build tools, is locked at a version its
specifier accepts, each with a hash; the Dockerfile installs from it and pins ffmpeg."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "deploy" / "requirements.lock"
# The image: Debian bookworm, CPython 3.11 on Linux.
IMAGE = {
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_machine": "x86_64",
}


def _locked() -> dict[str, tuple[Version, str, int]]:
    """name -> (version, marker text, number of hashes)."""
    text = LOCK.read_text()
    entries = {}
    for block in re.split(r"\n(?=[a-z0-9])", text):
        m = re.match(r"([A-Za-z0-9._-]+)==([^ \\\n;]+)(?: ; ([^\\\n]+))?", block)
        if m:
            hashes = len(re.findall(r"--hash=sha256:[0-9a-f]{64}", block))
            entries[canonicalize_name(m[1])] = (Version(m[2]), (m[3] or "").strip(), hashes)
    return entries


def _applies(marker: str, extra: str = "") -> bool:
    return not marker or Marker(marker).evaluate({**IMAGE, "extra": extra})


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_locked_package_is_pinned_with_hashes() -> None:
    locked = _locked()
    assert len(locked) >= 40, "the lock went missing"
    assert all(hashes >= 1 for _, _, hashes in locked.values())
    assert "make lock" in LOCK.read_text().splitlines()[1]


def test_the_lock_covers_every_runtime_dependency_and_its_extras() -> None:
    locked = _locked()
    wanted = [Requirement(r) for r in _pyproject()["project"]["dependencies"]]
    wanted += [Requirement(r) for r in _pyproject()["build-system"]["requires"]]
    missing = []
    for req in wanted:
        name = canonicalize_name(req.name)
        if name not in locked or locked[name][0] not in req.specifier:
            missing.append(str(req))
            continue
        # Each extra asked for brings what the package's metadata says it needs.
        for extra in req.extras:
            try:
                requires = distribution(req.name).requires or []
            except PackageNotFoundError:  # pragma: no cover - the venv installs them all
                missing.append(f"{req} (not installed here to read its extras)")
                continue
            for dep in map(Requirement, requires):
                if (
                    dep.marker
                    and dep.marker.evaluate({**IMAGE, "extra": extra})
                    and ("extra" in str(dep.marker))
                ):
                    dep_name = canonicalize_name(dep.name)
                    if dep_name not in locked or not _applies(locked[dep_name][1]):
                        missing.append(f"{dep.name} (for {req.name}[{extra}])")
    assert missing == [], f"not in deploy/requirements.lock: run `make lock`: {missing}"


def test_nothing_the_image_needs_is_left_out_by_a_marker() -> None:
    locked = _locked()
    for req in map(Requirement, _pyproject()["project"]["dependencies"]):
        marker = locked[canonicalize_name(req.name)][1]
        assert _applies(marker), f"{req.name} is locked for `{marker}` only"


def test_the_dockerfile_installs_the_lock_with_hashes_and_pins_ffmpeg() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    lock_install = text.index("pip install --require-hashes --no-deps -r requirements.lock")
    package_install = text.index("pip install --no-deps --no-build-isolation .")
    assert "COPY deploy/requirements.lock ./" in text and lock_install < package_install
    (version,) = re.findall(r"^ARG FFMPEG_VERSION=(\S+)$", text, flags=re.MULTILINE)
    assert re.fullmatch(r"\d+:[\d.]+-[\w.+~]+", version), version
    assert '"ffmpeg=${FFMPEG_VERSION}"' in text
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text()
    assert "!deploy/requirements.lock" in ignore.splitlines()
