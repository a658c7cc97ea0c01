"""Key files: replicas starting together on one keys volume agree on one key, and a key
others can read is refused."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from evidence.keyfiles import create_once, read_private
from evidence.ledger.keys import load_or_create_signer


def _make_signer(path: str) -> str:
    return load_or_create_signer(Path(path), "evidence-store.test/ledger").verifier_key()


def test_processes_starting_together_agree_on_one_ledger_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ledger.key"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        keys = pool.map(_make_signer, [str(path)] * 8)
    assert len(set(keys)) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "ledger.pub").read_text().strip() == keys[0]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == [], (
        "no temp files left"
    )


def test_create_once_keeps_the_first_key(tmp_path: Path) -> None:
    path = tmp_path / "k"
    assert create_once(path, b"first") and not create_once(path, b"second")
    assert read_private(path, "test key") == b"first"


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    create_once(path, b"secret")
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        read_private(path, "test key")
