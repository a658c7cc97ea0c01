"""Settings from `EVIDENCE_*` environment variables.

The defaults form the embedded profile: one machine, a SQLite file, a local object store,
an embedded Celery broker, keys in the data directory. Production overrides the URLs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    broker_url: str | None = None  # default: an embedded SQLite broker in data_dir
    # Redis: a task not acknowledged within this many seconds is delivered again, so a
    # worker that died mid-task (kill -9, power loss) does not lose it.
    broker_visibility_timeout: int = Field(default=3600, ge=1)

    presign_expiry_seconds: int = Field(default=3600, ge=60)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve()}/evidence.db"

    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "objects").resolve()

    def resolved_ledger_key_path(self) -> Path:
        return (self.ledger_key_path or self.data_dir / "keys" / "ledger.key").resolve()

    def secrets_dir(self) -> Path:
        return (self.data_dir / "keys").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
