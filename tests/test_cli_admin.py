"""`evidence admin` creates users and devices, each with a ledger entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from evidence.accounts.models import Device, User
from evidence.accounts.service import check_password, hash_device_key
from evidence.cli import app
from evidence.context import Context


@pytest.fixture
def env(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("EVIDENCE_DATABASE_URL", ctx.db.url)
    from evidence.config import get_settings

    get_settings.cache_clear()
    yield ctx
    get_settings.cache_clear()


def test_create_user_reads_password_from_stdin(env: Context) -> None:
    result = CliRunner().invoke(
        app, ["admin", "create-user", "jsmith", "--role", "officer", "--officer-id", "4711"],
        input="correct horse battery\n",
    )
    assert result.exit_code == 0, result.output
    with env.db.session() as s:
        user = s.scalars(select(User).where(User.username == "jsmith")).one()
    assert user.role == "officer" and user.officer_id == "4711"
    assert user.password_hash.startswith("$argon2id$")
    assert check_password(user.password_hash, "correct horse battery")
    assert not check_password(user.password_hash, "wrong")
    (index, raw), = env.ledger.entries_about(f"user:{user.id}")
    entry = json.loads(raw)
    assert entry["type"] == "user.created" and entry["role"] == "officer"
    assert "password" not in raw.decode() and user.password_hash not in raw.decode()


@pytest.mark.parametrize(
    "args, password, message",
    [
        (["bob", "--role", "sheriff"], "long enough password", "unknown role 'sheriff'"),
        (["bob", "--role", "officer"], "short", "password too short"),
        (["../bob", "--role", "officer"], "long enough password", "not allowed"),
    ],
)
def test_bad_user_input_is_refused_clearly(env: Context, args, password, message) -> None:
    result = CliRunner().invoke(app, ["admin", "create-user", *args], input=password + "\n")
    assert result.exit_code == 1
    assert message in result.output
    assert env.ledger.size() == 0


def test_duplicate_user_is_refused(env: Context) -> None:
    runner = CliRunner()
    for expected in (0, 1):
        result = runner.invoke(app, ["admin", "create-user", "amy", "--role", "auditor"],
                               input="a long password\n")
        assert result.exit_code == expected
    assert "already exists" in result.output
    assert env.ledger.size() == 1


def test_create_device_prints_key_once_on_last_line(env: Context) -> None:
    result = CliRunner().invoke(app, ["admin", "create-device", "dock-station-1"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("evd_") and len(key) > 40
    with env.db.session() as s:
        device = s.scalars(select(Device)).one()
    assert device.key_hash == hash_device_key(key)
    assert key not in json.dumps([e.decode() for _, e in env.ledger.entries(0, 10)])
    (_, raw), = env.ledger.entries_about(f"device:{device.id}")
    assert json.loads(raw)["type"] == "device.created"


def test_console_script_runs_as_a_process(env: Context) -> None:
    """The installed entry point, not just the Typer object, creates a device."""
    proc = subprocess.run(
        [sys.executable, "-m", "evidence", "admin", "create-device", "dock-2"],
        capture_output=True, text=True, env={**os.environ}, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("evd_")


def test_commands_on_an_unmigrated_database_say_what_to_do(tmp_path, monkeypatch) -> None:
    from evidence.config import get_settings

    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "fresh"))
    monkeypatch.delenv("EVIDENCE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["admin", "create-device", "dock-9"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "has no schema yet" in result.output and "evidence db upgrade" in result.output
