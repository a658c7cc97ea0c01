"""Set up and check the object store before the services start (`evidence storage init|check`).

Production stores originals in an S3 bucket that must have versioning and Object Lock. Object
Lock can only be switched on when a bucket is created (MinIO, Ceph RGW; AWS allows it later
only through support), and it brings versioning with it. So `init_storage` creates a missing
bucket with Object Lock, and refuses an existing bucket without it: nothing can make such a
bucket safe in place.

The bucket must not have a *default* retention rule either: the store locks each original
itself (EVIDENCE_OBJECT_LOCK_MODE, until the clip's retention date), and it must be able to
delete its staging objects (`tmp/`) and promoted dock uploads (`incoming/`), which a default
rule would lock too.

The local backend enforces write-once, retention and holds in this code; its checks are that
the directory exists and is writable.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError as Urllib3Error

from evidence.config import Settings
from evidence.errors import InvalidInput, StorageUnreachable
from evidence.verify.report import Check

LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
_NO_LOCK_CODES = {"ObjectLockConfigurationNotFoundError"}

REFUSAL = (
    "the store refuses to run on a bucket without Object Lock: originals in it could be "
    "overwritten or deleted. Object Lock can only be enabled when a bucket is created, so "
    "create a new one: set EVIDENCE_S3_BUCKET to a new name and run `evidence storage init`. "
    "If this bucket already holds evidence, copy its objects into the new bucket (e.g. "
    "`mc mirror`), switch the store to it, then run `evidence retention relock` and "
    "`evidence scrub` (docs/backup.md, docs/deploy.md)"
)


def check_storage(settings: Settings) -> list[Check]:
    """Read-only checks of the configured object store, one per requirement, in order.
    Stops at the first check the later ones depend on (a missing bucket has no config)."""
    backend = settings.storage_backend.lower()
    if backend == "local":
        return _check_local(settings.resolved_storage_dir())
    if backend == "s3":
        return _check_s3(settings)
    return [
        Check(
            "storage backend",
            False,
            f"EVIDENCE_STORAGE_BACKEND must be 'local' or 's3', not {backend!r}",
        )
    ]


def init_storage(settings: Settings) -> list[Check]:
    """Create what is missing (the S3 bucket with Object Lock, or the local directory), then
    run `check_storage`. Idempotent: an existing, correct store is left as it is. The first
    entry says what was done."""
    backend = settings.storage_backend.lower()
    if backend == "local":
        from evidence.storage.local import LocalStore

        LocalStore(settings)  # creates the directory layout (0700) if missing
        done = Check("create", True, f"directory {settings.resolved_storage_dir()} ready")
        return [done, *check_storage(settings)]
    if backend != "s3":
        return check_storage(settings)
    mode = _lock_mode_check(settings)
    if not mode.ok:
        return [mode]
    try:
        done = _create_bucket(_s3_client(settings), settings.s3_bucket, settings.s3_region)
    except (S3Error, Urllib3Error, OSError, InvalidInput) as exc:
        return [Check("create bucket", False, _unreachable(settings, exc))]
    return [done, *check_storage(settings)]


def failures(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]


# --- S3 ---------------------------------------------------------------------------------


def _s3_client(settings: Settings) -> Minio:
    from evidence.storage.s3 import _client

    return _client(settings.s3_endpoint, settings)


def _create_bucket(client: Minio, bucket: str, region: str) -> Check:
    if client.bucket_exists(bucket):
        return Check("create bucket", True, f"{bucket!r} exists already; left as it is")
    try:
        client.make_bucket(bucket, location=region, object_lock=True)
    except S3Error as e:  # another init won the race: fine, the checks judge the bucket
        if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        return Check("create bucket", True, f"{bucket!r} was created meanwhile by someone else")
    return Check("create bucket", True, f"created {bucket!r} with Object Lock (and versioning)")


def _check_s3(settings: Settings) -> list[Check]:
    bucket = settings.s3_bucket
    checks = [_lock_mode_check(settings)]
    try:
        client = _s3_client(settings)
        exists = client.bucket_exists(bucket)
    except (S3Error, Urllib3Error, OSError, InvalidInput) as exc:
        return [*checks, Check("bucket exists", False, _unreachable(settings, exc))]
    if not exists:
        return [
            *checks,
            Check(
                "bucket exists",
                False,
                f"no bucket {bucket!r} at {settings.s3_endpoint}; "
                "create it with `evidence storage init`",
            ),
        ]
    checks.append(Check("bucket exists", True, f"{bucket!r} at {settings.s3_endpoint}"))
    try:
        lock, *rest = _object_lock_checks(client, bucket)
        checks += [lock, _versioning_check(client, bucket), *rest]
    except (S3Error, Urllib3Error, OSError) as exc:
        checks.append(Check("bucket configuration readable", False, _unreachable(settings, exc)))
    return checks


def _lock_mode_check(settings: Settings) -> Check:
    mode = settings.object_lock_mode.upper()
    if mode not in LOCK_MODES:
        return Check(
            "object lock mode",
            False,
            f"EVIDENCE_OBJECT_LOCK_MODE must be GOVERNANCE or COMPLIANCE, not {mode!r}",
        )
    return Check("object lock mode", True, f"originals are locked in {mode} mode")


def _versioning_check(client: Minio, bucket: str) -> Check:
    status = client.get_bucket_versioning(bucket).status
    if status == "Enabled":
        return Check("versioning", True, "Enabled")
    return Check(
        "versioning",
        False,
        f"{status or 'never enabled'}, not Enabled: every overwrite and delete must keep "
        f"the old version; enable it (e.g. `mc version enable ALIAS/{bucket}`)",
    )


def _object_lock_checks(client: Minio, bucket: str) -> list[Check]:
    try:
        config = client.get_object_lock_config(bucket)
    except S3Error as e:
        if e.code in _NO_LOCK_CODES:
            return [Check("object lock", False, f"not enabled on {bucket!r}; {REFUSAL}")]
        raise
    lock = Check("object lock", True, "enabled")
    if config.mode is None:
        return [lock, Check("no default retention", True, "the store locks each original itself")]
    rule = f"{config.mode} {config.duration} {config.duration_unit}"
    return [
        lock,
        Check(
            "no default retention",
            False,
            f"the bucket locks every new object ({rule}), including staging (tmp/) and dock "
            "uploads (incoming/) that the store must delete; remove the default rule (e.g. "
            f"`mc retention clear --default ALIAS/{bucket}`): the store locks originals itself",
        ),
    ]


def _unreachable(settings: Settings, exc: Exception) -> str:
    if isinstance(exc, (InvalidInput, StorageUnreachable)):  # already says what to check
        return str(exc)
    if isinstance(exc, S3Error):
        what = f"{exc.code}: {exc.message}"
        if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            what += "; check EVIDENCE_S3_ACCESS_KEY and EVIDENCE_S3_SECRET_KEY"
        return what
    return (
        f"cannot reach S3 at {settings.s3_endpoint} ({type(exc).__name__}: {exc}); "
        "check EVIDENCE_S3_ENDPOINT and that the server is up"
    )


# --- local -------------------------------------------------------------------------------


def _check_local(root: Path) -> list[Check]:
    enforced = Check(
        "retention enforced",
        True,
        "by the local store itself (write-once files, retention and holds in "
        ".meta/); the S3 backend leaves it to the bucket's Object Lock",
    )
    if not root.is_dir():
        return [
            enforced,
            Check(
                "directory exists",
                False,
                f"no directory {root}; create it with `evidence storage init`",
            ),
        ]
    checks = [enforced, Check("directory exists", True, str(root))]
    try:
        # An unnamed temporary file: proves writes work and leaves nothing behind.
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        checks.append(
            Check(
                "directory writable",
                False,
                f"{root}: {exc.strerror or exc}; give the service user write access",
            )
        )
    else:
        checks.append(Check("directory writable", True, str(root)))
    return checks
