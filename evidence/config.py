"""Settings from `EVIDENCE_*` environment variables.

The defaults form the embedded profile: one machine, a SQLite file, a local object store,
an embedded Celery broker, keys in the data directory. Production overrides the URLs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RetentionRule(BaseModel):
    """How long a category's clips are kept, counted from recording time."""

    keep_days: int | None = Field(ge=1)  # None: kept indefinitely, reviewed every review_days
    review_days: int | None = Field(default=None, ge=1)
    # Disposal without an evidence officer's approval once due (UK BWV practice for
    # non-evidential footage); everything else waits in the review queue.
    auto_dispose: bool = False


SIX_YEARS, TEN_YEARS = 2192, 3653


def _default_retention() -> dict[str, RetentionRule]:
    # MoPI-style review groups: group 3 (most offences) 6 years; group 2 (violent and sexual
    # offences, domestic abuse) kept and reviewed every 10 years.
    six = RetentionRule(keep_days=SIX_YEARS, review_days=365)
    review = RetentionRule(keep_days=None, review_days=TEN_YEARS)
    return {
        "non-evidential": RetentionRule(keep_days=31, auto_dispose=True),
        "evidential": six,
        "public order": six,
        "road traffic": six,
        "stop and search": six,
        "complaint": six,
        "violence": review,
        "domestic abuse": review,
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVIDENCE_", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = None  # default: sqlite:///{data_dir}/evidence.db

    # Object store: "local" (a directory with S3's semantics) or "s3" (MinIO, AWS, Ceph RGW).
    storage_backend: str = "local"
    storage_dir: Path | None = None  # default: {data_dir}/objects
    s3_endpoint: str = "http://127.0.0.1:9000"
    s3_public_endpoint: str | None = None  # the address docks reach, if not s3_endpoint
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "evidence"
    s3_region: str = "us-east-1"
    # GOVERNANCE or COMPLIANCE: the Object Lock mode set on originals.
    object_lock_mode: str = "GOVERNANCE"

    # Where the API is reached; presigned URLs of the local store point here.
    public_url: str = "http://127.0.0.1:8000"

    # The ledger.
    ledger_origin: str = "evidence-store.local/ledger"
    ledger_key_path: Path | None = None  # default: {data_dir}/keys/ledger.key

    # RFC 3161 trusted time for checkpoints (evidence/timestamps.py). No URL: off.
    tsa_url: str | None = None
    # PEM root(s) the TSA's certificate must chain to; replies are checked against them.
    tsa_ca_file: Path | None = None
    tsa_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # How often the scheduler timestamps the latest checkpoint (only if the log grew).
    tsa_interval_seconds: int = Field(default=3600, ge=60)

    broker_url: str | None = None  # default: an embedded SQLite broker in data_dir
    # Redis: a task not acknowledged within this many seconds is delivered again, so a
    # worker that died mid-task (kill -9, power loss) does not lose it.
    broker_visibility_timeout: int = Field(default=3600, ge=1)

    # Where the API replicas share their attempt counters (the sign-in and public-submission
    # rate limits, evidence/ratelimit.py). Unset: the broker's URL when that is Redis, else
    # each process counts in its own memory (right for the embedded profile's one process).
    rate_limit_url: str | None = None

    presign_expiry_seconds: int = Field(default=3600, ge=60)
    # With nginx in front of the API and the local store: the internal location (e.g.
    # "/_footage/", an alias of the storage directory) viewing URLs hand their ranges to with
    # X-Accel-Redirect. Unset: the API serves the bytes itself (docs/media.md, "Viewings").
    viewing_accel_redirect: str | None = None

    # What one device may declare (evidence/ingest): a clip's size, and how much it may have
    # pending (declared, not completed) at once. Pending uploads with no sign of life (a
    # declaration) for `upload_abandon_hours` are aborted by the scheduler.
    upload_max_clip_bytes: int = Field(default=256 * 1024**3, ge=1)
    upload_max_pending_per_device: int = Field(default=200, ge=1)
    upload_max_pending_bytes_per_device: int = Field(default=2 * 1024**4, ge=1)
    upload_abandon_hours: int = Field(default=72, ge=1)

    # Identity (evidence/identity/). "local": users with passwords here get short-lived
    # JWTs; "oidc": only bearer tokens from the force's identity provider; "both".
    identity_mode: Literal["local", "oidc", "both"] = "local"
    jwt_ttl_seconds: int = Field(default=900, ge=60, le=86400)
    jwt_issuer: str = "evidence-store"
    jwt_audience: str = "evidence-api"
    # Ed25519 key the API signs its tokens with; default {data_dir}/keys/jwt.key, made on
    # first use (0600). Every API replica must share it.
    jwt_key_path: Path | None = None
    # Lock-out: this many failed sign-ins in a row locks the account for this long.
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=900, ge=1)
    # Per source address (per API process): failed sign-ins allowed in the window before 429.
    login_rate_limit: int = Field(default=20, ge=1)
    login_rate_window_seconds: int = Field(default=300, ge=1)
    # The force's identity provider. Algorithms are pinned: asymmetric ones only.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    oidc_role_claim: str = "roles"  # a list or a string; a dotted path reaches nested claims
    oidc_username_claim: str = "preferred_username"
    oidc_officer_id_claim: str = "officer_id"
    oidc_name_claim: str = "name"  # the person's full name, printed in statements
    oidc_leeway_seconds: int = Field(default=30, ge=0, le=300)  # clock skew with the IdP
    oidc_jwks_cache_seconds: int = Field(default=300, ge=1)
    # Browser sign-in through the IdP (the UI's authorization code flow with PKCE, see
    # docs/ui.md). All three of the endpoints and client id are needed for the button; the
    # redirect URI registered at the IdP is {public_url}/ui/login/oidc/callback.
    oidc_authorization_url: str | None = None
    oidc_token_url: str | None = None
    oidc_client_id: str | None = None
    # Only for a confidential client (sent with HTTP Basic); a public client relies on PKCE.
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid profile"  # space-separated; "openid" is always sent
    oidc_display_name: str = "your force account"  # the button: "Sign in with ..."
    oidc_timeout_seconds: float = Field(default=10.0, gt=0, le=60)  # the token endpoint call

    # Reasons a user picks from to play or download footage (plus free text).
    access_reasons: list[str] = Field(
        default_factory=lambda: [
            "investigation",
            "charging decision",
            "disclosure",
            "court preparation",
            "complaint or misconduct review",
            "audit",
            "other",
        ]
    )
    categories: list[str] = Field(
        default_factory=lambda: [
            "non-evidential",
            "evidential",
            "public order",
            "violence",
            "domestic abuse",
            "road traffic",
            "stop and search",
            "complaint",
        ]
    )

    # Retention (evidence/retention): a rule per category (JSON in EVIDENCE_RETENTION_RULES);
    # a category without a rule follows "evidential". Uncategorised clips follow
    # `retention_default_category` (non-evidential, as UK BWV practice: 31 days unless marked).
    retention_rules: dict[str, RetentionRule] = Field(default_factory=_default_retention)
    retention_default_category: str = "non-evidential"
    # A change of category or policy never makes anything due sooner than this many days
    # from the change: it schedules, so people can see and stop a mistake.
    retention_notice_days: int = Field(default=7, ge=0)
    retention_sweep_seconds: int = Field(default=3600, ge=60)

    # Public submissions (docs/public-submissions.md): an invitation's defaults and bounds,
    # the chunk size the browser sends, how long a rejected file is kept, and the requests a
    # link or a source address may make per `submission_rate_window_seconds`.
    submission_expiry_days: int = Field(default=3, ge=1, le=30)
    submission_max_files: int = Field(default=10, ge=1, le=100)
    submission_max_bytes: int = Field(default=4 * 1024**3, ge=1024)
    submission_chunk_bytes: int = Field(default=1024 * 1024, ge=1024, le=8 * 1024 * 1024)
    submission_rejected_keep_days: int = Field(default=90, ge=1)
    submission_rate_window_seconds: int = Field(default=600, ge=1)
    submission_rate_per_link: int = Field(default=10000, ge=1)
    submission_rate_per_address: int = Field(default=20000, ge=1)
    submission_bad_tokens_per_address: int = Field(default=20, ge=1)

    # Scrubbing (evidence/scrub/service.py): the scheduler re-hashes this many objects per run, in
    # batches (one ledger entry per batch), at most this fast, so playback is not starved.
    scrub_interval_seconds: int = Field(default=3600, ge=60)
    scrub_objects_per_run: int = Field(default=500, ge=1)
    scrub_batch_size: int = Field(default=100, ge=1, le=10000)
    scrub_rate_mb_per_s: float = Field(default=50.0, gt=0)

    # Monitoring (docs/deploy.md): GET /metrics answers only a scraper presenting this token
    # as `Authorization: Bearer ...`; unset, metrics are not served at all.
    metrics_token: SecretStr | None = None
    # /readyz says "disk full" for a local object store with less free space than this.
    storage_min_free_mb: int = Field(default=64, ge=0)
    # No request body beyond this reaches a route (object parts excepted: their presigned URL
    # signs their size). A dock's declaration with the largest sidecar it sends fits easily.
    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)

    # E-mail notifications (evidence/notifications.py, docs/notifications.md): off unless
    # `smtp_host` is set. "starttls" upgrades a plain connection (port 587), "tls" speaks TLS
    # from the start (port 465), "none" only for a relay on the same host or network.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_from: str = "evidence-store@localhost"
    smtp_username: str | None = None
    # The password from the environment, or from a file (a container secret); the file wins.
    smtp_password: SecretStr | None = None
    smtp_password_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    # How often a message a server turned away for now (4xx, no connection) is tried again.
    smtp_max_retries: int = Field(default=8, ge=0, le=50)
    # Links in messages start here (the address people open in a browser); default public_url.
    notify_public_url: str | None = None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve()}/evidence.db"

    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "objects").resolve()

    def resolved_ledger_key_path(self) -> Path:
        return (self.ledger_key_path or self.data_dir / "keys" / "ledger.key").resolve()

    def resolved_smtp_password(self) -> str | None:
        if self.smtp_password_file is not None:
            return Path(self.smtp_password_file).read_text().strip()
        return self.smtp_password.get_secret_value() if self.smtp_password else None

    def resolved_notify_public_url(self) -> str:
        return (self.notify_public_url or self.public_url).rstrip("/")

    def secrets_dir(self) -> Path:
        return (self.data_dir / "keys").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
