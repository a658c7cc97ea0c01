"""search at a million clips: full-text indexes kept in step by the database, keyset indexes

Revision ID: 0015
Revises: 0014

Free text (docs/search.md): on SQLite an FTS5 table with the trigram tokenizer,
`clip_search_text`, one row per searchable text (a clip's file name and camera serial, each
name it was docked under, each tag, each bookmark note with its author), written by triggers
on those tables so that every writer (the services, a restore, a hand-made fix) keeps it in
step; on PostgreSQL pg_trgm GIN indexes on the same columns, which the planner keeps in step
itself. Neither is an ORM model: `evidence.db.described_by_models` keeps them out of the
comparison of models and migrations.

Sorting and paging: newest recorded first, then by id, so `(recorded_at, id)` and
`(officer_id | state | category, recorded_at, id)` replace the single-column indexes.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Filters whose single-column index becomes (column, recorded_at, id): the filtered list's
# pages come off it in order. recorded_at's own becomes (recorded_at, id).
SORTED_BY = ("officer_id", "state", "category")

# (table, column) pairs searched as free text on PostgreSQL, each with a trigram GIN index.
TRIGRAM_COLUMNS = (
    ("clips", "filename"),
    ("clips", "camera_serial"),
    ("clip_names", "filename"),
    ("clip_tags", "tag"),
    ("bookmarks", "note"),
)

# The FTS5 row for a clip's own text; kind and key say which source row a text came from, so
# a trigger removes exactly that one (the clip id column is indexed too: a trigger finds a
# clip's rows by matching it, not by scanning the table).
_CLIP_ROW = (
    "INSERT INTO clip_search_text (clip_id, kind, key, author, body) "
    "VALUES (new.id, 'clip', NULL, NULL, "
    "trim(coalesce(new.filename, '') || ' ' || coalesce(new.camera_serial, '')))"
)


def _delete(clip: str, kind: str, key: str | None) -> str:
    where = f"clip_id MATCH '\"' || {clip} || '\"' AND clip_id = {clip} AND kind = '{kind}'"
    return f"DELETE FROM clip_search_text WHERE {where}" + (f" AND key = {key}" if key else "")


_SQLITE_TRIGGERS = {
    "clips": (
        f"AFTER INSERT ON clips BEGIN {_CLIP_ROW}; END",
        f"AFTER UPDATE OF filename, camera_serial ON clips BEGIN "
        f"{_delete('old.id', 'clip', None)}; {_CLIP_ROW}; END",
        "AFTER DELETE ON clips BEGIN DELETE FROM clip_search_text "
        "WHERE clip_id MATCH '\"' || old.id || '\"' AND clip_id = old.id; END",
    ),
    "clip_names": (
        "AFTER INSERT ON clip_names BEGIN INSERT INTO clip_search_text "
        "(clip_id, kind, key, author, body) "
        "VALUES (new.clip_id, 'name', new.filename, NULL, new.filename); END",
        "AFTER UPDATE ON clip_names BEGIN "
        f"{_delete('old.clip_id', 'name', 'old.filename')}; INSERT INTO clip_search_text "
        "(clip_id, kind, key, author, body) "
        "VALUES (new.clip_id, 'name', new.filename, NULL, new.filename); END",
        f"AFTER DELETE ON clip_names BEGIN {_delete('old.clip_id', 'name', 'old.filename')}; END",
    ),
    "clip_tags": (
        "AFTER INSERT ON clip_tags BEGIN INSERT INTO clip_search_text "
        "(clip_id, kind, key, author, body) VALUES (new.clip_id, 'tag', new.tag, NULL, new.tag); "
        "END",
        "AFTER UPDATE ON clip_tags BEGIN "
        f"{_delete('old.clip_id', 'tag', 'old.tag')}; INSERT INTO clip_search_text "
        "(clip_id, kind, key, author, body) VALUES (new.clip_id, 'tag', new.tag, NULL, new.tag); "
        "END",
        f"AFTER DELETE ON clip_tags BEGIN {_delete('old.clip_id', 'tag', 'old.tag')}; END",
    ),
    # A note carries its author: a search matches only notes the searcher's side may read.
    "bookmarks": (
        "AFTER INSERT ON bookmarks BEGIN INSERT INTO clip_search_text "
        "(clip_id, kind, key, author, body) "
        "VALUES (new.clip_id, 'note', new.id, new.user_id, new.note); END",
        "AFTER UPDATE ON bookmarks BEGIN "
        f"{_delete('old.clip_id', 'note', 'old.id')}; INSERT INTO clip_search_text "
        "(clip_id, kind, key, author, body) "
        "VALUES (new.clip_id, 'note', new.id, new.user_id, new.note); END",
        f"AFTER DELETE ON bookmarks BEGIN {_delete('old.clip_id', 'note', 'old.id')}; END",
    ),
}

_SQLITE_BACKFILL = (
    "INSERT INTO clip_search_text (clip_id, kind, key, author, body) "
    "SELECT id, 'clip', NULL, NULL, "
    "trim(coalesce(filename, '') || ' ' || coalesce(camera_serial, '')) FROM clips",
    "INSERT INTO clip_search_text (clip_id, kind, key, author, body) "
    "SELECT clip_id, 'name', filename, NULL, filename FROM clip_names",
    "INSERT INTO clip_search_text (clip_id, kind, key, author, body) "
    "SELECT clip_id, 'tag', tag, NULL, tag FROM clip_tags",
    "INSERT INTO clip_search_text (clip_id, kind, key, author, body) "
    "SELECT clip_id, 'note', id, user_id, note FROM bookmarks",
)


def _trigger_names() -> list[tuple[str, str]]:
    names = []
    for table, bodies in _SQLITE_TRIGGERS.items():
        for body in bodies:
            event = body.split(" ON ")[0].split()[1].lower()  # insert, update, delete
            names.append((f"{table}_search_{event}", body))
    return names


def upgrade() -> None:
    op.drop_index("ix_clips_recorded_at", table_name="clips")
    op.create_index("ix_clips_recorded_at_id", "clips", ["recorded_at", "id"])
    for column in SORTED_BY:
        op.drop_index(f"ix_clips_{column}", table_name="clips")
        op.create_index(f"ix_clips_{column}_recorded_at_id", "clips", [column, "recorded_at", "id"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE clip_search_text USING fts5("
            "clip_id, kind UNINDEXED, key UNINDEXED, author UNINDEXED, body, "
            "tokenize = 'trigram')"
        )
        for statement in _SQLITE_BACKFILL:
            op.execute(statement)
        for name, body in _trigger_names():
            op.execute(f"CREATE TRIGGER {name} {body}")
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for table, column in TRIGRAM_COLUMNS:
            op.execute(
                f"CREATE INDEX ix_trgm_{table}_{column} ON {table} "
                f"USING gin ({column} gin_trgm_ops)"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name, _ in _trigger_names():
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TABLE clip_search_text")
    else:
        for table, column in TRIGRAM_COLUMNS:
            op.execute(f"DROP INDEX ix_trgm_{table}_{column}")
    for column in SORTED_BY:
        op.drop_index(f"ix_clips_{column}_recorded_at_id", table_name="clips")
        op.create_index(f"ix_clips_{column}", "clips", [column])
    op.drop_index("ix_clips_recorded_at_id", table_name="clips")
    op.create_index("ix_clips_recorded_at", "clips", ["recorded_at"])
