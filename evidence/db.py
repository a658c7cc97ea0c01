"""Database engines and sessions for SQLite (embedded) and PostgreSQL (production).

SQLite needs two fixes to be a safe embedded database for an evidence store:
- durability: WAL with `synchronous=FULL`, so a commit the caller was told about survives
  power loss;
- serialized writers: pysqlite begins transactions lazily, so a transaction that read and
  then writes can fail with SQLITE_BUSY instead of waiting. Write units of work therefore
  start with `BEGIN IMMEDIATE` (see `write_session`), which waits for the write lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from evidence.config import Settings


class Base(DeclarativeBase):
    """Declarative base of every table; Alembic reads its metadata."""


# What the database keeps for search that no model describes (migration 0015,
# docs/search.md): SQLite's FTS5 table and the shadow tables FTS5 makes for it, and
# PostgreSQL's trigram indexes. The database keeps them in step itself (triggers, GIN).
SEARCH_TABLE = "clip_search_text"
TRIGRAM_INDEX_PREFIX = "ix_trgm_"


def described_by_models(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's `include_object`: False for the search structures above, so comparing the
    models with the migrated schema (tests/test_migrations.py, autogenerate) leaves them out."""
    if type_ == "table" and name and name.startswith(SEARCH_TABLE):
        return False
    return not (type_ == "index" and name and name.startswith(TRIGRAM_INDEX_PREFIX))


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    """An engine configured for the evidence store's durability and locking needs."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Hand transaction control to SQLAlchemy's "begin" event below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Database:
    """One database: an engine plus read and write session factories."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._write = sessionmaker(writer, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (deferred transaction on SQLite)."""
        with self._read() as s:
            yield s

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A unit of work that writes: commits on success, rolls back on error.

        On SQLite it holds the write lock from its first statement, so concurrent writers
        (threads or processes) queue instead of failing.
        """
        with self._write() as s:
            with s.begin():
                yield s

    def dispose(self) -> None:
        self.engine.dispose()


@lru_cache
def database_for(url: str) -> Database:
    return Database(url)


def get_database(settings: Settings) -> Database:
    return database_for(settings.resolved_database_url())
