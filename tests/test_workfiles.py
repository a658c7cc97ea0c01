"""Work directories of killed workers are swept; those of live ones never are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from evidence import workfiles

HOLD = """
import sys, time
from pathlib import Path
from evidence.workfiles import work_dir
with work_dir(Path(sys.argv[1])) as d:
    (d / "clip.mp4").write_bytes(b"x" * 4096)
    print(d, flush=True)
    time.sleep(600)
"""


def _holder(root: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_the_sweep_removes_a_killed_holders_directory_and_spares_a_live_one(tmp_path: Path) -> None:
    root = tmp_path / "work"
    live, live_dir = _holder(root)
    dead, dead_dir = _holder(root)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=10)
        assert dead_dir.is_dir(), "a killed process cannot clean up"
        assert workfiles.sweep(root) == 1
        assert not dead_dir.exists() and (live_dir / "clip.mp4").is_file()
        assert workfiles.sweep(root) == 0
    finally:
        live.kill()
        live.wait(timeout=10)
    assert workfiles.sweep(root) == 1 and list(root.iterdir()) == []


def test_a_work_directory_is_removed_when_its_block_ends(tmp_path: Path) -> None:
    with workfiles.work_dir(tmp_path) as d:
        (d / "f").write_bytes(b"x")
        assert d.name.startswith(workfiles.PREFIX)
    assert list(tmp_path.iterdir()) == []
