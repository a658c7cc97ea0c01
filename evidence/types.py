"""Column types and id helpers shared by every domain's models."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# The largest value a BigInteger column (ledger indices, sizes, offsets, milliseconds) holds on
# both engines: numbers from requests are bounded by it, so none reaches the database too big.
MAX_BIGINT = 2**63 - 1


def new_id() -> str:
    """A random UUID as text: ids are opaque and never reveal counts or order."""
    return str(uuid.uuid4())
