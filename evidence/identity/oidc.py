"""OIDC: bearer tokens from the force's identity provider, and the UI's browser sign-in
through it.

Bearer tokens are checked against the IdP's JWKS (issuer, audience, expiry and algorithm
pinned to `oidc_algorithms`, asymmetric only). The role comes from a claim; first sight of
a person provisions a User row (with an unusable password, `OIDC_HASH_PREFIX`) and a
`user.provisioned` ledger entry, so the ledger can name them. The UI signs people in through
the IdP with the authorization code flow and PKCE (`oidc_authorization_url`,
`oidc_sign_in`, at the end of this module).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from evidence import clock
from evidence.access import Principal
from evidence.accounts.models import Role, User
from evidence.accounts.service import check_full_name
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import AccessDenied, InvalidInput, NotAuthenticated, NotFound
from evidence.identity.lockout import LOGINS, _record_success
from evidence.identity.state import _State, _state
from evidence.identity.tokens import IssuedToken, _options, check_token_times

log = logging.getLogger(__name__)


# The password_hash of a user provisioned from the IdP: never a valid argon2 hash, so no
# password matches it, and it binds the row to the IdP's (issuer, subject) pair.
OIDC_HASH_PREFIX = "!oidc:"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,99}$")  # as accounts.service allows


def _has_local_password(user: User | None) -> bool:
    return user is not None and not user.password_hash.startswith(OIDC_HASH_PREFIX)


def has_local_password(user: User | None) -> bool:
    """True for an account that signs in with a password held here (not the IdP's)."""
    return _has_local_password(user)


def _oidc_principal(ctx: Context, state: _State, token: str) -> Principal:
    settings = ctx.settings
    algorithms = list(settings.oidc_algorithms)
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        raise NotAuthenticated("the bearer token is not a well-formed JWT") from None
    if alg not in algorithms:
        # Checked before any key lookup, so junk tokens never make us fetch the JWKS.
        raise NotAuthenticated(f"the bearer token's algorithm {alg!r} is not allowed here")
    try:
        key = state.jwks().get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError as exc:
        log.error("could not fetch the identity provider's keys: %s", exc)
        raise NotAuthenticated(
            "the identity provider's signing keys could not be fetched: try again shortly"
        ) from None
    except jwt.PyJWTError as exc:
        raise NotAuthenticated(f"the bearer token was refused: {exc}") from None
    try:
        # Passing the PyJWK (not its raw key) also binds the algorithm to the key's type.
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.oidc_audience,
            issuer=settings.oidc_issuer,
            options=_options(["exp", "iss", "aud", "sub"]),
        )
    except jwt.PyJWTError as exc:
        raise NotAuthenticated(f"the bearer token was refused: {exc}") from None
    check_token_times(claims, clock.now(), leeway=settings.oidc_leeway_seconds)
    role = role_from_claims(claims, settings.oidc_role_claim)
    if role is None:
        known = ", ".join(r.value for r in Role)
        raise AccessDenied(
            f"the identity provider gave this person no role the evidence store knows "
            f"(claim {settings.oidc_role_claim!r}); ask for one of: {known}"
        )
    username = claims.get(settings.oidc_username_claim)
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise NotAuthenticated(
            f"the token's {settings.oidc_username_claim!r} claim is missing or not a usable "
            "user name (2-100 letters, digits, '.', '_', '@' or '-')"
        )
    officer = claims.get(settings.oidc_officer_id_claim)
    officer_id = str(officer) if isinstance(officer, (str, int)) and str(officer) else None
    full_name = _full_name(claims, settings.oidc_name_claim)
    user = _provisioned_user(
        ctx, str(claims["iss"]), str(claims["sub"]), username, role, officer_id, full_name
    )
    if user.disabled:
        raise AccessDenied("this account has been disabled in the evidence store: ask an admin")
    return Principal(user.id, user.username, role, user.officer_id)


def _full_name(claims: dict[str, Any], claim: str) -> str | None:
    """The person's name for documents (statements name people, not login ids). A name the
    IdP sends that is no usable name (not text, too long, control characters) is left out
    rather than refusing the sign-in: the account then shows its user name, as a local one
    without a full name does."""
    value = _claim(claims, claim)
    if not isinstance(value, str):
        return None
    try:
        return check_full_name(value)
    except InvalidInput:
        log.warning("the identity provider's %r claim is no usable full name: ignored", claim)
        return None


def _claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name; a dotted name reaches into objects (Keycloak's realm_access.roles)
    when no top-level claim has that exact name (Auth0's URL-named claims contain dots)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


_ROLE_NAMES = frozenset(r.value for r in Role)


def role_from_claims(claims: dict[str, Any], claim: str) -> Role | None:
    """The first value of the role claim (a list, or a space-separated string) that names
    one of our roles."""
    value = _claim(claims, claim)
    values = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    for v in values:
        if isinstance(v, str) and v in _ROLE_NAMES:
            return Role(v)
    return None


def oidc_password_hash(issuer: str, subject: str) -> str:
    """The unusable password hash that also records which IdP identity owns the row."""
    return OIDC_HASH_PREFIX + hashlib.sha256(f"{issuer}\0{subject}".encode()).hexdigest()


def _provisioned_user(
    ctx: Context,
    issuer: str,
    subject: str,
    username: str,
    role: Role,
    officer_id: str | None,
    full_name: str | None,
) -> User:
    """The User row for this IdP identity: made on first sight, kept in step with the IdP's
    role, officer id and name (each change a ledger entry). A name already held by a local user
    or another IdP subject is refused, never merged: that would hand over their identity."""
    marker = oidc_password_hash(issuer, subject)
    with ctx.db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
    if (
        user is not None
        and user.password_hash == marker
        and (user.role, user.officer_id, user.full_name) == (role.value, officer_id, full_name)
    ):
        return user  # the usual case: no write
    for attempt in (1, 2):
        try:
            return _write_provisioned(
                ctx, marker, issuer, subject, username, role, officer_id, full_name
            )
        except IntegrityError:
            if attempt == 2:  # two first requests raced to create the row; re-read once
                raise
    raise AssertionError("unreachable")


def _write_provisioned(
    ctx: Context,
    marker: str,
    issuer: str,
    subject: str,
    username: str,
    role: Role,
    officer_id: str | None,
    full_name: str | None,
) -> User:
    with ctx.db.write_session() as s:
        user = s.scalar(select(User).where(User.username == username).with_for_update())
        if (
            officer_id is not None
            and s.scalar(
                select(User.id).where(User.officer_id == officer_id, User.username != username)
            )
            is not None
        ):
            # Officer ids are unique (docs/accounts.md): another account's id would open
            # that officer's clips to this person.
            raise AccessDenied(
                f"the officer id {officer_id!r} from the identity provider already belongs to "
                "another account here: an admin must resolve it"
            )
        if user is None:
            user = User(
                username=username,
                role=role.value,
                officer_id=officer_id,
                full_name=full_name,
                password_hash=marker,
                created_at=clock.now(),
                disabled=False,
                failed_logins=0,
            )
            s.add(user)
            s.flush()
            ctx.ledger.append_in(
                s,
                "user.provisioned",
                actor="system:oidc",
                subject={"user": user.id},
                username=username,
                role=role.value,
                officer_id=officer_id,
                **({"full_name": full_name} if full_name else {}),
                issuer=issuer,
                idp_subject=subject,
            )
            return user
        if user.password_hash != marker:
            raise AccessDenied(
                f"the user name {username!r} already belongs to another account here (a local "
                "user or another identity at the provider): an admin must resolve it"
            )
        changes: dict[str, Any] = {}
        if user.role != role.value:
            changes["role"] = role.value
        if user.officer_id != officer_id:
            changes["officer_id"] = officer_id
        if user.full_name != full_name:
            changes["full_name"] = full_name
        if changes:
            for k, v in changes.items():
                setattr(user, k, v)
            ctx.ledger.append_in(
                s,
                "user.updated",
                actor="system:oidc",
                subject={"user": user.id},
                username=username,
                source="identity provider",
                **changes,
            )
        return user


# -- browser sign-in through the IdP: authorization code flow with PKCE -------------------------
#
# The UI (api/ui/routes.py) sends the browser to the IdP with a state, a nonce and a PKCE
# challenge, and on its return exchanges the code here. Which token the session keeps: the
# IdP's ACCESS token, because that is what the API already accepts as a bearer token
# (audience `oidc_audience`), so `principal_from_token` checks it on every request exactly as
# it checks an API caller's. The id_token's audience is the client id, not ours, so it is only
# used to prove this sign-in: its signature, issuer, audience (client id), times and nonce are
# checked, and its subject must be the access token's. An IdP whose access tokens are opaque or
# meant for another audience cannot be used for the UI (configure an audience mapper there).

OIDC_CALLBACK_PATH = "/ui/login/oidc/callback"
_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,40}$")  # RFC 6749 §5.2 error codes


@dataclass(frozen=True)
class OidcSignIn:
    principal: Principal
    token: IssuedToken  # the IdP's access token, kept in the UI session


def oidc_browser_sign_in_enabled(settings: Settings) -> bool:
    """True when the UI can send people to the IdP: OIDC is on and the client is configured."""
    return settings.identity_mode in ("oidc", "both") and all(
        (settings.oidc_authorization_url, settings.oidc_token_url, settings.oidc_client_id)
    )


def oidc_redirect_uri(settings: Settings) -> str:
    """Where the IdP sends the browser back; register exactly this at the IdP."""
    return settings.public_url.rstrip("/") + OIDC_CALLBACK_PATH


def pkce_verifier() -> str:
    """A PKCE code verifier: 32 random bytes, base64url (43 characters, RFC 7636 §4.1)."""
    return secrets.token_urlsafe(32)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge: BASE64URL(SHA256(ASCII(verifier))) without padding."""
    if not _PKCE_VERIFIER.match(verifier):
        raise InvalidInput("a PKCE code verifier is 43-128 unreserved characters")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _oidc_scopes(settings: Settings) -> str:
    scopes = settings.oidc_scopes.split()
    return " ".join(scopes if "openid" in scopes else ["openid", *scopes])


def oidc_authorization_url(settings: Settings, *, state: str, nonce: str, verifier: str) -> str:
    """The IdP's authorization endpoint with this sign-in's parameters."""
    if not oidc_browser_sign_in_enabled(settings):
        raise NotFound("sign-in through the identity provider is not configured here")
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.oidc_client_id,
            "redirect_uri": oidc_redirect_uri(settings),
            "scope": _oidc_scopes(settings),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    base = str(settings.oidc_authorization_url)
    return base + ("&" if "?" in base else "?") + query


def oidc_exchange_code(settings: Settings, code: str, verifier: str) -> dict[str, Any]:
    """POST the code and PKCE verifier to the token endpoint; the JSON answer, or
    NotAuthenticated with a message safe to show (the IdP's own words are not echoed)."""
    import httpx  # only this path needs it

    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": oidc_redirect_uri(settings),
        "code_verifier": verifier,
        "client_id": str(settings.oidc_client_id),
    }
    secret = settings.oidc_client_secret
    auth = (str(settings.oidc_client_id), secret.get_secret_value()) if secret else None
    try:
        r = httpx.post(
            str(settings.oidc_token_url),
            data=data,
            auth=auth,
            timeout=settings.oidc_timeout_seconds,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        log.error("identity provider token endpoint unreachable: %s", exc)
        raise NotAuthenticated(
            "the identity provider could not be reached: try again shortly"
        ) from None
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        log.warning("identity provider refused the code exchange: HTTP %s %r", r.status_code, error)
        # Only a plain RFC 6749 error code is repeated, never the IdP's free text.
        code = f", {error}" if isinstance(error, str) and _OAUTH_ERROR.match(error) else ""
        raise NotAuthenticated(
            f"the identity provider refused to complete the sign-in (HTTP {r.status_code}{code})"
        )
    return body


def verify_id_token(ctx: Context, id_token: str, nonce: str) -> dict[str, Any]:
    """The id_token's claims, checked as `_oidc_principal` checks a bearer token (pinned
    algorithms, the IdP's JWKS, issuer, times with leeway) but for the audience of this
    client, with `azp` (when there are several audiences) and the sign-in's nonce."""
    settings = ctx.settings
    state = _state(ctx)
    algorithms = list(settings.oidc_algorithms)
    try:
        alg = jwt.get_unverified_header(id_token).get("alg")
    except jwt.PyJWTError:
        raise NotAuthenticated(
            "the identity provider's id_token is not a well-formed JWT"
        ) from None
    if alg not in algorithms:
        raise NotAuthenticated(f"the id_token's algorithm {alg!r} is not allowed here")
    try:
        key = state.jwks().get_signing_key_from_jwt(id_token)
        claims = jwt.decode(
            id_token,
            key,
            algorithms=algorithms,
            audience=settings.oidc_client_id,
            issuer=settings.oidc_issuer,
            options=_options(["exp", "iat", "iss", "aud", "sub"]),
        )
    except jwt.PyJWKClientConnectionError:
        raise NotAuthenticated(
            "the identity provider's signing keys could not be fetched: try again shortly"
        ) from None
    except jwt.PyJWTError as exc:
        raise NotAuthenticated(f"the id_token was refused: {exc}") from None
    check_token_times(claims, clock.now(), leeway=settings.oidc_leeway_seconds)
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != settings.oidc_client_id:
        raise NotAuthenticated("the id_token was issued to another client (azp)")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise NotAuthenticated("the id_token does not belong to this sign-in (nonce)")
    return claims


def oidc_sign_in(
    ctx: Context, code: str, *, verifier: str, nonce: str, source_ip: str
) -> OidcSignIn:
    """Finish a browser sign-in: exchange the code, check the id_token (nonce) and the access
    token (exactly as a bearer token, with provisioning), write `user.logged_in` (method
    "oidc"). NotAuthenticated or AccessDenied (no known role, disabled, name taken) on any
    failure, before anything is written."""
    settings = ctx.settings
    if not oidc_browser_sign_in_enabled(settings):
        raise NotFound("sign-in through the identity provider is not configured here")
    body = oidc_exchange_code(settings, code, verifier)
    id_token, access_token = body.get("id_token"), body.get("access_token")
    if not isinstance(id_token, str) or not id_token:
        raise NotAuthenticated(
            "the identity provider sent no id_token (is 'openid' an allowed scope?)"
        )
    if not isinstance(access_token, str) or not access_token:
        raise NotAuthenticated("the identity provider sent no access token")
    id_claims = verify_id_token(ctx, id_token, nonce)
    try:
        access_claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise NotAuthenticated(
            "the identity provider's access token is not a JWT: the UI needs one it can check "
            f"(audience {settings.oidc_audience!r})"
        ) from None
    if access_claims.get("iss") != settings.oidc_issuer:
        raise NotAuthenticated("the access token was not issued by the identity provider")
    if access_claims.get("sub") != id_claims["sub"]:
        raise NotAuthenticated("the access token and the id_token name different people")
    # Fully verified here (signature, audience, times, role, provisioning), before any entry.
    principal = _oidc_principal(ctx, _state(ctx), access_token)
    _record_success(ctx, principal.user_id, source_ip, "oidc")
    LOGINS.labels("oidc").inc()
    expires_in = max(0, int(float(access_claims.get("exp", 0)) - clock.now().timestamp()))
    return OidcSignIn(principal, IssuedToken(access_token, "bearer", expires_in))
