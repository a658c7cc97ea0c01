"""Every type of ledger entry the store writes, with the words people read for it.

One list, used by every writer and reader: the clip page's custody timeline, the auditor's
access log and alerts, and the continuity statement all take their names and groupings
from here, so they cannot disagree. A test (tests/test_catalogue.py) walks the code for
every entry written and fails on a type that is not listed here.

Groups (`Kind`) say what an entry is evidence of:
- custody: what happened to the bytes (docked, verified, derived, disposed of);
- access: someone looked at or took footage (a view, a download, a bundle taken);
- annotation: tags, categories, bookmarks on a clip;
- case: case work and disclosure (exhibits, members, shares, bundles made);
- retention: schedules, reviews, holds and disposal decisions;
- sign_in: sign-ins, sign-outs and lock-outs;
- privileged: administration (accounts, devices, grants, approvals, keys, the camera register);
- oversight: reading the audit trail itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    custody = "custody"
    access = "access"
    annotation = "annotation"
    case = "case"
    retention = "retention"
    sign_in = "sign_in"
    privileged = "privileged"
    oversight = "oversight"


@dataclass(frozen=True)
class EntryType:
    name: str
    label: str  # what a reader sees: "Original downloaded", never "clip.downloaded"
    kind: Kind


_K = Kind
CATALOGUE: dict[str, EntryType] = {
    t.name: t
    for t in (
        # -- the bytes: docking, verification, derivation, disposal --------------------------------
        EntryType("upload.declared", "Declared by the dock (hash, size, file name)", _K.custody),
        EntryType(
            "upload.duplicate", "Docked again: the same bytes are already stored", _K.custody
        ),
        EntryType("upload.completed", "Upload completed by the dock", _K.custody),
        EntryType(
            "upload.rejected",
            "Upload rejected: the bytes did not match the declared hash",
            _K.custody,
        ),
        EntryType("upload.abandoned", "Upload abandoned by the dock", _K.custody),
        EntryType("clip.ingested", "Verified (SHA-256) and stored write-once", _K.custody),
        EntryType(
            "clip.attributed", "Officer or camera corrected by an evidence officer", _K.custody
        ),
        EntryType("derivative.created", "Derived copy made", _K.custody),
        EntryType("redaction.requested", "Redacted copy requested", _K.custody),
        EntryType("redaction.failed", "Redacted copy could not be made", _K.custody),
        EntryType("clip.disposed", "Disposed of under the retention policy", _K.custody),
        EntryType("checkpoint.timestamped", "Ledger checkpoint timestamped by a TSA", _K.custody),
        # -- footage from the public (evidence/submissions) ----------------------------------------
        EntryType("submission.invited", "Upload link sent to a member of the public", _K.case),
        EntryType("submission.withdrawn", "Upload link withdrawn", _K.case),
        EntryType("submission.file_received", "File received from the public, hashed", _K.custody),
        EntryType("submission.file_refused", "File from the public refused", _K.custody),
        EntryType("submission.submitted", "Submitted by a member of the public", _K.custody),
        EntryType("submission.accepted", "Public submission accepted as evidence", _K.custody),
        EntryType("submission.rejected", "Public submission rejected", _K.custody),
        EntryType("submission.disposed", "Rejected public submission disposed of", _K.retention),
        # -- looking at or taking footage ----------------------------------------------------------
        EntryType("clip.viewed", "Viewed", _K.access),
        EntryType("clip.downloaded", "Original downloaded", _K.access),
        EntryType("clip.thumbnail_viewed", "Thumbnail shown in a list", _K.access),
        EntryType("case.accessed", "Case opened by a recipient", _K.access),
        EntryType("bundle.downloaded", "Court bundle downloaded", _K.access),
        # -- notes on a clip -----------------------------------------------------------------------
        EntryType("clip.tagged", "Tag added", _K.annotation),
        EntryType("clip.untagged", "Tag removed", _K.annotation),
        EntryType("clip.categorised", "Category set", _K.annotation),
        EntryType("clip.bookmarked", "Bookmark added", _K.annotation),
        # -- cases and disclosure ------------------------------------------------------------------
        EntryType("case.created", "Case opened", _K.case),
        EntryType("case.exhibit_added", "Added to a case as an exhibit", _K.case),
        EntryType("exhibit.referenced", "Exhibit reference changed", _K.case),
        EntryType("case.member_added", "Case member added", _K.case),
        EntryType("case.closed", "Case closed: exhibits reviewed under their rules", _K.case),
        EntryType("case.reopened", "Case reopened: exhibits kept again", _K.case),
        EntryType("share.created", "Shared", _K.case),
        EntryType("notification.sent", "Notified by e-mail", _K.case),
        EntryType("share.revoked", "Share revoked", _K.case),
        EntryType("bundle.requested", "Court bundle requested", _K.case),
        EntryType("bundle.exported", "Court bundle produced", _K.case),
        # -- retention -----------------------------------------------------------------------------
        EntryType("retention.scheduled", "Retention scheduled", _K.retention),
        EntryType("disposal.queued", "Due for disposal review", _K.retention),
        EntryType("disposal.approved", "Disposal approved", _K.retention),
        EntryType("disposal.retained", "Kept after review", _K.retention),
        EntryType("disposal.cancelled", "Disposal cancelled", _K.retention),
        EntryType("hold.placed", "Legal hold placed", _K.retention),
        EntryType("hold.released", "Legal hold released", _K.retention),
        # -- signing in ----------------------------------------------------------------------------
        EntryType("user.logged_in", "Signed in", _K.sign_in),
        EntryType("user.logged_out", "Signed out", _K.sign_in),
        EntryType("user.locked_out", "Account locked out after failed sign-ins", _K.sign_in),
        # -- administration ------------------------------------------------------------------------
        EntryType("user.created", "Account created", _K.privileged),
        EntryType(
            "user.provisioned", "Account provisioned from the identity provider", _K.privileged
        ),
        EntryType("user.updated", "Account changed", _K.privileged),
        EntryType("user.reset", "Account reset by an administrator", _K.privileged),
        EntryType("user.unlocked", "Account unlocked", _K.privileged),
        EntryType("organisation.created", "Organisation added", _K.privileged),
        EntryType("user.organisation_set", "Account's organisation changed", _K.privileged),
        EntryType("user.enrolment_issued", "Enrolment link issued", _K.privileged),
        EntryType("user.enrolled", "Enrolment completed", _K.privileged),
        EntryType("user.password_changed", "Password changed", _K.privileged),
        EntryType("user.totp_enrolment_started", "Two-factor enrolment started", _K.privileged),
        EntryType("user.totp_enabled", "Two-factor sign-in turned on", _K.privileged),
        EntryType("user.recovery_codes_issued", "Recovery codes issued", _K.privileged),
        EntryType("approval.requested", "Second approval requested", _K.privileged),
        EntryType("approval.approved", "Approved by a second administrator", _K.privileged),
        EntryType("approval.refused", "Refused by a second administrator", _K.privileged),
        EntryType("grant.created", "Footage grant created", _K.privileged),
        EntryType("grant.revoked", "Footage grant revoked", _K.privileged),
        EntryType("device.created", "Device registered", _K.privileged),
        EntryType("device.updated", "Device changed", _K.privileged),
        EntryType("key.rotated", "Signing key rotated", _K.privileged),
        EntryType("camera.registered", "Camera registered", _K.privileged),
        EntryType("camera.state_changed", "Camera state changed", _K.privileged),
        EntryType("camera.assigned", "Camera assigned to an officer", _K.privileged),
        EntryType("camera.assignment_ended", "Camera assignment ended", _K.privileged),
        # -- oversight -----------------------------------------------------------------------------
        EntryType("audit.log_read", "Audit trail read", _K.oversight),
    )
}


def entry_type(name: str) -> EntryType:
    """The catalogue's record of `name`; an unknown type (an entry from a newer version of
    the store) reads as itself rather than failing."""
    return CATALOGUE.get(name) or EntryType(name, name, Kind.custody)


def label(name: str) -> str:
    return entry_type(name).label


def require_listed(names: tuple[str, ...]) -> None:
    """For a module's own selection of types (e.g. the alerts): each must be in the catalogue,
    checked at import so a misspelt type cannot silently select nothing."""
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise LookupError(f"not ledger entry types (evidence/ledger/catalogue.py): {unknown}")


def of_kind(*kinds: Kind) -> tuple[str, ...]:
    """Every type in `kinds`, in catalogue order (for queries: `type IN (...)`)."""
    return tuple(t.name for t in CATALOGUE.values() if t.kind in kinds)


ACCESS = of_kind(Kind.access)
"""Someone looked at or took footage: the statement lists these as accesses."""

AUDITED = of_kind(Kind.access, Kind.sign_in, Kind.privileged, Kind.retention, Kind.oversight)
"""What the auditor's access log shows: every access, sign-in, administrative action and
retention decision, and each reading of the log itself."""
