"""Shared fixtures. Services (PostgreSQL, Ceph RGW, Redis) are real and started here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from evidence import clock
from evidence.accounts import service as accounts_service

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.media",
    "tests.fixtures.redis",
    "tests.fixtures.tsa",
    "tests.fixtures.browser",
    "tests.fixtures.fake_ingest",
    "tests.fixtures.databases",
    "tests.fixtures.worlds",
    "tests.fixtures.bundles",
    "tests.fixtures.smtp",
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


# For tests whose subject does not depend on the database engine (a ZIP's tampering, a
# worker's crash): they run once, on the engine of the profile they belong to, while the
# tests of SQL-bearing behaviour (access rules, queries, the ledger) run on both.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the Ceph gateway is marked `s3`, whether it asks for it by fixture
    or by parameter, so that `-m "not s3"` leaves out every one of them."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec else ()
        if "s3_server" in names or any(p == "s3" for p in params):
            item.add_marker(pytest.mark.s3)
