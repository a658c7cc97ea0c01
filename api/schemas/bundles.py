"""Court bundles and the force's bundle-signing keys (evidence/bundles/service.py, keys.py)."""

from __future__ import annotations

from typing import Any

from api.schemas import Out


class BundleOut(Out):
    id: str
    case_id: str
    state: str  # queued, building, ready, failed or withdrawn
    progress: int  # 0-100
    sha256: str | None  # of the ZIP, once ready
    size: int | None
    options: dict[str, Any]  # include_proxies, include_redactions
    error: str | None
    created_at: str
    finished_at: str | None


class BundleRequestedOut(Out):
    id: str
    state: str
    reused: bool  # true: an existing bundle of the same exhibits and options (200, not 202)


class BundleKeyOut(Out):
    key_id: str  # hex SHA-256 of the DER public key
    public_pem: str
    valid_from: str
    valid_until: str | None  # null: in force


class BundleKeysOut(Out):
    keys: list[BundleKeyOut]
