"""What each context keeps for identity: the key local tokens are signed with, the
per-address failure window (evidence/identity/lockout.py; in Redis or in memory,
evidence/ratelimit.py) and the IdP's key cache; and the
check that refuses settings which would make token checking unsafe.

The local signing key is Ed25519 (`{data_dir}/keys/jwt.key`, 0600, made on first use).
Ed25519 rather than HS256: the key that verifies can be handed out without handing out the
power to mint tokens.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.config import Settings
from evidence.context import Context
from evidence.errors import EvidenceError, InvalidInput
from evidence.keyfiles import create_once, read_private
from evidence.ratelimit import AttemptWindow, window_for

# What an IdP may sign with. Symmetric (HS*) and "none" are never allowed: with HS* the
# IdP's public key would become an HMAC secret (the classic key-confusion forgery).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


# -- per-context state -------------------------------------------------------------------------


@dataclass
class _State:
    settings: Settings
    failures: AttemptWindow
    signing_key: Ed25519PrivateKey
    key_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    _jwks: jwt.PyJWKClient | None = None

    @property
    def verify_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    def jwks(self) -> jwt.PyJWKClient:
        """The IdP's keys, fetched lazily and cached (refetched on an unknown `kid`)."""
        with self.lock:
            if self._jwks is None:
                s = self.settings
                self._jwks = jwt.PyJWKClient(
                    str(s.oidc_jwks_url),
                    cache_jwk_set=True,
                    lifespan=s.oidc_jwks_cache_seconds,
                    timeout=10,
                )
            return self._jwks


_state_lock = threading.Lock()


def _state(ctx: Context) -> _State:
    # Kept on the context (which the accounts/identity code does not own) so each context,
    # that is each app or test, has its own rate-limit window, TOTP memory and JWKS cache.
    state = ctx.identity_state
    if state is not None:
        return state
    with _state_lock:
        state = ctx.identity_state
        if state is None:
            check_identity_settings(ctx.settings)
            key = load_or_create_jwt_key(jwt_key_path(ctx.settings))
            state = _State(
                settings=ctx.settings,
                failures=window_for(
                    ctx.settings,
                    "sign-in",
                    ctx.settings.login_rate_limit,
                    ctx.settings.login_rate_window_seconds,
                ),
                signing_key=key,
                key_id=_key_id(key.public_key()),
            )
            ctx.identity_state = state
    return state


def check_identity_settings(settings: Settings) -> None:
    """Refuse settings that would make token checking unsafe or impossible (a 500: the
    operator, not the caller, has to fix it)."""
    if settings.identity_mode in ("oidc", "both"):
        missing = [
            n for n in ("oidc_issuer", "oidc_audience", "oidc_jwks_url") if not getattr(settings, n)
        ]
        if missing:
            names = ", ".join(f"EVIDENCE_{n.upper()}" for n in missing)
            raise EvidenceError(f"identity_mode={settings.identity_mode} needs {names}")
        bad = [a for a in settings.oidc_algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not settings.oidc_algorithms:
            raise EvidenceError(
                f"EVIDENCE_OIDC_ALGORITHMS may only name asymmetric algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); refused: {bad or 'an empty list'}"
            )
        if settings.oidc_issuer == settings.jwt_issuer:
            raise EvidenceError("EVIDENCE_OIDC_ISSUER must differ from EVIDENCE_JWT_ISSUER")


# -- the local signing key ----------------------------------------------------------------------


def jwt_key_path(settings: Settings) -> Path:
    return (settings.jwt_key_path or settings.secrets_dir() / "jwt.key").resolve()


def load_or_create_jwt_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key local tokens are signed with; made on first use, kept 0600.

    Creation is atomic (write a temporary file, then hard-link it into place), so API
    replicas starting together on a shared volume agree on one key.
    """
    if not path.exists():
        create_once(
            path,
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    key = serialization.load_pem_private_key(read_private(path, "token signing key"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{path} does not hold an Ed25519 private key")
    return key


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]
