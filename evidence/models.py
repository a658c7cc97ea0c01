"""Imports every domain's models so `Base.metadata` (and Alembic) sees all tables."""

from evidence.accounts.models import (
    AccountRequest,
    Device,
    DeviceKind,
    Enrolment,
    Organisation,
    OrganisationKind,
    RecoveryCode,
    RevokedToken,
    Role,
    User,
)
from evidence.bundles.models import Bundle, BundleState
from evidence.cameras.models import Camera, CameraAssignment, ClipAttribution, ClipName
from evidence.cases.models import AccessGrant, Case, CaseItem, CaseMember, Share, ShareExhibit
from evidence.clips.models import Bookmark, Clip, ClipState, ClipTag, Derivative
from evidence.db import Base
from evidence.ingest.models import Upload, UploadState
from evidence.ledger.models import (
    CheckpointTimestamp,
    LedgerEntry,
    LedgerNode,
    LedgerRef,
    SignedCheckpoint,
)
from evidence.notifications import Notification
from evidence.outbox import OutboxMessage
from evidence.retention.models import Disposal, Hold
from evidence.scrub.models import ScrubCursor
from evidence.submissions.models import FileState, Invitation, SubmissionFile

__all__ = [
    "AccessGrant",
    "AccountRequest",
    "Base",
    "Bookmark",
    "Bundle",
    "BundleState",
    "Camera",
    "CameraAssignment",
    "Case",
    "CaseItem",
    "CaseMember",
    "CheckpointTimestamp",
    "Clip",
    "ClipAttribution",
    "ClipName",
    "ClipState",
    "ClipTag",
    "Derivative",
    "Device",
    "DeviceKind",
    "Disposal",
    "Enrolment",
    "FileState",
    "Hold",
    "Invitation",
    "LedgerEntry",
    "LedgerNode",
    "LedgerRef",
    "Notification",
    "OutboxMessage",
    "RecoveryCode",
    "RevokedToken",
    "Role",
    "ScrubCursor",
    "Share",
    "ShareExhibit",
    "Organisation",
    "OrganisationKind",
    "SignedCheckpoint",
    "SubmissionFile",
    "Upload",
    "UploadState",
    "User",
]
