"""Shared fixtures. Services (PostgreSQL, Ceph RGW, Redis) are real and started here."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from evidence import clock
from evidence.accounts import service as accounts_service
from evidence.config import Settings
from evidence.context import Context
from evidence.migrate import upgrade

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.media",
    "tests.fixtures.redis",
    "tests.fixtures.tsa",
    "tests.fixtures.browser",
    "tests.fixtures.fake_ingest",
]


@pytest.fixture(autouse=True, scope="session")
def _dock_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The dock agent keeps its state under $XDG_STATE_HOME (docs/dock.md): a directory of
    this session, for the agents tests run in-process and the ones they start, so that no
    test writes to the real home directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
        mp.delenv("EVIDENCE_DOCK_STATE_DIR", raising=False)
        yield


@pytest.fixture(autouse=True, scope="session")
def _quick_password_hashes() -> Iterator[None]:
    """argon2id with its cheapest parameters, in this process only: a test force signs in
    seven people, which at the production parameters (64 MiB, 3 passes) is two seconds of CPU
    per test. The algorithm and every code path stay the same; the parameters a store uses
    are checked in a fresh process (tests/test_identity.py), and the servers tests start as
    processes (`evidence up`) use them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            accounts_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        )
        yield


@pytest.fixture(autouse=True)
def _system_clock() -> Iterator[None]:
    yield
    clock.set_clock(None)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database migrated once per test run, which tests copy (a copy takes a
    millisecond, the migrations a tenth of a second)."""
    path = tmp_path_factory.mktemp("template") / "evidence.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_server) -> str:  # type: ignore[no-untyped-def]
    """The name of a PostgreSQL database migrated once per test run, the template of each
    test's database (CREATE DATABASE ... TEMPLATE)."""
    url = postgres_server.create_database()
    upgrade(url)
    name = url.rsplit("/", 1)[1]
    postgres_server.close_connections(name)
    return name


def copy_sqlite(template: Path, dest: Path) -> str:
    """A copy of an SQLite database through its backup API (consistent even mid-WAL)."""
    with sqlite3.connect(template) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)
    return f"sqlite:///{dest}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each engine the store supports."""
    if request.param == "sqlite":
        return copy_sqlite(request.getfixturevalue("migrated_sqlite"), tmp_path / "evidence.db")
    template = request.getfixturevalue("migrated_postgres")
    return request.getfixturevalue("postgres_server").create_database(template)


# For tests whose subject does not depend on the database engine (a ZIP's tampering, a
# worker's crash): they run once, on the engine of the profile they belong to, while the
# tests of SQL-bearing behaviour (access rules, queries, the ledger) run on both.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    return copy_sqlite(migrated_sqlite, tmp_path / "evidence.db")


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "var", database_url=database_url, storage_backend="local", **overrides
    )


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def ctx(settings: Settings) -> Context:
    return Context(settings)
