"""`evidence admin` creates users and devices, each with a ledger entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app
from evidence.accounts.models import Device, User
from evidence.accounts.service import check_password, hash_device_key
from evidence.context import Context


@pytest.fixture
def env(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("EVIDENCE_DATABASE_URL", ctx.db.url)
    from evidence.config import get_settings

    get_settings.cache_clear()
    yield ctx
    get_settings.cache_clear()


def test_the_first_admin_of_an_empty_store_gets_a_password_from_stdin(env: Context) -> None:
    result = CliRunner().invoke(
        app, ["admin", "create-user", "chief", "--role", "admin"], input="correct horse battery\n"
    )
    assert result.exit_code == 0, result.output
    with env.db.session() as s:
        user = s.scalars(select(User).where(User.username == "chief")).one()
    assert user.role == "admin" and user.approved
    assert user.password_hash.startswith("$argon2id$")
    assert check_password(user.password_hash, "correct horse battery")
    assert not check_password(user.password_hash, "wrong")
    ((index, raw),) = env.ledger.entries_about(f"user:{user.id}")
    entry = json.loads(raw)
    assert entry["type"] == "user.created" and entry["role"] == "admin"
    assert "password" not in raw.decode() and user.password_hash not in raw.decode()


def test_every_later_user_gets_an_enrolment_link_not_a_password(env: Context) -> None:
    runner = CliRunner()
    runner.invoke(
        app, ["admin", "create-user", "chief", "--role", "admin"], input="correct horse battery\n"
    )
    result = runner.invoke(
        app,
        ["admin", "create-user", "jsmith", "--role", "officer", "--officer-id", "4711"],
        input="a password nobody asked for\n",
    )
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[-1]
    assert link.startswith(env.settings.public_url + "/ui/enrol/")
    with env.db.session() as s:
        user = s.scalars(select(User).where(User.username == "jsmith")).one()
    assert user.officer_id == "4711" and user.approved  # the server's operator needs no second
    assert not check_password(user.password_hash, "a password nobody asked for")
    # A second admin, too, chooses their own password.
    result = runner.invoke(
        app, ["admin", "create-user", "deputy", "--role", "admin"], input="correct horse battery\n"
    )
    assert result.exit_code == 0 and "/ui/enrol/" in result.stdout.strip().splitlines()[-1]
    with env.db.session() as s:
        deputy = s.scalars(select(User).where(User.username == "deputy")).one()
    assert not check_password(deputy.password_hash, "correct horse battery")
    from evidence.accounts.enrolment import enrol

    enrol(env, link.rsplit("/", 1)[1], "my very own password", source_ip="127.0.0.1")
    with env.db.session() as s:
        user = s.scalars(select(User).where(User.username == "jsmith")).one()
    assert check_password(user.password_hash, "my very own password")


@pytest.mark.parametrize(
    "args, password, message",
    [
        (["bob", "--role", "sheriff"], "long enough password", "unknown role 'sheriff'"),
        (["bob", "--role", "admin"], "short", "password too short"),
        (["../bob", "--role", "officer"], "long enough password", "not allowed"),
    ],
)
def test_bad_user_input_is_refused_clearly(env: Context, args, password, message) -> None:
    result = CliRunner().invoke(app, ["admin", "create-user", *args], input=password + "\n")
    assert result.exit_code == 1
    assert message in result.output
    assert env.ledger.size() == 0


def test_duplicate_user_and_officer_id_are_refused(env: Context) -> None:
    runner = CliRunner()
    for expected in (0, 1):
        result = runner.invoke(app, ["admin", "create-user", "amy", "--role", "auditor"])
        assert result.exit_code == expected
    assert "already exists" in result.output
    runner.invoke(app, ["admin", "create-user", "pc_a", "--role", "officer", "--officer-id", "PC9"])
    result = runner.invoke(
        app, ["admin", "create-user", "pc_b", "--role", "officer", "--officer-id", "PC9"]
    )
    assert result.exit_code == 1 and "officer id 'PC9' already belongs to pc_a" in result.output


def test_create_device_prints_key_once_on_last_line(env: Context) -> None:
    result = CliRunner().invoke(app, ["admin", "create-device", "dock-station-1"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("evd_") and len(key) > 40
    with env.db.session() as s:
        device = s.scalars(select(Device)).one()
    assert device.key_hash == hash_device_key(key)
    assert key not in json.dumps([e.decode() for _, e in env.ledger.entries(0, 10)])
    ((_, raw),) = env.ledger.entries_about(f"device:{device.id}")
    assert json.loads(raw)["type"] == "device.created"


def test_console_script_runs_as_a_process(env: Context) -> None:
    """The installed entry point, not just the Typer object, creates a device."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "admin", "create-device", "dock-2"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
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


def test_the_operator_sets_and_removes_an_email_address(env: Context) -> None:
    runner = CliRunner()
    runner.invoke(app, ["admin", "create-user", "cps_lee", "--role", "cps"])
    done = runner.invoke(app, ["admin", "set-email", "cps_lee", "lee@cps.example"])
    assert done.exit_code == 0 and "lee@cps.example" in done.output
    with env.db.session() as s:
        assert s.scalars(select(User.email).where(User.username == "cps_lee")).one() == (
            "lee@cps.example"
        )
    bad = runner.invoke(app, ["admin", "set-email", "cps_lee", "Lee <lee@cps.example>"])
    assert bad.exit_code != 0 and "not an e-mail address" in bad.output
    cleared = runner.invoke(app, ["admin", "set-email", "cps_lee"])
    assert cleared.exit_code == 0 and "no e-mail address" in cleared.output
    with env.db.session() as s:
        assert s.scalars(select(User.email).where(User.username == "cps_lee")).one() is None


def test_the_operator_adds_an_organisation_and_its_member(env: Context) -> None:
    from evidence.accounts.models import Organisation
    from evidence.accounts.service import create_user

    runner = CliRunner()
    create_user(env, "def_grey", "external", "correct horse battery")
    made = runner.invoke(
        app, ["admin", "create-organisation", "Doe & Co", "--kind", "defence_firm"]
    )
    assert made.exit_code == 0, made.output
    with env.db.session() as s:
        org = s.scalars(select(Organisation)).one()
    assert (org.name, org.kind) == ("Doe & Co", "defence_firm")
    bad = runner.invoke(app, ["admin", "create-organisation", "Roe", "--kind", "pirates"])
    assert bad.exit_code != 0 and "defence_firm" in bad.output
    moved = runner.invoke(app, ["admin", "set-organisation", "def_grey", org.id])
    assert moved.exit_code == 0, moved.output
    with env.db.session() as s:
        assert s.scalars(select(User.organisation_id).where(User.username == "def_grey")).one()
    types = [
        json.loads(raw)["type"] for _, raw in env.ledger.entries_about(f"organisation:{org.id}")
    ]
    assert types == ["organisation.created", "user.organisation_set"]
