"""The docking agent as a docking PC installs it: `make dock-wheel` builds a wheel of
evidence_dock alone (deploy/dock-package), which installs into a fresh virtualenv with httpx
as its only dependency, runs, and imports nothing of the server's stack. Building and
installing fetch setuptools and httpx from PyPI, as on a docking PC; offline, this skips."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.fake_ingest import DEVICE_KEY, FakeIngest, write_clip
from tests.fixtures.services import missing

REPO = Path(__file__).resolve().parents[1]
SERVER_STACK = (
    "evidence",
    "api",
    "workers",
    "cli",
    "sqlalchemy",
    "fastapi",
    "celery",
    "typer",
    "pydantic",
    "uvicorn",
    "alembic",
)
OFFLINE = (
    "Could not find a version",
    "No matching distribution",
    "Failed to establish",
    "Temporary failure in name resolution",
    "Network is unreachable",
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _run(
    argv: list[str], env: dict[str, str], what: str, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=150, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0 and any(words in done.stderr for words in OFFLINE):
        missing(
            f"{what} needs PyPI, which cannot be reached here: "
            f"{done.stderr.strip().splitlines()[-1]}"
        )
    assert done.returncode == 0, f"{what}:\n{done.stdout}\n{done.stderr}"
    return done


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_the_dock_wheel_installs_alone_runs_and_imports_nothing_of_the_server(
    server: FakeIngest, tmp_path: Path
) -> None:
    # No PYTHONPATH: nothing of this repository may leak into the installed agent.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    env["PIP_CACHE_DIR"] = str(tmp_path / "pip-cache")
    dist = tmp_path / "dist"
    _run(
        [
            "make",
            "-s",
            "dock-wheel",
            f"DOCK_PYTHON={sys.executable}",
            f"DOCK_BUILD={tmp_path / 'build'}",
            f"DOCK_DIST={dist}",
        ],
        env,
        "make dock-wheel",
        cwd=REPO,
    )
    (wheel,) = dist.glob("evidence_dock-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "evidence_dock",
        wheel.name.split("-py3")[0] + ".dist-info",
    }, names

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = venv / "bin" / "python"
    before = _du(venv)
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(wheel)],
        env,
        "pip install",
    )
    purelib = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
            env=env,
        ).strip()
    )
    installed = sorted(p.name for p in purelib.iterdir() if not p.name.endswith(".dist-info"))
    assert not set(installed) & set(SERVER_STACK), installed
    print(
        f"\ninstalled: {installed}; {(_du(venv) - before) / 1e6:.1f} MB in all, "
        f"evidence_dock {_du(purelib / 'evidence_dock') / 1e3:.0f} kB"
    )

    helped = _run([str(venv / "bin" / "evidence-dock"), "--help"], env, "evidence-dock --help")
    assert helped.stdout.startswith("usage: evidence-dock")
    loaded = _run(
        [
            str(python),
            "-c",
            "import sys, evidence_dock.cli, evidence_dock.watch, evidence_dock.agent; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))",
        ],
        env,
        "import evidence_dock",
    ).stdout.split()
    assert not set(loaded) & set(SERVER_STACK), loaded
    assert "httpx" in loaded

    # And it docks: a folder to the ingest contract's server, state kept where it is told.
    camera = tmp_path / "camera"
    data = write_clip(camera / "DCIM/a.mp4", 100_000)
    docked = _run(
        [
            str(venv / "bin" / "evidence-dock"),
            str(camera),
            "--api",
            server.base,
            "--state-dir",
            str(tmp_path / "state"),
        ],
        {**env, "EVIDENCE_DEVICE_KEY": DEVICE_KEY},
        "evidence-dock DIR",
    )
    assert "summary: 1 clips: 1 uploaded" in docked.stderr
    assert server.object_bytes("a.mp4") == data


def test_importing_the_agent_loads_nothing_of_the_server() -> None:
    """The same promise in the development environment, where the server's packages are
    importable: the agent must not reach for them (no PyPI needed)."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, evidence_dock.cli, evidence_dock.watch, "
            "evidence_dock.agent, evidence_dock.volumes; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert "httpx" in loaded and not set(loaded) & set(SERVER_STACK), loaded
