"""Viewings: access checked and ledgered once, then the bytes served without the database.

A person opens a viewing of a clip's footage (the proxy, a redacted copy, the original) or of a
court bundle. Opening it runs the policy and writes the one ledger entry for that viewing
(through `open_footage` / `open_download`, which keep their own sitting rule), and answers a
short-lived signed URL, `/api/v1/viewings/{token}`. Every Range request of the player or the
download then goes to that URL, and `api/viewing.py` serves it from the token alone: no
query, no policy, no ledger scan per request (docs/media.md, "Viewings").

The token is `base64url(payload) "." base64url(HMAC-SHA256(key, "viewing.v1\\n" payload))`,
with the key in the secrets directory (`viewing.key`, made once like the other keys; every API
replica must share it). The payload binds the object key, what it is (clip and kind, or
bundle), its SHA-256 and size (the ETag and the Range arithmetic), its media type and download
name, the viewer and the expiry. Change one byte and the signature fails; there is no field a
holder could widen to another object. The token is a capability: whoever holds it may fetch
those bytes until it expires, which is why it lives `LIFETIME` and never longer.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evidence import clock
from evidence.access import Principal
from evidence.bundles.service import open_download
from evidence.clips.service import open_footage
from evidence.context import Context
from evidence.errors import AccessDenied, EvidenceError
from evidence.keyfiles import create_once, read_private

LIFETIME = dt.timedelta(minutes=15)
"""How long a viewing URL serves. The player opens a new viewing when one runs out (ui.js)."""

KEY_FILE = "viewing.key"
ROUTE = "/api/v1/viewings/"  # served by api/viewing.py
_DOMAIN = b"viewing.v1\n"  # a signature over a viewing token is good for nothing else
MAX_TOKEN = 2048


class ViewingRefused(AccessDenied):
    """The viewing URL cannot be used: expired, altered, or not a viewing token."""

    title = "Viewing refused"


@dataclass(frozen=True)
class Grant:
    """What a valid token lets its holder fetch."""

    key: str  # the object in the store
    subject: str  # "clip:{id}:{kind}" or "bundle:{id}": what the ledger entry is about
    sha256: str  # the ETag
    size: int
    media_type: str
    filename: str | None  # a download name (Content-Disposition), None to play inline
    viewer: str  # the user id the ledger entry names
    expires: int  # Unix seconds

    def payload(self) -> dict[str, Any]:
        return {
            "k": self.key,
            "s": self.subject,
            "h": self.sha256,
            "z": self.size,
            "t": self.media_type,
            "n": self.filename,
            "u": self.viewer,
            "x": self.expires,
        }


@dataclass(frozen=True)
class Viewing:
    """An opened viewing: the URL to fetch and until when it serves."""

    url: str
    expires_at: dt.datetime
    grant: Grant

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "expires_at": clock.rfc3339(self.expires_at),
            "media_type": self.grant.media_type,
            "size": self.grant.size,
            "sha256": self.grant.sha256,
        }


def load_or_create_key(secrets_dir: Path) -> bytes:
    """The viewing key: 32 random bytes (hex, mode 0600), made once, then reused."""
    path = secrets_dir / KEY_FILE
    create_once(path, (secrets.token_hex(32) + "\n").encode())
    try:
        key = bytes.fromhex(read_private(path, "viewing key").decode().strip())
    except ValueError:
        key = b""
    if len(key) < 32:
        raise EvidenceError(f"{path} is not a viewing key (64 hex digits); remove it to regenerate")
    return key


def open_clip_viewing(
    ctx: Context,
    principal: Principal,
    clip_id: str,
    kind: str,
    *,
    reason: str | None,
    source_ip: str | None,
) -> Viewing:
    """Check access and ledger the viewing (`open_footage`), then sign its URL."""
    footage = open_footage(ctx, principal, clip_id, kind, reason=reason, source_ip=source_ip)
    return _sign(
        ctx,
        Grant(
            key=footage.key,
            subject=f"clip:{clip_id}:{kind}",
            sha256=footage.info.sha256 or "",  # "": no ETag (an object whose record is lost)
            size=footage.info.size,
            media_type=footage.media_type,
            filename=footage.filename if kind == "original" else None,
            viewer=principal.user_id,
            expires=_expiry(),
        ),
    )


def open_bundle_viewing(
    ctx: Context,
    principal: Principal,
    bundle_id: str,
    *,
    reason: str | None,
    source_ip: str | None,
) -> Viewing:
    """Check access and ledger the download (`open_download`), then sign its URL."""
    info, _ = open_download(ctx, principal, bundle_id, reason=reason, source_ip=source_ip)
    return _sign(
        ctx,
        Grant(
            key=info.key,
            subject=f"bundle:{bundle_id}",
            sha256=info.sha256 or "",
            size=info.size,
            media_type="application/zip",
            filename=f"bundle-{bundle_id}.zip",
            viewer=principal.user_id,
            expires=_expiry(),
        ),
    )


def _expiry() -> int:
    return int((clock.now() + LIFETIME).timestamp())


def _sign(ctx: Context, grant: Grant) -> Viewing:
    token = sign(ctx.viewing_key, grant)
    return Viewing(ROUTE + token, _utc(grant.expires), grant)


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def sign(key: bytes, grant: Grant) -> str:
    body = _b64(json.dumps(grant.payload(), separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64(_mac(key, body))}"


def verify(key: bytes, token: str, now: float) -> Grant:
    """The grant a token carries, if it is ours, unaltered and unexpired (`now`: Unix seconds).
    Pure: no database, no store; the serving path calls it once per Range request."""
    body, dot, mac = token.partition(".")
    if not dot or len(token) > MAX_TOKEN:
        raise ViewingRefused("this is not a viewing URL; open a viewing of the footage again")
    try:
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
    except (ValueError, TypeError):
        given = b""
    if not hmac.compare_digest(given, _mac(key, body)):
        raise ViewingRefused(
            "the viewing URL was altered or was signed by another store; open the footage again"
        )
    try:
        p = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        grant = Grant(
            key=str(p["k"]),
            subject=str(p["s"]),
            sha256=str(p["h"]),
            size=int(p["z"]),
            media_type=str(p["t"]),
            filename=p["n"] if isinstance(p["n"], str) else None,
            viewer=str(p["u"]),
            expires=int(p["x"]),
        )
    except (ValueError, KeyError, TypeError) as exc:  # signed by us, so only a format change
        raise ViewingRefused("the viewing URL is of an unknown format; open it again") from exc
    if grant.expires <= now:
        raise ViewingRefused(
            f"the viewing URL expired at {clock.rfc3339(_utc(grant.expires))}; open the "
            "footage again (the player does this itself)"
        )
    return grant


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, _DOMAIN + body.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
