"""Imports every domain's models so `Base.metadata` (and Alembic) sees all tables."""

from evidence.accounts.models import (
    Device,
    DeviceKind,
    Enrolment,  # noqa: F401
    RevokedToken,
    Role,
    User,
)
from evidence.cases.models import AccessGrant, Case, CaseItem, CaseMember, Share
from evidence.clips.models import Bookmark, Clip, ClipState, ClipTag, Derivative
from evidence.db import Base
from evidence.ingest.models import Upload, UploadState
from evidence.ledger.models import Checkpoint, LedgerEntry, LedgerNode, LedgerRef

__all__ = [
    "AccessGrant",
    "Base",
    "Bookmark",
    "RevokedToken",
    "CaseMember",
    "ClipTag",
    "Case",
    "CaseItem",
    "Checkpoint",
    "Clip",
    "ClipState",
    "Derivative",
    "Device",
    "DeviceKind",
    "LedgerEntry",
    "LedgerNode",
    "LedgerRef",
    "Role",
    "Share",
    "Upload",
    "UploadState",
    "User",
]
from evidence.bundles.models import Bundle, BundleState  # noqa: E402,F401  (court bundles)
from evidence.cameras.models import (
    ClipAttribution,  # noqa: E402,F401
    )  # the camera register and attribution
from evidence.outbox import OutboxMessage  # noqa: E402,F401  (work for the workers)
from evidence.retention.models import Disposal, Hold, ScrubCursor  # noqa: E402,F401  (retention, scrubbing)
from evidence.timestamps import CheckpointTimestamp  # noqa: E402,F401  (RFC 3161 tokens)
