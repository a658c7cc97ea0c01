"""The migrations build exactly the schema the models describe, on both engines: a column
added to a model without its migration (or the reverse) fails here, not in a force's upgrade."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import evidence.models  # noqa: F401  (every model registered on Base.metadata)
from evidence.context import Context
from evidence.db import Base


def test_the_migrated_schema_matches_the_models(ctx: Context) -> None:
    with ctx.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff
