"""The scrubber's table: where the scheduled scrubber stopped."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from evidence.db import Base
from evidence.types import UTCDateTime


class ScrubCursor(Base):
    """Where the scheduled scrubber stopped: the next run carries on after `last_key`."""

    __tablename__ = "scrub_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_key: Mapped[str] = mapped_column(String(1024), default="")
    pass_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
