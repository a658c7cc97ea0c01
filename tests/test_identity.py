"""Identity: local sign-in (argon2id, TOTP, lock-out, rate limit), our JWTs, and OIDC
bearer tokens checked against a JWKS the test itself serves over HTTP."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI
from sqlalchemy import select, update
from typer.testing import CliRunner

from api import problems
from api.auth import current_principal
from evidence import clock
from evidence.access import Principal
from evidence.accounts.models import Role, User
from evidence.accounts.service import check_password, create_user
from evidence.context import Context
from evidence.errors import (
    AccessDenied,
    EvidenceError,
    InvalidInput,
    NotAuthenticated,
    TooManyAttempts,
)
from evidence.identity import signin
from evidence.identity.lockout import REFUSED
from evidence.identity.signin import login, principal_from_token
from evidence.identity.state import jwt_key_path, load_or_create_jwt_key
from evidence.identity.tokens import revoke_token
from evidence.identity.totp import RECOVERY_CODE, claim_totp_step, set_totp, totp_code, totp_step
from evidence.ratelimit import FailureWindow
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.services import free_port, wait_until

PASSWORD = "correct horse battery staple"
IP = "203.0.113.7"
IDP = "https://idp.force.example/realms/police"
IDP_AUDIENCE = "evidence-api-client"
# The middle of a 30 s TOTP step, so "the current step" is unambiguous.
START = dt.datetime(2025, 3, 1, 12, 0, 15, tzinfo=dt.UTC)


class FakeClock:
    def __init__(self, start: dt.datetime):
        self.t = start

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += dt.timedelta(seconds=seconds)


@pytest.fixture
def now() -> FakeClock:
    fake = FakeClock(START)
    clock.set_clock(fake)  # conftest restores the system clock afterwards
    return fake


@pytest.fixture
def local(tmp_path: Path, sqlite_url: str, now: FakeClock) -> Context:
    return Context(make_settings(tmp_path, sqlite_url))


def add_user(
    ctx: Context,
    name: str = "eo_brown",
    role: str = "evidence_officer",
    officer_id: str | None = None,
) -> User:
    return create_user(ctx, name, role, PASSWORD, officer_id=officer_id)


def entries(ctx: Context, type_: str) -> list[dict[str, Any]]:
    found = [json.loads(raw) for _, raw in ctx.ledger.entries(0, ctx.ledger.size())]
    return [e for e in found if e["type"] == type_]


def set_user(ctx: Context, name: str, **values: Any) -> None:
    with ctx.db.write_session() as s:
        s.execute(update(User).where(User.username == name).values(**values))


def refused(ctx: Context, token: str) -> str:
    with pytest.raises(NotAuthenticated) as err:
        principal_from_token(ctx, token)
    return str(err.value).lower()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict[str, Any], claims: dict[str, Any], sign) -> str:  # type: ignore[no-untyped-def]
    """A JWT built by hand, for the forgeries PyJWT (rightly) refuses to produce."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def local_claims(ctx: Context, user: User, **over: Any) -> dict[str, Any]:
    t = int(clock.now().timestamp())
    claims = {
        "iss": ctx.settings.jwt_issuer,
        "aud": ctx.settings.jwt_audience,
        "sub": user.id,
        "iat": t,
        "nbf": t,
        "exp": t + 600,
        "jti": "x",
    }
    claims.update(over)
    return claims


def our_key(ctx: Context) -> Ed25519PrivateKey:
    return load_or_create_jwt_key(jwt_key_path(ctx.settings))


# -- TOTP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t, code",
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
    ],
)
def test_totp_matches_the_rfc_6238_sha1_vectors(t: int, code: str) -> None:
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp_code(secret, t // 30, digits=8) == code
    assert totp_code(secret, t // 30) == code[-6:]


# -- local sign-in and our tokens ----------------------------------------------------------------


def test_login_issues_a_short_lived_eddsa_token_and_audits_it(local: Context) -> None:
    user = add_user(local, "pc_smith", "officer", officer_id="PC1234")
    issued = login(local, "pc_smith", PASSWORD, None, source_ip=IP)
    assert issued.token_type == "bearer" and issued.expires_in == 900
    header = jwt.get_unverified_header(issued.access_token)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert header["alg"] == "EdDSA"
    assert claims["exp"] - claims["iat"] == 900 and claims["sub"] == user.id
    assert "role" not in claims and "roles" not in claims  # the role is read from the database
    assert principal_from_token(local, issued.access_token) == Principal(
        user.id, "pc_smith", Role.officer, "PC1234"
    )
    (entry,) = entries(local, "user.logged_in")
    assert entry["actor"] == "user:pc_smith" and entry["source_ip"] == IP
    assert entry["method"] == "password" and entry["subject"] == {"user": user.id}
    raw = json.dumps(entry)
    assert PASSWORD not in raw and issued.access_token not in raw
    key_file = jwt_key_path(local.settings)
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_the_role_and_account_state_come_from_the_database_not_the_token(local: Context) -> None:
    add_user(local, "eo_brown")
    token = login(local, "eo_brown", PASSWORD, None, source_ip=IP).access_token
    set_user(local, "eo_brown", role="auditor")
    assert principal_from_token(local, token).role == Role.auditor
    set_user(local, "eo_brown", locked_until=START + dt.timedelta(minutes=5))
    assert "disabled, locked or gone" in refused(local, token)
    set_user(local, "eo_brown", locked_until=None, disabled=True)
    assert "disabled, locked or gone" in refused(local, token)


def test_an_expired_or_not_yet_valid_token_is_refused(local: Context, now: FakeClock) -> None:
    user = add_user(local)
    token = login(local, "eo_brown", PASSWORD, None, source_ip=IP).access_token
    now.advance(899)
    principal_from_token(local, token)
    now.advance(1)
    assert "expired" in refused(local, token)
    early = jwt.encode(
        local_claims(local, user, nbf=int(now.t.timestamp()) + 60),
        our_key(local),
        algorithm="EdDSA",
    )
    assert "not valid yet" in refused(local, early)


def test_forged_and_tampered_tokens_are_refused(local: Context) -> None:
    user = add_user(local)
    other = add_user(local, "adm_black", "admin")
    forged = jwt.encode(local_claims(local, other), Ed25519PrivateKey.generate(), algorithm="EdDSA")
    assert "signature verification failed" in refused(local, forged)
    good = login(local, "eo_brown", PASSWORD, None, source_ip=IP).access_token
    head, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = other.id  # become the admin, keeping the evidence officer's signature
    tampered = f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"
    assert "signature verification failed" in refused(local, tampered)
    assert principal_from_token(local, good).user_id == user.id


def test_wrong_audience_issuer_or_missing_claims_are_refused(local: Context) -> None:
    user = add_user(local)
    key = our_key(local)
    assert "audience" in refused(
        local, jwt.encode(local_claims(local, user, aud="some-other-api"), key, algorithm="EdDSA")
    )
    assert "issuer is not trusted" in refused(
        local, jwt.encode(local_claims(local, user, iss="someone-else"), key, algorithm="EdDSA")
    )
    no_exp = local_claims(local, user)
    del no_exp["exp"]
    assert "exp" in refused(local, jwt.encode(no_exp, key, algorithm="EdDSA"))
    assert "well-formed" in refused(local, "not.a.jwt")


def test_alg_none_and_hs256_with_our_public_key_are_refused(local: Context) -> None:
    user = add_user(local, "adm_black", "admin")
    claims = local_claims(local, user)
    unsigned = hand_made_token({"alg": "none", "typ": "JWT"}, claims, lambda _m: b"")
    assert "alg value is not allowed" in refused(local, unsigned)
    public = our_key(local).public_key()
    for secret in (
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
    ):
        confused = hand_made_token(
            {"alg": "HS256", "typ": "JWT"},
            claims,
            lambda m, k=secret: hmac.new(k, m, hashlib.sha256).digest(),
        )
        assert "alg value is not allowed" in refused(local, confused)


def test_unknown_user_wrong_password_and_disabled_look_the_same(
    local: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(local)
    add_user(local, "gone_user")
    set_user(local, "gone_user", disabled=True)
    calls: list[str] = []
    real = signin.check_password
    monkeypatch.setattr(signin, "check_password", lambda h, p: calls.append(h) or real(h, p))  # type: ignore[func-returns-value]
    messages = []
    for name, password in [
        ("nobody", PASSWORD),
        ("eo_brown", "wrong password!"),
        ("gone_user", PASSWORD),
    ]:
        with pytest.raises(NotAuthenticated) as err:
            login(local, name, password, None, source_ip=IP)
        messages.append(str(err.value))
    assert messages == [REFUSED] * 3
    # argon2 ran for each, an unknown name included, so timing does not tell them apart
    assert len(calls) == 3 and all(h.startswith("$argon2id$") for h in calls)
    assert entries(local, "user.logged_in") == []


def test_lock_out_after_repeated_failures_is_audited_and_ends(ctx: Context) -> None:
    """On both engines: the failure count is a read-modify-write under a row lock."""
    now = FakeClock(START)
    clock.set_clock(now)
    user = add_user(ctx)
    size = ctx.ledger.size()
    for _ in range(ctx.settings.login_max_failures):
        with pytest.raises(NotAuthenticated):
            login(ctx, "eo_brown", "not the password", None, source_ip=IP)
    (locked,) = entries(ctx, "user.locked_out")
    assert ctx.ledger.size() == size + 1  # one entry per lock-out, none per failed attempt
    assert locked["source_ip"] == IP and locked["subject"] == {"user": user.id}
    assert locked["failures"] == 5 and locked["locked_until"].startswith("2025-03-01T12:15:15")
    with pytest.raises(NotAuthenticated) as err:  # the right password, but locked
        login(ctx, "eo_brown", PASSWORD, None, source_ip=IP)
    assert str(err.value) == REFUSED
    now.advance(ctx.settings.login_lockout_seconds)
    token = login(ctx, "eo_brown", PASSWORD, None, source_ip=IP).access_token
    assert principal_from_token(ctx, token).username == "eo_brown"
    with ctx.db.session() as s:
        row = s.scalars(select(User).where(User.username == "eo_brown")).one()
    assert row.failed_logins == 0 and row.locked_until is None


def test_a_success_resets_the_failure_count(local: Context) -> None:
    add_user(local)
    for _ in range(3):
        for _ in range(local.settings.login_max_failures - 1):
            with pytest.raises(NotAuthenticated):
                login(local, "eo_brown", "not the password", None, source_ip=IP)
        login(local, "eo_brown", PASSWORD, None, source_ip=IP)
    assert entries(local, "user.locked_out") == []


def test_totp_is_required_checked_and_not_replayable(local: Context, now: FakeClock) -> None:
    add_user(local)
    enrolment = set_totp(local, "eo_brown")
    assert enrolment.uri.startswith("otpauth://totp/evidence-store:eo_brown?secret=")
    assert f"secret={enrolment.secret}" in enrolment.uri and "period=30" in enrolment.uri
    (enabled,) = entries(local, "user.totp_enabled")
    assert enrolment.secret not in json.dumps(enabled)
    step = totp_step(now.t)

    def attempt(code: str | None) -> bool:
        try:
            login(local, "eo_brown", PASSWORD, code, source_ip=IP)
            return True
        except NotAuthenticated as exc:
            assert str(exc) == REFUSED
            return False

    def code(offset: int) -> str:
        return totp_code(enrolment.secret, step + offset)

    wrong = f"{(int(code(0)) + 1) % 10**6:06d}"
    assert [attempt(None), attempt(wrong), attempt(code(-2))] == [False, False, False]
    assert attempt(code(-1)) and attempt(code(0))  # one step of drift either side
    assert not attempt(code(0))  # the same code twice: a replay
    assert attempt(code(1))
    assert not attempt(code(2))
    (*_, last) = entries(local, "user.logged_in")
    assert last["method"] == "password+totp"


def test_enable_totp_cli_prints_the_secret_once(
    local: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import app
    from evidence.config import get_settings

    add_user(local)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(local.settings.data_dir))
    monkeypatch.setenv("EVIDENCE_DATABASE_URL", local.db.url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["admin", "enable-totp", "eo_brown"])
        missing = CliRunner().invoke(app, ["admin", "enable-totp", "nobody"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    uri = result.stdout.strip().splitlines()[-1]
    assert uri.startswith("otpauth://totp/")
    with local.db.session() as s:
        secret = s.scalars(select(User.totp_secret).where(User.username == "eo_brown")).one()
    assert f"secret={secret}" in uri
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output


def test_password_sign_in_is_off_in_oidc_mode(tmp_path: Path, sqlite_url: str) -> None:
    ctx = Context(
        make_settings(
            tmp_path,
            sqlite_url,
            identity_mode="oidc",
            oidc_issuer=IDP,
            oidc_audience=IDP_AUDIENCE,
            oidc_jwks_url="http://127.0.0.1:9/",
        )
    )
    add_user(ctx)
    with pytest.raises(NotAuthenticated, match="identity provider"):
        login(ctx, "eo_brown", PASSWORD, None, source_ip=IP)


# -- the token route over real HTTP --------------------------------------------------------------


def test_token_route_issues_tokens_and_refuses_alike(local: Context) -> None:
    user = add_user(local, "pc_smith", "officer", officer_id="PC1234")
    with running_api(local.settings) as url, httpx.Client(base_url=url, timeout=10) as http:
        ok = http.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": "pc_smith", "password": PASSWORD},
        )
        bad = [
            http.post("/api/v1/auth/token", data={"username": n, "password": p})
            for n, p in [("pc_smith", "wrong password!"), ("nobody", PASSWORD)]
        ]
        incomplete = http.post("/api/v1/auth/token", data={"username": "pc_smith"})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert ok.headers["cache-control"] == "no-store"
    assert principal_from_token(local, body["access_token"]).user_id == user.id
    for r in bad:
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["error"] == "invalid_grant"
    assert bad[0].json() == bad[1].json()
    assert incomplete.status_code == 422
    assert incomplete.headers["content-type"] == "application/problem+json"


def test_sign_out_ends_the_token_not_just_the_session(local: Context) -> None:
    add_user(local, "pc_smith", "officer", officer_id="PC1234")
    with running_api(local.settings) as url, httpx.Client(base_url=url, timeout=10) as http:

        def token() -> dict[str, str]:
            r = http.post("/api/v1/auth/token", data={"username": "pc_smith", "password": PASSWORD})
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        first, second = token(), token()
        assert http.get("/api/v1/me", headers=first).status_code == 200
        assert http.post("/api/v1/auth/logout", headers=first).status_code == 204
        refused = http.get("/api/v1/me", headers=first)
        assert refused.status_code == 401 and "sign-out" in refused.json()["detail"]
        assert http.get("/api/v1/me", headers=second).status_code == 200, "only that token ends"
        assert http.post("/api/v1/auth/logout").status_code == 401
    [entry] = [
        json.loads(e)
        for _, e in local.ledger.entries(0, local.ledger.size())
        if json.loads(e)["type"] == "user.logged_out"
    ]
    assert entry["actor"] == "user:pc_smith"
    revoke_token(local, first["Authorization"][7:], source_ip="x")  # idempotent
    with pytest.raises(NotAuthenticated, match="sign-out"):
        principal_from_token(local, first["Authorization"][7:])


def test_token_route_rate_limits_failing_addresses(
    tmp_path: Path, sqlite_url: str, now: FakeClock
) -> None:
    settings = make_settings(tmp_path, sqlite_url, login_rate_limit=3, login_rate_window_seconds=60)
    add_user(Context(settings))
    with running_api(settings) as url, httpx.Client(base_url=url, timeout=10) as http:

        def post(name: str, password: str) -> httpx.Response:
            return http.post("/api/v1/auth/token", data={"username": name, "password": password})

        statuses = [post(n, "guess-guess-guess").status_code for n in ("eo_brown", "admin", "root")]
        now.advance(10)
        limited = post("eo_brown", PASSWORD)  # even the right password waits
        now.advance(50)  # the first failure leaves the window
        after = post("eo_brown", PASSWORD)
    assert statuses == [401, 401, 401]
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.headers["retry-after"] == "50"
    assert after.status_code == 200, after.text


# -- current_principal over HTTP: a probe app with one protected route --------------------------


@contextmanager
def probe_api(ctx: Context) -> Iterator[httpx.Client]:
    app = FastAPI()
    app.state.ctx = ctx
    problems.install(app)

    @app.get("/whoami")
    def whoami(p: Annotated[Principal, Depends(current_principal)]) -> dict[str, str]:
        return {"username": p.username, "role": p.role.value}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, "probe API")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_current_principal_answers_401_with_a_bearer_challenge(local: Context) -> None:
    add_user(local)
    token = login(local, "eo_brown", PASSWORD, None, source_ip=IP).access_token
    with probe_api(local) as http:
        ok = http.get("/whoami", headers={"Authorization": f"Bearer {token}"})
        missing = http.get("/whoami")
        device = http.get("/whoami", headers={"Authorization": "Device evd_abc"})
        junk = http.get("/whoami", headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
    assert ok.json() == {"username": "eo_brown", "role": "evidence_officer"}
    for r in (missing, device):
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="evidence"'
        assert r.headers["content-type"] == "application/problem+json"
    assert junk.status_code == 401
    assert 'error="invalid_token"' in junk.headers["www-authenticate"]


# -- OIDC: a JWKS served by the test ---------------------------------------------------------------


class IdentityProvider:
    """Signing keys and a JWKS endpoint, as the force's IdP would have."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.requests = 0
        jwks = {
            "keys": [
                {
                    **jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True),
                    "kid": "rsa-1",
                    "alg": "RS256",
                    "use": "sig",
                },
                {
                    **jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True),
                    "kid": "ec-1",
                    "alg": "ES256",
                    "use": "sig",
                },
            ]
        }
        body = json.dumps(jwks).encode()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                idp.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/protocol/openid-connect/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def claims(self, **over: Any) -> dict[str, Any]:
        t = int(clock.now().timestamp())
        claims = {
            "iss": IDP,
            "aud": IDP_AUDIENCE,
            "sub": "f3c1a9e0-idp-subject",
            "iat": t,
            "exp": t + 300,
            "preferred_username": "j.smith@force.example",
            "roles": ["offline_access", "evidence_officer", "auditor"],
            "officer_id": "4711",
        }
        claims.update(over)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, alg: str = "RS256", kid: str = "rsa-1", key: Any = None, **over: Any) -> str:
        key = key or (self.rsa if alg.startswith("RS") else self.ec)
        return jwt.encode(self.claims(**over), key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.server.shutdown()


def oidc_settings(tmp_path: Path, url: str, idp: IdentityProvider, **over: Any):  # type: ignore[no-untyped-def]
    return make_settings(
        tmp_path,
        url,
        identity_mode="both",
        oidc_issuer=IDP,
        oidc_audience=IDP_AUDIENCE,
        oidc_jwks_url=idp.url,
        **over,
    )


@pytest.fixture
def oidc(tmp_path: Path, database_url: str, idp: IdentityProvider, now: FakeClock) -> Context:
    return Context(oidc_settings(tmp_path, database_url, idp))


def test_an_idp_token_gives_a_principal_and_provisions_the_user_once(
    oidc: Context, idp: IdentityProvider
) -> None:
    principal = principal_from_token(oidc, idp.token())
    assert principal.role == Role.evidence_officer  # the first claim value that is our role
    assert principal.username == "j.smith@force.example" and principal.officer_id == "4711"
    with oidc.db.session() as s:
        user = s.scalars(select(User).where(User.username == principal.username)).one()
    assert user.id == principal.user_id and user.role == "evidence_officer"
    assert not check_password(user.password_hash, "")  # no password can ever match
    (entry,) = entries(oidc, "user.provisioned")
    assert entry["subject"] == {"user": user.id} and entry["issuer"] == IDP
    assert entry["idp_subject"] == "f3c1a9e0-idp-subject" and entry["role"] == "evidence_officer"
    size = oidc.ledger.size()
    again = principal_from_token(oidc, idp.token(alg="ES256", kid="ec-1"))
    assert again == principal and oidc.ledger.size() == size  # seen before: no new entry
    assert idp.requests == 1  # the JWKS is cached
    with pytest.raises(NotAuthenticated):  # and it cannot sign in with a password
        login(oidc, principal.username, "", None, source_ip=IP)


def test_a_role_change_at_the_idp_is_followed_and_audited(
    oidc: Context, idp: IdentityProvider
) -> None:
    principal_from_token(oidc, idp.token())
    p = principal_from_token(oidc, idp.token(roles="cps", officer_id=None))
    assert p.role == Role.cps and p.officer_id is None
    (entry,) = entries(oidc, "user.updated")
    assert entry["role"] == "cps" and entry["officer_id"] is None


def test_the_idp_name_becomes_the_full_name_that_documents_print(
    oidc: Context, idp: IdentityProvider
) -> None:
    p = principal_from_token(oidc, idp.token(name="Jane  Smith"))
    with oidc.db.session() as s:
        assert s.get(User, p.user_id).full_name == "Jane Smith"  # type: ignore[union-attr]
    assert entries(oidc, "user.provisioned")[0]["full_name"] == "Jane Smith"
    principal_from_token(oidc, idp.token(name="Jane Smith-Jones"))  # a change at the IdP
    assert entries(oidc, "user.updated")[-1]["full_name"] == "Jane Smith-Jones"
    size = oidc.ledger.size()
    principal_from_token(oidc, idp.token(name="x" * 500))  # no usable name: left out, no refusal
    with oidc.db.session() as s:
        assert s.get(User, p.user_id).full_name is None  # type: ignore[union-attr]
    assert oidc.ledger.size() == size + 1 and len(str(entries(oidc, "user.updated")[-1])) < 500


def test_nested_role_claims_are_read(
    tmp_path: Path, sqlite_url: str, idp: IdentityProvider, now: FakeClock
) -> None:
    ctx = Context(oidc_settings(tmp_path, sqlite_url, idp, oidc_role_claim="realm_access.roles"))
    token = idp.token(roles=None, realm_access={"roles": ["uma_authorization", "auditor"]})
    assert principal_from_token(ctx, token).role == Role.auditor


def test_bad_idp_tokens_are_refused(oidc: Context, idp: IdentityProvider, now: FakeClock) -> None:
    t = int(now.t.timestamp())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = idp.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cases = {
        "wrong issuer": (idp.token(iss="https://evil.example/"), "issuer is not trusted"),
        "wrong audience": (idp.token(aud="another-app"), "audience"),
        "expired": (idp.token(exp=t - 31), "expired"),  # beyond the 30 s allowed for skew
        "not yet": (idp.token(nbf=t + 120), "not valid yet"),
        "no exp": (idp.token(exp=None), "exp"),
        "unknown kid": (
            idp.token(kid="rotated-away", key=stranger),
            "unable to find a signing key",
        ),
        "forged": (idp.token(key=stranger), "signature verification failed"),
        "alg none": (
            hand_made_token({"alg": "none", "kid": "rsa-1"}, idp.claims(), lambda _m: b""),
            "not allowed",
        ),
        "HS256 with the public key as secret": (
            hand_made_token(
                {"alg": "HS256", "kid": "rsa-1"},
                idp.claims(),
                lambda m: hmac.new(public_pem, m, hashlib.sha256).digest(),
            ),
            "not allowed",
        ),
        "RS256 token under the EC key's kid": (idp.token(kid="ec-1"), "does not match"),
        "no username": (idp.token(preferred_username=None), "preferred_username"),
    }
    for name, (token, message) in cases.items():
        assert message in refused(oidc, token), name
    assert principal_from_token(oidc, idp.token(exp=t - 29)).role == Role.evidence_officer
    assert entries(oidc, "user.provisioned")[0]["username"] == "j.smith@force.example"


def test_an_idp_token_without_a_known_role_is_403(
    tmp_path: Path, sqlite_url: str, idp: IdentityProvider, now: FakeClock
) -> None:
    ctx = Context(oidc_settings(tmp_path, sqlite_url, idp))
    with pytest.raises(AccessDenied, match="no role the evidence store knows"):
        principal_from_token(ctx, idp.token(roles=["offline_access", "sheriff"]))
    assert entries(ctx, "user.provisioned") == []  # not provisioned without a role
    with probe_api(ctx) as http:
        r = http.get("/whoami", headers={"Authorization": f"Bearer {idp.token(roles=[])}"})
        ok = http.get("/whoami", headers={"Authorization": f"Bearer {idp.token()}"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert ok.json() == {"username": "j.smith@force.example", "role": "evidence_officer"}


def test_an_idp_name_held_by_a_local_user_is_not_taken_over(
    oidc: Context, idp: IdentityProvider
) -> None:
    add_user(oidc, "adm_black", "admin")
    with pytest.raises(AccessDenied, match="already belongs to another account"):
        principal_from_token(oidc, idp.token(preferred_username="adm_black"))
    principal_from_token(oidc, idp.token())
    with pytest.raises(AccessDenied, match="already belongs"):  # same name, another person
        principal_from_token(oidc, idp.token(sub="someone-else"))


def test_idp_tokens_are_refused_in_local_mode_and_local_ones_in_oidc_mode(
    tmp_path: Path, sqlite_url: str, idp: IdentityProvider, now: FakeClock
) -> None:
    local_ctx = Context(make_settings(tmp_path, sqlite_url))
    assert "issuer is not trusted" in refused(local_ctx, idp.token())
    add_user(local_ctx)
    token = login(local_ctx, "eo_brown", PASSWORD, None, source_ip=IP).access_token
    oidc_only = Context(
        oidc_settings(tmp_path, sqlite_url, idp).model_copy(update={"identity_mode": "oidc"})
    )
    assert "issuer is not trusted" in refused(oidc_only, token)
    assert idp.requests == 0  # nothing fetched for tokens that were never the IdP's


@pytest.mark.parametrize("algorithms", [["HS256"], ["RS256", "none"], []])
def test_symmetric_or_no_algorithms_for_the_idp_are_a_configuration_error(
    tmp_path: Path, sqlite_url: str, idp: IdentityProvider, algorithms: list[str]
) -> None:
    ctx = Context(oidc_settings(tmp_path, sqlite_url, idp, oidc_algorithms=algorithms))
    with pytest.raises(EvidenceError, match="asymmetric"):
        principal_from_token(ctx, idp.token())


def test_rate_limit_window_forgets_old_failures() -> None:
    window = FailureWindow(limit=2, window=60)
    for s in (0, 30):
        window.record("a", START + dt.timedelta(seconds=s))
    assert window.retry_after("a", START + dt.timedelta(seconds=31)) == 29
    assert window.retry_after("b", START + dt.timedelta(seconds=31)) == 0
    assert window.retry_after("a", START + dt.timedelta(seconds=60)) == 0


def test_too_many_attempts_is_raised_by_login(
    tmp_path: Path, sqlite_url: str, now: FakeClock
) -> None:
    ctx = Context(make_settings(tmp_path, sqlite_url, login_rate_limit=2))
    for _ in range(2):
        with pytest.raises(NotAuthenticated):
            login(ctx, "nobody", "x", None, source_ip=IP)
    with pytest.raises(TooManyAttempts) as err:
        login(ctx, "nobody", "x", None, source_ip=IP)
    assert err.value.retry_after == ctx.settings.login_rate_window_seconds
    with pytest.raises(NotAuthenticated):  # another address is not affected
        login(ctx, "nobody", "x", None, source_ip="198.51.100.1")


# -- a person's own account (evidence/accounts/own.py) ---------------------------------------


def _me(ctx: Context, name: str = "eo_brown") -> Principal:
    with ctx.db.session() as s:
        u = s.scalar(select(User).where(User.username == name))
    return Principal(u.id, u.username, Role(u.role), u.officer_id)


def test_a_user_changes_their_own_password_and_their_other_sessions_end(ctx: Context) -> None:
    from evidence.accounts import own

    clock.set_clock(FakeClock(START))
    add_user(ctx)
    me = _me(ctx)
    other_session = login(ctx, "eo_brown", PASSWORD, None, source_ip=IP).access_token
    with pytest.raises(InvalidInput, match="current password is not right"):
        own.change_password(ctx, me, "a wrong guess", "a brand new passphrase", source_ip=IP)
    with ctx.db.session() as s:  # a wrong current password counts like a failed sign-in
        assert s.scalar(select(User.failed_logins).where(User.id == me.user_id)) == 1
    with pytest.raises(InvalidInput, match="too short"):
        own.change_password(ctx, me, PASSWORD, "short", source_ip=IP)
    fresh = own.change_password(ctx, me, PASSWORD, "a brand new passphrase", source_ip=IP)
    assert principal_from_token(ctx, fresh.access_token).username == "eo_brown"
    with pytest.raises(NotAuthenticated, match="password was changed"):
        principal_from_token(ctx, other_session)
    with pytest.raises(NotAuthenticated):
        login(ctx, "eo_brown", PASSWORD, None, source_ip=IP)
    login(ctx, "eo_brown", "a brand new passphrase", None, source_ip=IP)
    (changed,) = entries(ctx, "user.password_changed")
    assert changed["source_ip"] == IP and "passphrase" not in json.dumps(changed)


def test_totp_self_enrolment_with_a_qr_code_and_one_time_recovery_codes(ctx: Context) -> None:
    from evidence.accounts import own

    now = FakeClock(START)
    clock.set_clock(now)
    add_user(ctx)
    me = _me(ctx)
    started = own.start_totp(ctx, me)
    assert started.uri.startswith("otpauth://totp/evidence-store:eo_brown?secret=" + started.secret)
    assert started.qr_svg.startswith("<svg") and "<script" not in started.qr_svg
    # Nothing changes until a code from the new secret is confirmed.
    login(ctx, "eo_brown", PASSWORD, None, source_ip=IP)
    with pytest.raises(InvalidInput, match="does not match"):
        own.confirm_totp(
            ctx,
            me,
            "000000" if totp_code(started.secret, totp_step(now.t)) != "000000" else "111111",
        )
    step = totp_step(now.t)
    codes = own.confirm_totp(ctx, me, totp_code(started.secret, step))
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(RECOVERY_CODE.match(c) for c in codes)
    # The confirming code is spent; a password alone no longer signs in.
    with pytest.raises(NotAuthenticated):
        login(ctx, "eo_brown", PASSWORD, totp_code(started.secret, step), source_ip=IP)
    with pytest.raises(NotAuthenticated):
        login(ctx, "eo_brown", PASSWORD, None, source_ip=IP)
    # A recovery code stands in for a code, once.
    login(ctx, "eo_brown", PASSWORD, codes[0].upper(), source_ip=IP)
    with pytest.raises(NotAuthenticated):
        login(ctx, "eo_brown", PASSWORD, codes[0], source_ip=IP)
    assert entries(ctx, "user.logged_in")[-1]["method"] == "password+recovery_code"
    assert own.recovery_codes_left(ctx, me) == 9
    # Replaced all at once with a current code; the old ones stop working.
    now.advance(30)
    fresh = own.new_recovery_codes(ctx, me, totp_code(started.secret, step + 1))
    with pytest.raises(NotAuthenticated):
        login(ctx, "eo_brown", PASSWORD, codes[1], source_ip=IP)
    login(ctx, "eo_brown", PASSWORD, fresh[0], source_ip=IP)
    from evidence.accounts.models import RecoveryCode

    with ctx.db.session() as s:  # only hashes are kept; the ledger has none of it
        stored = [r.code_hash for r in s.scalars(select(RecoveryCode))]
    raw = json.dumps([e.decode() for _, e in ctx.ledger.entries(0, ctx.ledger.size())])
    for secret in (started.secret, *codes, *fresh):
        assert secret not in raw and secret not in json.dumps(stored)
    assert [e["type"] for e in entries(ctx, "user.totp_enabled")] == ["user.totp_enabled"]
    assert len(entries(ctx, "user.recovery_codes_issued")) == 1


def test_lock_out_and_totp_replay_hold_across_api_processes(
    tmp_path: Path, database_url: str
) -> None:
    """Two contexts on one database stand for two API processes: a TOTP code used on one
    is refused on the other, and failures on both add up to one lock-out."""
    now = FakeClock(START)
    clock.set_clock(now)
    first = Context(make_settings(tmp_path, database_url))
    second = Context(make_settings(tmp_path, database_url))
    add_user(first)
    secret = set_totp(first, "eo_brown").secret
    code = totp_code(secret, totp_step(now.t))
    login(first, "eo_brown", PASSWORD, code, source_ip=IP)
    with pytest.raises(NotAuthenticated):
        login(second, "eo_brown", PASSWORD, code, source_ip=IP)  # replayed elsewhere
    # Failures alternate between the processes; the account locks at the limit all the same.
    for i in range(first.settings.login_max_failures):
        with pytest.raises(NotAuthenticated):
            login((first, second)[i % 2], "eo_brown", "wrong", None, source_ip=f"198.51.100.{i}")
    now.advance(30)
    good = totp_code(secret, totp_step(now.t))
    for ctx in (first, second):
        with pytest.raises(NotAuthenticated):
            login(ctx, "eo_brown", PASSWORD, good, source_ip=IP)
    assert len(entries(first, "user.locked_out")) == 1


def test_two_processes_racing_with_one_code_let_exactly_one_in(
    tmp_path: Path, database_url: str
) -> None:
    now = FakeClock(START)
    clock.set_clock(now)
    contexts = [Context(make_settings(tmp_path, database_url)) for _ in range(2)]
    user = add_user(contexts[0])
    step = totp_step(now.t)
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def claim(ctx: Context) -> None:
        barrier.wait()
        results.append(claim_totp_step(ctx, user.id, step))

    threads = [threading.Thread(target=claim, args=(contexts[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_an_idp_officer_id_held_by_another_account_is_refused_not_shared(
    oidc: Context, idp: IdentityProvider
) -> None:
    """Officer ids are unique: an IdP that names another account's collar number gets a
    clear refusal, never a second account seeing that officer's clips."""
    add_user(oidc, "pc_local", "officer", officer_id="4711")
    token = idp.token()
    with pytest.raises(AccessDenied, match="officer id .4711."):
        principal_from_token(oidc, token)
    with oidc.db.session() as s:
        assert s.scalar(select(User).where(User.officer_id == "4711")).username == "pc_local"


def test_a_store_hashes_passwords_with_argon2id_at_the_recommended_parameters() -> None:
    """In a fresh process, as a store runs (this test process uses cheap parameters: see
    tests/conftest.py): argon2id, 64 MiB, 3 passes, 4 lanes (RFC 9106's second choice)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from evidence.accounts.service import hash_password as h; print(h('x'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), out
