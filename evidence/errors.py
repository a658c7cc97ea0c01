"""Exceptions that name the failure.

Every error a user can meet says what went wrong and, where it can, what to do next.
The API maps these to RFC 9457 problem documents; the CLI prints them and exits non-zero.
"""


class EvidenceError(Exception):
    """Base class for every failure the store reports on purpose."""

    status = 500
    title = "Internal error"


class NotFound(EvidenceError):
    status = 404
    title = "Not found"


class Conflict(EvidenceError):
    status = 409
    title = "Conflict"


class InvalidInput(EvidenceError):
    status = 422
    title = "Invalid input"


class AccessDenied(EvidenceError):
    status = 403
    title = "Access denied"


class SecondFactorRequired(AccessDenied):
    """An external recipient signed in without a TOTP code: disclosed evidence stays shut."""

    title = "Two-factor sign-in required"


class TooLarge(EvidenceError):
    """A body or a declaration beyond what was allowed (a part bigger than its URL's size)."""

    status = 413
    title = "Too large"


class UploadLimit(Conflict):
    """A device has as much pending as it may: complete or abandon some uploads first."""

    title = "Upload limit reached"


class NotAuthenticated(EvidenceError):
    status = 401
    title = "Not authenticated"


class HashMismatch(EvidenceError):
    """Bytes did not hash to the SHA-256 they were declared or recorded with."""

    status = 422
    title = "Hash mismatch"

    def __init__(self, message: str, *, expected: str = "", actual: str = ""):
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class ObjectNotFound(NotFound):
    title = "Object not found"


class UploadNotFound(NotFound):
    """No such multipart upload: never created, already completed or aborted, or it belongs
    to another key (S3's NoSuchUpload)."""

    title = "Upload not found"


class StorageUnreachable(ConnectionError):
    """The object store could not be reached at all (S3 down, refused, cut off mid-read).

    Deliberately not an EvidenceError: it says nothing about any object, and being a
    ConnectionError it is what the workers retry with backoff and what stops a scrub run
    without recording anything as missing."""


class WriteOnceViolation(Conflict):
    """A write-once key already holds different bytes."""

    title = "Write-once object already exists"


class ObjectLocked(Conflict):
    """Retention (Object Lock) or a legal hold forbids deleting or replacing the object."""

    title = "Object is locked"


class Disposed(EvidenceError):
    """The clip was disposed of under the retention policy: its bytes are gone for good, and
    the ledger keeps the tombstone that says when, why and who approved it."""

    status = 410
    title = "Disposed of"


class LinkGone(EvidenceError):
    """A public link that worked once and no longer does: expired, used or withdrawn."""

    status = 410
    title = "Link no longer valid"


class UnsupportedFile(EvidenceError):
    """A file whose bytes are not of a kind that is accepted (sniffed, not its name)."""

    status = 415
    title = "Unsupported file"


class LedgerError(EvidenceError):
    title = "Ledger error"


class ProofError(LedgerError):
    """A Merkle inclusion or consistency proof did not verify, or was asked for badly."""

    status = 400
    title = "Proof error"


class SignatureInvalid(LedgerError):
    title = "Signature invalid"


class RangeNotSatisfiable(EvidenceError):
    """A byte range starts beyond the object's end (HTTP 416).

    `size` is the object's length when known, so a route can answer `Content-Range: bytes */size`.
    """

    status = 416
    title = "Range not satisfiable"

    def __init__(self, message: str, *, size: int | None = None):
        super().__init__(message)
        self.size = size


class MediaError(EvidenceError):
    """ffmpeg could not make a derivative (proxy, thumbnail), or could not be run at all.

    `stderr` is the tail of ffmpeg's own error output (paths replaced by placeholders);
    `hint` says what to do next. Probing never raises this for bad media: it reports it.
    """

    status = 422
    title = "Media processing failed"

    def __init__(self, message: str, *, stderr: str = "", hint: str = ""):
        text = message
        if stderr:
            text += f"\nffmpeg said:\n{stderr}"
        if hint:
            text += f"\nWhat to do: {hint}"
        super().__init__(text)
        self.stderr = stderr
        self.hint = hint


class TooManyAttempts(EvidenceError):
    """Too many failed sign-ins from one address: wait `retry_after` seconds (HTTP 429)."""

    status = 429
    title = "Too many attempts"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitUnavailable(EvidenceError):
    """The shared attempt counters (Redis, evidence/ratelimit.py) cannot be reached: the
    request is refused rather than let through uncounted (HTTP 503)."""

    status = 503
    title = "Rate limit store unavailable"


class TimestampInvalid(EvidenceError):
    """An RFC 3161 timestamp token did not verify: wrong data, untrusted or unfit TSA
    certificate, bad signature, wrong nonce, or a reply that was not granted."""

    status = 422
    title = "Timestamp invalid"


class TimestampUnavailable(EvidenceError):
    """The configured time-stamping authority could not be reached or did not answer."""

    status = 503
    title = "Timestamp authority unavailable"


class DiskFull(EvidenceError):
    """The disk the store writes to (objects, work files or the SQLite database) is full.

    Nothing is half-stored: writes go to temporary names and are renamed only when whole.
    Workers retry with backoff, so work resumes by itself once space is freed (HTTP 507).
    """

    status = 507
    title = "Insufficient storage"
    HINT = (
        "the store's disk is full: nothing was half-stored; free space on the store's "
        "disk (or grow it), then retry; queued work resumes by itself"
    )

    def __init__(self, message: str = ""):
        super().__init__(f"{message}: {self.HINT}" if message else self.HINT)


# What an OSError, SQLite or ffmpeg says when the disk is full.
_DISK_FULL_TEXT = ("no space left on device", "database or disk is full", "disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT on our own writes, and for a database driver's error (SQLite's
    "database or disk is full", PostgreSQL's "No space left on device") wrapped by SQLAlchemy."""
    import errno

    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    orig = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError carries the driver's error
    return orig is not None and says_disk_full(str(orig))


def says_disk_full(text: str) -> bool:
    """True if a tool's error output (ffmpeg's stderr) reports a full disk."""
    lowered = text.lower()
    return any(t in lowered for t in _DISK_FULL_TEXT)
