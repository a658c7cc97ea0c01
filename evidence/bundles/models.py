from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence.db import Base
from evidence.types import UTCDateTime, new_id


class BundleState(enum.StrEnum):
    queued = "queued"
    building = "building"
    ready = "ready"
    failed = "failed"
    # Deleted because an exhibit in it was disposed of under the retention policy: a copy of
    # footage the force may no longer keep (the clip's tombstone names the bundle).
    disposed = "disposed"


class Bundle(Base):
    __tablename__ = "bundles"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    requested_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)  # 0-100
    key: Mapped[str] = mapped_column(String(255))  # bundles/{id}.zip
    # The ledger size the bundle is pinned to (set at request): a rebuild (a retried task)
    # reads the same entries and checkpoint, so its manifest.json is byte-identical.
    tree_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"include_proxies": bool}
    # SHA-256 of what the bundle is made of (service.bundle_inputs): a request whose inputs
    # hash the same gets this bundle instead of another full copy of every original.
    inputs_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
