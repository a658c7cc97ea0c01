"""Two database roles on a real PostgreSQL: the owner migrates, the application's role
(`evidence db grant-app-role`) works with rows but cannot undo the ledger's protection."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from cli.main import app
from evidence.config import Settings, get_settings
from evidence.context import Context
from evidence.migrate import upgrade

pytestmark = pytest.mark.postgres

APPEND_ONLY = ("ledger_entries", "ledger_refs", "ledger_nodes", "checkpoints")


def _plain(url: str) -> str:
    return url.replace("+psycopg", "")


@pytest.fixture
def roles(postgres_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A database owned by a fresh owner role, migrated as it, and a fresh application role
    given its rights by the CLI; yields (owner url, app url)."""
    tag = uuid.uuid4().hex[:8]
    owner, appr, db = f"ev_owner_{tag}", f"ev_app_{tag}", f"ev_{tag}"
    admin = _plain(postgres_server.url("postgres"))
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE ROLE {owner} LOGIN")
        c.execute(f"CREATE ROLE {appr} LOGIN")
        c.execute(f"CREATE DATABASE {db} OWNER {owner}")
        # On PostgreSQL < 15 every role may create in the public schema: not this one.
        c.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
    host = f"{postgres_server.host}:{postgres_server.port}"
    owner_url = f"postgresql+psycopg://{owner}@{host}/{db}"
    app_url = f"postgresql+psycopg://{appr}@{host}/{db}"
    with psycopg.connect(_plain(owner_url), autocommit=True) as c:
        c.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")

    upgrade(owner_url)
    monkeypatch.setenv("EVIDENCE_DATABASE_URL", owner_url)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "owner"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["db", "grant-app-role", appr])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "read and append only on checkpoint_timestamps, checkpoints, ledger_" in result.output
    yield owner_url, app_url, appr, owner
    postgres_server.close_connections(db)


def _refused(url: str, sql: str) -> str:
    with psycopg.connect(_plain(url)) as c:
        with pytest.raises(psycopg.Error) as caught:
            c.execute(sql)
        c.rollback()
    return str(caught.value)


def test_the_app_role_works_and_cannot_touch_the_ledgers_protection(roles, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    owner_url, app_url, app_role, _ = roles
    ctx = Context(Settings(data_dir=tmp_path / "var", database_url=app_url))
    for i in range(5):
        ctx.ledger.append("test.event", actor="user:tester", subject={"clip": f"c{i}"}, n=i)
    assert ctx.ledger.size() == 5
    verify = CliRunner().invoke(
        app, ["verify", "ledger", "--db", app_url, "--key", ctx.ledger.verifier_key]
    )
    assert verify.exit_code == 0, verify.output
    assert "OK: the ledger verifies" in verify.output
    ctx.db.engine.dispose()

    for table in APPEND_ONLY:
        trigger = f"{table}_append_only"
        assert "must be owner" in _refused(app_url, f"DROP TRIGGER {trigger} ON {table}")
        assert "must be owner" in _refused(app_url, f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        assert "must be owner" in _refused(app_url, f"ALTER TABLE {table} DISABLE TRIGGER USER")
        assert "must be owner" in _refused(app_url, f"ALTER TABLE {table} ADD COLUMN x int")
        assert "must be owner" in _refused(app_url, f"DROP TABLE {table}")
        for sql in (f"DELETE FROM {table}", f"TRUNCATE {table}"):
            assert "permission denied" in _refused(app_url, sql)
    assert "permission denied" in _refused(app_url, "UPDATE ledger_entries SET type = type")
    assert "permission denied" in _refused(app_url, "CREATE TABLE sneaky (x int)")
    assert "permission denied" in _refused(app_url, "UPDATE alembic_version SET version_num = 'x'")
    assert "must be owner" in _refused(app_url, "DROP FUNCTION evidence_append_only()")

    # Nothing changed: the same five entries, still verifying, read as the owner too.
    again = CliRunner().invoke(
        app, ["verify", "ledger", "--db", owner_url, "--key", ctx.ledger.verifier_key]
    )
    assert again.exit_code == 0 and "5 entries read" in again.output, again.output


def test_an_unsafe_app_role_is_refused(roles, postgres_server) -> None:  # type: ignore[no-untyped-def]
    from evidence.db_roles import UnsafeAppRole, grant_app_role

    owner_url, _, app_role, owner = roles
    with pytest.raises(UnsafeAppRole, match="running the migrations"):
        grant_app_role(owner_url, owner)
    with pytest.raises(UnsafeAppRole, match="no role"):
        grant_app_role(owner_url, "no_such_role_here")
    with pytest.raises(UnsafeAppRole, match="superuser"):
        grant_app_role(owner_url, "postgres")
    with psycopg.connect(_plain(postgres_server.url("postgres")), autocommit=True) as c:
        c.execute(f"GRANT {owner} TO {app_role}")
    with pytest.raises(UnsafeAppRole, match="owns .or acts as the owner of. tables"):
        grant_app_role(owner_url, app_role)
