"""The migrations build exactly the schema the models describe, on both engines: a column
added to a model without its migration (or the reverse) fails here, not in a force's upgrade."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import evidence.models  # noqa: F401  (every model registered on Base.metadata)
from evidence.context import Context
from evidence.db import Base, described_by_models


def test_the_migrated_schema_matches_the_models(ctx: Context) -> None:
    with ctx.db.engine.connect() as conn:
        # Search's FTS5 table and trigram indexes are the database's own (docs/search.md).
        migration = MigrationContext.configure(conn, opts={"include_object": described_by_models})
        diff = compare_metadata(migration, Base.metadata)
    assert diff == [], diff
