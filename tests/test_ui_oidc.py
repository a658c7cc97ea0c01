"""Signing in to the UI through the force's IdP: the authorization code flow with PKCE, in
Debian's chromium (Playwright) against a real uvicorn server and a real small OIDC provider
over HTTP (tests/fixtures/idp.py), plus unit tests of PKCE and the id_token checks."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest
from pydantic import SecretStr

from evidence import clock
from evidence.accounts.service import create_user
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import InvalidInput, NotAuthenticated
from evidence.identity.oidc import (
    oidc_authorization_url,
    oidc_browser_sign_in_enabled,
    oidc_exchange_code,
    oidc_redirect_uri,
    pkce_challenge,
    pkce_verifier,
    verify_id_token,
)
from evidence.migrate import upgrade
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.idp import API_AUDIENCE, CLIENT_ID, OidcProvider, s256, start_idp, stop_idp

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the browser fixture skips (or fails in CI)
    Page = Any  # type: ignore[assignment,misc]

IDP_NAME = "Test Constabulary"
PASSWORD = "correct horse battery staple"
CALLBACK = "/ui/login/oidc/callback"


def idp_settings(tmp: Path, url: str, idp: OidcProvider, mode: str) -> Settings:
    return make_settings(
        tmp,
        url,
        identity_mode=mode,
        oidc_issuer=idp.issuer,
        oidc_audience=API_AUDIENCE,
        oidc_jwks_url=idp.jwks_url,
        oidc_authorization_url=idp.authorization_url,
        oidc_token_url=idp.token_url,
        oidc_client_id=CLIENT_ID,
        oidc_display_name=IDP_NAME,
    )


@dataclass
class Server:
    url: str
    ctx: Context


def _serve(
    tmp_path_factory: pytest.TempPathFactory, idp: OidcProvider, mode: str
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"oidc-{mode}")
    url = f"sqlite:///{tmp}/evidence.db"
    upgrade(url)
    settings = idp_settings(tmp, url, idp, mode)
    ctx = Context(settings)
    create_user(ctx, "eo_local", "evidence_officer", PASSWORD)
    with running_api(settings) as base:
        idp.redirect_uris.add(base + CALLBACK)
        yield Server(base, ctx)


@pytest.fixture(scope="module")
def oidc_idp() -> Iterator[OidcProvider]:
    """One IdP for the module; `idp` resets what it will say for each test."""
    provider = start_idp()
    yield provider
    stop_idp(provider)


@pytest.fixture
def page(open_page: Any) -> Page:  # noqa: F811  (the fixture imported from test_ui)
    return open_page().page


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, oidc_idp: OidcProvider) -> Iterator[Server]:
    yield from _serve(tmp_path_factory, oidc_idp, "both")


@pytest.fixture(scope="module")
def oidc_only(tmp_path_factory: pytest.TempPathFactory, oidc_idp: OidcProvider) -> Iterator[Server]:
    yield from _serve(tmp_path_factory, oidc_idp, "oidc")


@pytest.fixture
def idp(oidc_idp: OidcProvider) -> OidcProvider:
    oidc_idp.reset()
    return oidc_idp


def entries(ctx: Context, type_: str) -> list[dict[str, Any]]:
    return [
        e
        for _, raw in ctx.ledger.entries(0, ctx.ledger.size())
        if (e := json.loads(raw))["type"] == type_
    ]


def cookies(page: Page) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in page.context.cookies()}


def click_idp_button(page: Page, base: str, path: str = "/ui/login") -> None:
    page.goto(base + path)
    page.check("#acknowledge-idp")
    page.get_by_role("button", name=f"Sign in with {IDP_NAME}").click()
    page.wait_for_load_state()


def token_claims(cookie_value: str) -> dict[str, Any]:
    return jwt.decode(cookie_value.split(".", 4)[4], options={"verify_signature": False})


# -- PKCE and the pieces of the flow --------------------------------------------------------------


def test_pkce_s256_matches_rfc_7636_appendix_b() -> None:
    assert (
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    verifier = pkce_verifier()
    assert len(verifier) == 43 and pkce_challenge(verifier) == s256(verifier)
    assert pkce_verifier() != verifier
    for bad in ("too-short", "x" * 129, "a" * 42 + "+"):
        with pytest.raises(InvalidInput):
            pkce_challenge(bad)


def test_the_authorization_request_carries_pkce_nonce_state_and_the_redirect_uri(
    tmp_path: Path, sqlite_url: str, oidc_idp: OidcProvider
) -> None:
    settings = idp_settings(tmp_path, sqlite_url, oidc_idp, "both").model_copy(
        update={"oidc_scopes": "profile email", "public_url": "https://evidence.force.example/"}
    )
    url = oidc_authorization_url(settings, state="S", nonce="N", verifier="v" * 43)
    assert url.startswith(oidc_idp.authorization_url + "?")
    q = dict(parse_qsl(urlsplit(url).query))
    assert q == {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "scope": "openid profile email",
        "redirect_uri": "https://evidence.force.example/ui/login/oidc/callback",
        "state": "S",
        "nonce": "N",
        "code_challenge": s256("v" * 43),
        "code_challenge_method": "S256",
    }
    enabled = oidc_browser_sign_in_enabled
    for missing in ("oidc_authorization_url", "oidc_token_url", "oidc_client_id"):
        assert not enabled(settings.model_copy(update={missing: None}))
    assert not enabled(settings.model_copy(update={"identity_mode": "local"}))


def test_the_id_token_must_be_for_this_client_and_this_sign_in(
    tmp_path: Path, sqlite_url: str, oidc_idp: OidcProvider
) -> None:
    ctx = Context(idp_settings(tmp_path, sqlite_url, oidc_idp, "both"))
    t = int(clock.now().timestamp())
    good = {
        "iss": oidc_idp.issuer,
        "aud": CLIENT_ID,
        "sub": "s",
        "iat": t,
        "exp": t + 60,
        "nonce": "n-1",
    }
    assert verify_id_token(ctx, oidc_idp.sign(good), "n-1")["sub"] == "s"
    cases = {
        "other nonce": ({}, "nonce"),
        "no nonce": ({"nonce": None}, "nonce"),
        "API audience": ({"aud": API_AUDIENCE}, "(?i)audience"),
        "several audiences, no azp": ({"aud": [CLIENT_ID, "other"]}, "azp"),
        "other issuer": ({"iss": "https://evil.example"}, "(?i)issuer"),
        "expired": ({"exp": t - 31}, "expired"),
    }
    for name, (over, message) in cases.items():
        token = oidc_idp.sign({**good, **over})
        with pytest.raises(NotAuthenticated, match=message):
            verify_id_token(ctx, token, "n-2" if name == "other nonce" else "n-1")


def test_the_code_exchange_needs_the_pkce_verifier(
    tmp_path: Path, sqlite_url: str, idp: OidcProvider
) -> None:
    """The harness's IdP is strict (a wrong verifier, a replayed code: invalid_grant), and the
    store reports its refusal without echoing its words."""
    settings = idp_settings(tmp_path, sqlite_url, idp, "both")
    idp.redirect_uris.add(oidc_redirect_uri(settings))
    verifier = pkce_verifier()
    authorize = httpx.get(oidc_authorization_url(settings, state="s", nonce="n", verifier=verifier))
    assert authorize.status_code == 302
    code = dict(parse_qsl(urlsplit(authorize.headers["location"]).query))["code"]
    with pytest.raises(NotAuthenticated, match=r"HTTP 400, invalid_grant"):
        oidc_exchange_code(settings, code, pkce_verifier())
    assert idp.token_requests[-1]["code_verifier"] != verifier
    with pytest.raises(NotAuthenticated, match="invalid_grant"):  # the code is used up
        oidc_exchange_code(settings, code, verifier)


def test_a_confidential_client_sends_its_secret(
    tmp_path: Path, sqlite_url: str, idp: OidcProvider
) -> None:
    idp.client_secret = "s3cret"
    public = idp_settings(tmp_path, sqlite_url, idp, "both")
    confidential = public.model_copy(update={"oidc_client_secret": SecretStr("s3cret")})
    idp.redirect_uris.add(oidc_redirect_uri(public))

    def code_for(settings: Settings, verifier: str) -> str:
        url = oidc_authorization_url(settings, state="s", nonce="n", verifier=verifier)
        return dict(parse_qsl(urlsplit(httpx.get(url).headers["location"]).query))["code"]

    verifier = pkce_verifier()
    with pytest.raises(NotAuthenticated, match=r"HTTP 401, invalid_client"):
        oidc_exchange_code(public, code_for(public, verifier), verifier)
    body = oidc_exchange_code(confidential, code_for(confidential, verifier), verifier)
    assert set(body) >= {"access_token", "id_token"}
    assert "s3cret" not in repr(confidential)  # a SecretStr: never in logs or reprs


# -- in the browser -------------------------------------------------------------------------------


def test_sign_in_with_the_idp_lands_signed_in_with_the_idps_role(
    both: Server, idp: OidcProvider, page: Page
) -> None:
    page.goto(both.url + "/ui/cases")
    assert re.search(r"/ui/login\?next=/ui/cases$", page.url)
    expect(page.locator("#password")).to_be_visible()  # "both": the password form stays
    page.check("#acknowledge-idp")
    page.get_by_role("button", name=f"Sign in with {IDP_NAME}").click()
    page.wait_for_url(re.compile(r":\d+/ui/cases$"))
    expect(page.locator(".who__name")).to_have_text("dc.ellis@force.example")
    expect(page.locator(".who__role")).to_contain_text("Evidence officer · 5150")
    expect(page.get_by_role("button", name="Open case")).to_be_visible()

    # What the store sent the IdP, and what it proved at the token endpoint.
    (sent,) = idp.authorize_requests
    assert sent["response_type"] == "code" and sent["client_id"] == CLIENT_ID
    assert sent["redirect_uri"] == both.url + CALLBACK and sent["scope"] == "openid profile"
    assert sent["code_challenge_method"] == "S256" and len(sent["nonce"]) >= 32
    assert len(sent["state"]) >= 32 and sent["state"] != sent["nonce"]
    (exchange,) = idp.token_requests
    assert s256(exchange["code_verifier"]) == sent["code_challenge"]
    assert exchange["redirect_uri"] == sent["redirect_uri"]

    (entry,) = [
        e
        for e in entries(both.ctx, "user.logged_in")
        if e["actor"] == "user:dc.ellis@force.example"
    ]
    assert entry["method"] == "oidc" and entry["source_ip"] == "127.0.0.1"
    (provisioned,) = entries(both.ctx, "user.provisioned")
    assert provisioned["role"] == "evidence_officer" and provisioned["issuer"] == idp.issuer

    # The session holds the IdP's access token, in the usual Strict cookie; the flow's
    # cookie is gone. The IdP's token is never renewed into one of ours.
    jar = cookies(page)
    assert "evidence_ui_oidc" not in jar
    session = jar["evidence_ui"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert token_claims(session["value"])["iss"] == idp.issuer
    page.goto(both.url + "/ui/clips")  # 300 s left of 900: a local token would renew now
    assert cookies(page)["evidence_ui"]["value"] == session["value"]

    # Sign-out clears the cookie; the IdP's token is the IdP's (no revocation entry here).
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/login$"))
    assert "evidence_ui" not in cookies(page)
    assert not [
        e
        for e in entries(both.ctx, "user.logged_out")
        if e["actor"] == "user:dc.ellis@force.example"
    ]


def test_the_session_ends_when_the_idps_token_expires(
    both: Server, idp: OidcProvider, page: Page
) -> None:
    click_idp_button(page, both.url, "/ui/login?next=/ui/cases")
    page.wait_for_url(re.compile(r":\d+/ui/cases$"))
    start = dt.datetime.now(dt.UTC)
    clock.set_clock(lambda: start + dt.timedelta(seconds=idp.token_lifetime - 60))
    page.goto(both.url + "/ui/cases")
    expect(page.locator("h1")).to_have_text("Cases")
    clock.set_clock(lambda: start + dt.timedelta(seconds=idp.token_lifetime + 31))  # + leeway
    page.goto(both.url + "/ui/cases")
    page.wait_for_url(re.compile(r"/ui/login\?next=/ui/cases&expired=1$"))
    expect(page.locator(".flash--info")).to_contain_text("session has ended")


def test_the_flow_cookie_is_lax_sealed_and_short_lived(both: Server, idp: OidcProvider) -> None:
    with httpx.Client(base_url=both.url) as http:
        # The sign-in page alone may send a form on to the IdP's origin (the 303 after the
        # button's GET form is a form navigation to CSP); every other page keeps 'self'.
        login_csp = http.get("/ui/login").headers["content-security-policy"]
        assert f"form-action 'self' {idp.base};" in login_csp
        assert "form-action 'self';" in http.get("/healthz").headers["content-security-policy"]
        assert http.get("/ui/login/oidc").status_code == 400  # the notice not acknowledged
        r = http.get("/ui/login/oidc", params={"acknowledge": "yes", "next": "/ui/cases"})
    assert r.status_code == 303 and r.headers["location"].startswith(idp.authorization_url + "?")
    (set_cookie,) = [
        h for h in r.headers.get_list("set-cookie") if h.startswith("evidence_ui_oidc=")
    ]
    attrs = {a.strip().split("=")[0].lower() for a in set_cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= attrs and "samesite=lax" in set_cookie.lower()
    assert "Max-Age=600" in set_cookie
    value = set_cookie.split(";")[0].split("=", 1)[1]
    raw = base64.urlsafe_b64decode(value.encode())
    q = dict(parse_qsl(urlsplit(r.headers["location"]).query))
    for secret in (q["state"], q["nonce"]):  # sealed: neither it nor the verifier is readable
        assert secret.encode() not in raw


def test_a_tampered_or_unknown_state_is_refused_before_any_exchange(
    both: Server, idp: OidcProvider, page: Page
) -> None:
    size = both.ctx.ledger.size()
    idp.tamper_state = True
    click_idp_button(page, both.url)
    assert urlsplit(page.url).path == CALLBACK
    expect(page.locator("#signin-error")).to_contain_text("could not be matched to this browser")
    assert idp.token_requests == [] and "evidence_ui" not in cookies(page)
    assert "evidence_ui_oidc" not in cookies(page)  # used up
    # A callback this browser never started (or a replay after the flow was used).
    response = page.goto(both.url + CALLBACK + "?code=stolen&state=guessed")
    assert response is not None and response.status == 400
    expect(page.locator("#signin-error")).to_contain_text("could not be matched")
    assert idp.token_requests == [] and both.ctx.ledger.size() == size


def test_an_idp_error_is_shown_and_nothing_it_sent_is_reflected(
    both: Server, idp: OidcProvider, page: Page
) -> None:
    size = both.ctx.ledger.size()
    idp.next_error = ("access_denied", "<b id=injected>The user said no</b>")
    click_idp_button(page, both.url)
    expect(page.locator("#signin-error")).to_contain_text("You did not allow the sign-in")
    idp.next_error = ("<img id=injected src=x>", "<script>alert(1)</script>")
    click_idp_button(page, both.url)
    expect(page.locator("#signin-error")).to_contain_text("(an unrecognised error)")
    assert page.locator("#injected").count() == 0
    assert "The user said no" not in page.content() and "alert(1)" not in page.content()
    assert idp.token_requests == [] and "evidence_ui" not in cookies(page)
    assert both.ctx.ledger.size() == size


def test_a_person_without_a_known_role_is_refused_and_not_provisioned(
    both: Server, idp: OidcProvider, page: Page
) -> None:
    size = both.ctx.ledger.size()
    idp.reset(
        sub="9f-idp-sheriff", preferred_username="sheriff.x", roles=["offline_access", "sheriff"]
    )
    responses: list[int] = []
    page.on("response", lambda r: responses.append(r.status) if CALLBACK in r.url else None)
    click_idp_button(page, both.url)
    expect(page.locator("#signin-error")).to_contain_text("no role the evidence store knows")
    assert responses == [403]
    assert len(idp.token_requests) == 1  # it got as far as the IdP's tokens, and no further
    assert "evidence_ui" not in cookies(page) and both.ctx.ledger.size() == size


def test_in_oidc_only_mode_there_is_no_password_form(
    oidc_only: Server, idp: OidcProvider, page: Page
) -> None:
    page.goto(oidc_only.url + "/ui/login")
    expect(page.locator("#idp-sign-in")).to_have_text(f"Sign in with {IDP_NAME}")
    assert page.locator("#password").count() == 0
    assert page.locator("form[action='/ui/login']").count() == 0
    refused = page.request.post(
        oidc_only.url + "/ui/login",
        max_redirects=0,
        form={"username": "eo_local", "password": PASSWORD, "acknowledge": "yes", "nonce": "x"},
    )
    assert refused.status == 403 and "Password sign-in is turned off" in refused.text()
    assert not entries(oidc_only.ctx, "user.logged_in")
    # The IdP's way in works, and stays signed in over several pages (no renewal into a
    # local token, which this mode would refuse).
    click_idp_button(page, oidc_only.url)
    page.wait_for_url(re.compile(r":\d+/ui/clips$"))
    for path in ("/ui/cases", "/ui/clips"):
        page.goto(oidc_only.url + path)
        assert urlsplit(page.url).path == path
    assert [e["method"] for e in entries(oidc_only.ctx, "user.logged_in")] == ["oidc"]


def test_in_local_mode_there_is_no_idp_button(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url)  # identity_mode="local"
    with running_api(settings) as base, httpx.Client(base_url=base) as http:
        page = http.get("/ui/login")
        assert page.status_code == 200 and 'id="password"' in page.text
        assert "idp-sign-in" not in page.text and "/ui/login/oidc" not in page.text
        assert http.get("/ui/login/oidc", params={"acknowledge": "yes"}).status_code == 404
        assert http.get(CALLBACK, params={"code": "c", "state": "s"}).status_code == 404
