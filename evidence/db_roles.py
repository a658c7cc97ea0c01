"""The application's own PostgreSQL role (docs/deploy.md, "Database roles").

Production runs with two roles. The owner role owns the schema: `evidence db upgrade` runs
as it, and only it can ALTER or DROP a table or its triggers (PostgreSQL lets nobody but a
table's owner, or a superuser, do that). The application role, which the API and the workers
connect as, is given rows and nothing more: it reads and writes the ordinary tables, may only
read and append to the append-only tables (the ledger's, whose triggers refuse UPDATE, DELETE
and TRUNCATE), may only read the schema's version, and owns nothing. So a leaked application
password cannot rewrite history by first switching the triggers off.

`grant_app_role` runs as the owner after every migration (a new table needs its grants):
`evidence db grant-app-role ROLE`. It refuses a role that could undo the point of it: a
superuser, a role that owns tables here, or one that is a member of the owner role.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from evidence.db import make_engine
from evidence.errors import EvidenceError


class UnsafeAppRole(EvidenceError):
    title = "Application role not safe"


# The table Alembic keeps the schema's version in: the application reads it, never writes it.
VERSION_TABLE = "alembic_version"

# Every table one of whose triggers calls the migrations' append-only function (0001, 0006).
_APPEND_ONLY = """
SELECT DISTINCT c.relname
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid
WHERE p.proname = 'evidence_append_only' AND n.nspname = 'public' AND NOT t.tgisinternal
ORDER BY c.relname
"""


@dataclass(frozen=True)
class Grants:
    role: str
    append_only: list[str]  # read and append only
    read_write: list[str]  # rows read, inserted, updated and deleted
    statements: list[str]  # what was run, in order


def _ident(conn: Connection, name: str) -> str:
    return str(conn.execute(text("SELECT quote_ident(:n)"), {"n": name}).scalar_one())


def _check_role(conn: Connection, role: str) -> None:
    row = conn.execute(
        text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
    ).first()
    if row is None:
        raise UnsafeAppRole(
            f"no role {role!r}: create it first (CREATE ROLE {role} LOGIN PASSWORD '...')"
        )
    if row.rolsuper:
        raise UnsafeAppRole(f"{role!r} is a superuser: it could drop the ledger's triggers")
    if role == conn.execute(text("SELECT current_user")).scalar_one():
        raise UnsafeAppRole(f"{role!r} is the role running the migrations (the owner)")
    owned = conn.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND pg_has_role(:r, c.relowner, 'MEMBER') "
            "ORDER BY 1 LIMIT 5"
        ),
        {"r": role},
    ).scalars()
    owned = list(owned)
    if owned:
        raise UnsafeAppRole(
            f"{role!r} owns (or acts as the owner of) tables here, e.g. {', '.join(owned)}: "
            "an owner can drop the ledger's triggers; use a role that owns nothing"
        )


def grant_app_role(url: str, role: str) -> Grants:
    """Give `role` the application's rights on the database at `url` (connected as the
    owner), and take away any others it had on the tables. Idempotent."""
    engine = make_engine(url)
    try:
        if engine.dialect.name != "postgresql":
            raise UnsafeAppRole("database roles are PostgreSQL's: SQLite has none")
        with engine.begin() as conn:
            _check_role(conn, role)
            who = _ident(conn, role)
            tables = list(
                conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "ORDER BY tablename"
                    )
                ).scalars()
            )
            append_only = list(conn.execute(text(_APPEND_ONLY)).scalars())
            read_write = [t for t in tables if t not in append_only and t != VERSION_TABLE]
            database = _ident(conn, conn.execute(text("SELECT current_database()")).scalar_one())
            statements = [
                f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {who}",
                f"GRANT USAGE ON SCHEMA public TO {who}",
                f"REVOKE CREATE ON SCHEMA public FROM {who}",
                f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {who}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {who}",
            ]
            for table in read_write:
                statements.append(
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_ident(conn, table)} TO {who}"
                )
            for table in append_only:
                statements.append(f"GRANT SELECT, INSERT ON {_ident(conn, table)} TO {who}")
            if VERSION_TABLE in tables:
                statements.append(f"GRANT SELECT ON {VERSION_TABLE} TO {who}")
            for sql in statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()
    return Grants(role, append_only, read_write, statements)
