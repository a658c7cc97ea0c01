"""Imports every domain's models so `Base.metadata` (and Alembic) sees all tables."""

from evidence.accounts.models import Device, DeviceKind, Role, User
from evidence.cases.models import Case, CaseItem, Share
from evidence.clips.models import Clip, ClipState, Derivative
from evidence.db import Base
from evidence.ingest.models import Upload, UploadState
from evidence.ledger.models import Checkpoint, LedgerEntry, LedgerNode, LedgerRef

__all__ = [
    "Base", "Case", "CaseItem", "Checkpoint", "Clip", "ClipState", "Derivative", "Device",
    "DeviceKind", "LedgerEntry", "LedgerNode", "LedgerRef", "Role", "Share", "Upload",
    "UploadState", "User",
]
