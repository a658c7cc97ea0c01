"""Security: who may call what, hostile ids, security headers, and hostile input in general.

Read as a specification:

1. Every route declares who may call it: `gate(action)` (a signed-in person whose role
   evidence.access.ACTIONS allows; `ui_gate(action)` for the UI's pages, signed in with the
   session cookie), `current_device` (a docking device), `monitoring` (the metrics scraper's
   token) or `public`. The route table is read
   from the app itself, so a new route without a rule fails here, by name.
2. The authorization matrix: against a running server holding real data (a force with one user
   per role, one docked and ingested clip, one case), every gated route is called by every role,
   by an anonymous caller and by a device. Anonymous gets 401 with a challenge (the UI: a
   redirect to its sign-in page); a role the policy does not list gets 403; a role it lists is
   never refused (it may still get a 404 or 422 about the object or the input). Device routes
   take device keys only, device keys open nothing else, and neither half of the app takes
   the other's credential (UI cookie on the API, bearer token on the UI).
3. Tampered ids (another officer's clip, unknown, traversal, SQL, NUL, overlong) get a 4xx
   problem document, never a 5xx and never someone else's data; object keys cannot leave the
   store even with a valid signature.
4. Security headers are on every kind of response.
5. Tokens that are expired or name a disabled or deleted account are refused (the rest of the
   token rules are tested in test_identity.py).
6. schemathesis, driven by /openapi.json, finds no 5xx, signed in or not.

Everything runs on both database engines: PostgreSQL refuses some values SQLite accepts.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import re
import secrets
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import delete, select, update
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from api.app import create_app
from api.auth import current_device, current_principal
from api.gates import public
from api.routes.health import monitoring
from evidence import clock
from evidence.access import ACTIONS, WITHOUT_SECOND_FACTOR
from evidence.accounts.models import Role, User
from evidence.accounts.service import create_device, create_user
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import InvalidInput
from evidence.identity.signin import login
from evidence.identity.tokens import issue_token
from evidence.ingest.service import process_upload
from evidence.migrate import upgrade
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.ingest import Dock
from tests.fixtures.people import PASSWORD, ROLES, Force, approve_pending, make_force
from tests.fixtures.people import login as http_login

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

PROBLEM_JSON = "application/problem+json"

# ==============================================================================================
# 1. The route table: every route says who may call it
# ==============================================================================================


@dataclass(frozen=True)
class Rule:
    """How a route is gated: `person` (with the action the policy is asked about), `device`
    or `public`. A person is identified `via` a bearer token (the JSON API) or the UI's
    session cookie (`ui_gate`)."""

    kind: str
    action: str | None = None
    via: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}({self.action}, {self.via})" if self.action else self.kind


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as declared, e.g. /api/v1/objects/{key:path}
    rule: Rule | None
    route: Any = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _calls_in(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _calls_in(dep)


def rules_of(route: Any) -> set[Rule]:
    """The gates found anywhere in the route's dependency tree."""
    rules: set[Rule] = set()

    def walk(dependant: Any) -> None:
        for dep in dependant.dependencies:
            call = dep.call
            if call is public:
                rules.add(Rule("public"))
            elif call is current_device:
                rules.add(Rule("device"))
            elif call is monitoring:
                rules.add(Rule("monitoring"))
            elif hasattr(call, "action"):
                bearer = current_principal in set(_calls_in(dep))
                rules.add(Rule("person", call.action, "bearer" if bearer else "session"))
            walk(dep)

    walk(route.dependant)
    return rules


def flat_routes(app: Any) -> Iterator[tuple[Any, Any]]:
    """(declared route, route as mounted) for every route, however deeply routers nest."""
    try:  # FastAPI >= 0.16x keeps included routers whole; this walks them
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI copies every route into app.routes
        yield from ((route, route) for route in app.routes)
        return
    for context in iter_route_contexts(app.routes):
        yield context.original_route, context


def route_table(app: Any) -> tuple[list[Endpoint], list[Any]]:
    """(every API endpoint with its rule, every other route) of an app."""
    endpoints, others = [], []
    for declared, route in flat_routes(app):
        if not isinstance(declared, APIRoute):
            others.append(declared)
            continue
        rules = rules_of(route)
        rule = next(iter(rules)) if len(rules) == 1 else None
        for method in sorted(route.methods):
            endpoints.append(Endpoint(method, route.path, rule, route))
    return endpoints, others


def _app_for_inspection() -> Any:
    with tempfile.TemporaryDirectory() as d:
        return create_app(Settings(data_dir=Path(d), database_url=f"sqlite:///{d}/e.db"))


APP = _app_for_inspection()
ENDPOINTS, OTHER_ROUTES = route_table(APP)
# Mutating calls after reading ones, deletions last, so no call removes what another needs.
_ORDER = {"GET": 0, "HEAD": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 2}
GATED = sorted(
    (e for e in ENDPOINTS if e.rule and e.rule.kind != "public"),
    key=lambda e: (_ORDER.get(e.method, 1), e.path),
)

# Routes anyone may call, each argued for where it is declared (api/gates.py). Making a route
# public is a security decision: add it here only after reading that argument.
REVIEWED_PUBLIC = {
    "GET /healthz",
    "GET /readyz",
    "GET /",
    "POST /api/v1/auth/token",
    "GET /api/v1/ledger/checkpoint",
    "GET /api/v1/ledger/key",
    # The force's bundle-signing public keys and their validity periods (api/routes/bundles.py).
    "GET /api/v1/bundles/key",
    "GET /api/v1/bundles/keys",
    "GET /api/v1/objects/{key:path}",
    "PUT /api/v1/objects/{key:path}",
    # The UI's sign-in form (same lock-out and rate limit as the token route), sign-out
    # (CSRF-checked) and its static files (looked up by exact name in a fixed table).
    "GET /ui/login",
    "POST /ui/login",
    "POST /ui/logout",
    "GET /ui/static/{name}",
    # The public keys a court pins, as the two API routes above serve them (api/ui/routes.py).
    "GET /ui/about",
    # Sign-in through the force's IdP: a redirect out (writes nothing) and the way back, which
    # checks the state against this browser's sealed flow cookie before anything else.
    "GET /ui/login/oidc",
    "GET /ui/login/oidc/callback",
    # Enrolment links: the token in the path (256 random bits, stored hashed, one use,
    # expiring) is the credential; the form also carries the sign-in form's nonce.
    "POST /api/v1/auth/enrol",
    "GET /ui/enrol/{token}",
    "POST /ui/enrol/{token}",
    # Public submission links (api/routes/submissions.py, api/ui/submissions.py): the token in
    # the path (256 random bits, stored hashed, expiring, one use) is the credential; every
    # request counts against the link's and the address's rate limits, unknown tokens
    # against the address's guessing limit; what arrives is quarantined until reviewed.
    "GET /api/v1/public/submissions/{token}",
    "POST /api/v1/public/submissions/{token}/files",
    "PUT /api/v1/public/submissions/{token}/files/{file_id}/chunks/{number}",
    "POST /api/v1/public/submissions/{token}/files/{file_id}/complete",
    "POST /api/v1/public/submissions/{token}/finish",
    "GET /api/v1/public/submissions/{token}/receipt",
    "GET /submit/{token}",
    "GET /submit/{token}/receipt",
}


def test_every_route_declares_who_may_call_it() -> None:
    undeclared = [
        f"{e}: found {sorted(map(str, rules_of(e.route))) or 'no gate'}"
        for e in ENDPOINTS
        if e.rule is None
    ]
    assert not undeclared, (
        "routes without exactly one access rule (add Depends(gate('...')), "
        "Depends(current_device) or Depends(public)):\n  " + "\n  ".join(undeclared)
    )
    unknown = [
        f"{e}: {e.rule.action}"
        for e in ENDPOINTS
        if e.rule and e.rule.action is not None and e.rule.action not in ACTIONS
    ]
    assert not unknown, "actions missing from evidence.access.ACTIONS:\n  " + "\n  ".join(unknown)


def test_the_only_routes_outside_the_table_are_documentation_and_static_files() -> None:
    """A plain Starlette route or a mounted app has no dependencies to declare a gate with."""
    docs = {APP.openapi_url, APP.docs_url, APP.redoc_url, APP.swagger_ui_oauth2_redirect_url}
    strays = [
        getattr(r, "path", repr(r))
        for r in OTHER_ROUTES
        if getattr(r, "path", None) not in docs
        and not (isinstance(r, Mount) and isinstance(r.app, StaticFiles))
    ]
    assert not strays, f"routes that bypass the gates (not FastAPI routes): {strays}"


def test_public_routes_are_the_reviewed_ones() -> None:
    public_now = {str(e) for e in ENDPOINTS if e.rule == Rule("public")}
    assert public_now <= REVIEWED_PUBLIC, f"newly public, review: {public_now - REVIEWED_PUBLIC}"


# ==============================================================================================
# The world the matrix runs in: a server, a force, a clip, a case
# ==============================================================================================

# One user per role; pc_smith is the officer whose camera recorded the clip.
PEOPLE = {
    "officer": "pc_smith",
    "evidence_officer": "eo_brown",
    "cps": "cps_green",
    "auditor": "aud_white",
    "admin": "adm_black",
    # Signed in with a password only (no TOTP): every route but their own account's and
    # session's refuses them (docs/disclosure.md); tests/test_disclosure.py has them with it.
    "external": "ext_grey",
}
# Every caller's role: the test force's, and the external recipient made for this module.
ROLE_OF = {**{name: role for name, (role, _) in ROLES.items()}, "ext_grey": "external"}
assert set(PEOPLE) == {r.value for r in Role}, "a new role needs a member of the test force"
CALLERS = ["anonymous", "device", *PEOPLE.values()]
UI_SESSION_COOKIE = "evidence_ui"


@dataclass
class Credentials:
    headers: dict[str, str] = field(default_factory=dict)
    csrf: str | None = None  # the UI's forms carry it


@dataclass
class World:
    engine: str
    url: str
    http: httpx.Client  # holds no cookies: every call states its own credentials
    ctx: Context
    force: Force
    device_key: str
    clip_id: str  # recorded by pc_smith (PC1234)
    clip_sha256: str
    upload_id: str
    case_id: str
    ui_sessions: dict[str, Credentials]
    tag: str = "INC-1"

    def headers(self, caller: str) -> dict[str, str]:
        """Credentials for the JSON API."""
        if caller == "anonymous":
            return {}
        if caller == "device":
            return {"Authorization": f"Device {self.device_key}"}
        return self.force.as_(caller)

    def renew(self) -> None:
        """New tokens and sessions for everyone, after a sign-out route has (rightly) ended
        theirs. Issued directly: by now the matrix's refused sign-ins have filled this
        address's sign-in rate limit, as they should."""
        from api.ui.session import UISession, encode_session

        with self.ctx.db.session() as s:
            users = {
                u.username: u
                for u in s.scalars(select(User).where(User.username.in_(list(ROLE_OF))))
            }
        tokens = {name: issue_token(self.ctx, users[name]).access_token for name in ROLE_OF}
        self.force.tokens = tokens
        if self.ui_sessions:
            now = int(clock.now().timestamp())
            self.ui_sessions = {
                name: _cookie_credentials(
                    self.ctx,
                    encode_session(
                        self.ctx, UISession(secrets.token_urlsafe(18), now, tokens[name])
                    ),
                )
                for name in PEOPLE.values()
            }

    def credentials(self, caller: str, rule: Rule) -> Credentials:
        """What `caller` presents to a route with `rule`: people use the UI's session cookie
        on the UI's pages and a bearer token everywhere else."""
        if rule.via == "session" and caller in self.ui_sessions:
            return self.ui_sessions[caller]
        return Credentials(self.headers(caller))


def _future(days: int = 7) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).isoformat()


def ui_sign_in(base: str, ctx: Context, username: str) -> Credentials:
    """Sign in through the UI's own form, as a browser does; returns the session cookie and the
    CSRF token its forms carry."""
    from api.ui.session import LOGIN_COOKIE

    with httpx.Client(base_url=base, timeout=30) as browser:
        browser.get("/ui/login")
        r = browser.post(
            "/ui/login",
            data={
                "username": username,
                "password": PASSWORD,
                "acknowledge": "yes",
                "nonce": browser.cookies.get(LOGIN_COOKIE, ""),
                "next": "",
            },
        )
        assert r.status_code == 303 and UI_SESSION_COOKIE in r.cookies, (username, r.status_code)
        cookie = r.cookies[UI_SESSION_COOKIE]
    return _cookie_credentials(ctx, cookie)


def _cookie_credentials(ctx: Context, cookie: str) -> Credentials:
    from starlette.requests import Request

    from api.ui.session import csrf_token

    # The CSRF token is derived from the session, as the pages render it.
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/ui/",
        "server": ("127.0.0.1", 80),
        "query_string": b"",
        "headers": [(b"cookie", f"{UI_SESSION_COOKIE}={cookie}".encode())],
        "app": SimpleNamespace(state=SimpleNamespace(ctx=ctx)),
    }
    return Credentials({"Cookie": f"{UI_SESSION_COOKIE}={cookie}"}, csrf_token(Request(scope)))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, clip_with_sidecar
) -> Iterator[World]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"security-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/evidence.db"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    upgrade(url)
    ctx = Context(make_settings(tmp, url))
    key = create_device(ctx, None, "dock-1").key
    with running_api(ctx.settings) as base, httpx.Client(base_url=base, timeout=30) as http:
        docked = Dock(http, key).dock(clip_with_sidecar)
        process_upload(ctx, docked["id"])
        force = make_force(ctx, http)
        create_user(ctx, "ext_grey", "external", PASSWORD)
        force.tokens["ext_grey"] = http_login(http, "ext_grey")
        eo, adm = force.as_("eo_brown"), force.as_("adm_black")
        case = http.post("/api/v1/cases", headers=eo, json={"title": "R v Doe", "reference": "U1"})
        case_id, clip_id = case.json()["id"], docked["clip_id"]
        # So that every role the policy allows can also reach the objects themselves: the CPS
        # lawyer is a member of the case holding the clip, the auditor holds a grant on it.
        setup = [
            http.post(f"/api/v1/cases/{case_id}/items", headers=eo, json={"clip_ids": [clip_id]}),
            http.post(
                f"/api/v1/cases/{case_id}/members", headers=eo, json={"username": "cps_green"}
            ),
            http.post(f"/api/v1/clips/{clip_id}/tags", headers=eo, json={"tag": "INC-1"}),
            http.post(
                "/api/v1/grants",
                headers=adm,
                json={
                    "username": "aud_white",
                    "clip_id": clip_id,
                    "reason": "security tests",
                    "expires_at": _future(),
                },
            ),
        ]
        assert all(r.status_code < 300 for r in [case, *setup]), [r.text for r in [case, *setup]]
        assert approve_pending(ctx) == 1  # the grant, by the second administrator
        has_ui = any(e.rule.via == "session" for e in GATED)
        sessions = {name: ui_sign_in(base, ctx, name) for name in PEOPLE.values()} if has_ui else {}
        assert not http.cookies, "the API client must not collect cookies"
        yield World(
            request.param,
            base,
            http,
            ctx,
            force,
            key,
            clip_id,
            clip_with_sidecar.sha256,
            docked["id"],
            case_id,
            sessions,
        )


# ==============================================================================================
# 2. The authorization matrix
# ==============================================================================================


# Path parameters by name; any other name gets a fresh uuid (no such object: 404 is fine).
def path_value(world: World, name: str) -> str:
    known = {
        "clip_id": world.clip_id,
        "case_id": world.case_id,
        "upload_id": world.upload_id,
        "tag": world.tag,
    }
    return known.get(name, str(uuid.uuid4()))


# Values by field or query-parameter name, where a generic example would be refused for
# reasons that have nothing to do with access (an id must exist, a reason must be a known code).
def named_value(world: World, name: str) -> Any:
    return {
        "clip_id": world.clip_id,
        "clip_ids": [world.clip_id],
        "case_id": world.case_id,
        "username": "cps_green",
        "reason": "audit",
        "category": "evidential",
        "expires_at": _future(),
        "sha256": uuid.uuid4().hex * 2,
        "index": 0,
        "tree_size": 1,
        "first": 1,
        "second": 1,
        "at": "0:01",
        "action": "enable",  # the UI's enable/disable buttons (users, devices)
    }.get(name)


# Whole bodies for the few routes where field names alone are not enough. Keyed by
# "METHOD path"; a route missing here gets a body derived from its schema, or none at all.
def body_override(world: World, endpoint: Endpoint) -> Any:
    return {
        "POST /api/v1/grants": {
            "username": "aud_white",
            "clip_id": world.clip_id,
            "reason": "authorization matrix",
            "expires_at": _future(),
        },
        "POST /api/v1/uploads": {
            "sha256": uuid.uuid4().hex * 2,
            "size": 1,
            "filename": "matrix.mp4",
            "metadata": {},
        },
    }.get(str(endpoint))


OPENAPI = APP.openapi()


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = OPENAPI["components"]["schemas"][name]
    return schema


def example(world: World, schema: dict[str, Any], name: str = "") -> Any:
    """A small valid value for a JSON schema (FastAPI's dialect), preferring known names."""
    hinted = named_value(world, name)
    if hinted is not None:
        return hinted
    schema = _resolve(schema)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(s).get("type") != "null"]
            return example(world, options[0], name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {
            k: example(world, s, k)
            for k, s in schema.get("properties", {}).items()
            if k in schema.get("required", [])
        }
    if kind == "array":
        return [example(world, schema.get("items", {}))] * max(1, schema.get("minItems", 1))
    if kind in ("integer", "number"):
        return schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
    if kind == "boolean":
        return False
    if schema.get("format") == "date-time":
        return _future()
    return "matrix-" + "x" * max(0, schema.get("minLength", 1) - 7)


def declared_form_fields(route: Any) -> list[str]:
    """Form fields a route (or its dependencies, like the CSRF check) reads."""
    names: list[str] = []

    def walk(dependant: Any) -> None:
        names.extend(f.alias for f in dependant.body_params)
        for dep in dependant.dependencies:
            walk(dep)

    walk(route.dependant)
    return names


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    data: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path} params={self.params} json={self.json} data={self.data}"


def build_call(world: World, endpoint: Endpoint) -> Call:
    """Path parameters from real ids; required query parameters and the body from the OpenAPI
    operation (or, for routes outside the schema such as the UI's, from the declared form
    fields); a route nothing is known about is still called, with an empty body."""
    path = re.sub(
        r"\{(\w+)(:\w+)?\}", lambda m: quote(path_value(world, m[1]), safe=""), endpoint.path
    )
    call = Call(endpoint.method, path)
    operation = (
        OPENAPI["paths"].get(re.sub(r":\w+\}", "}", endpoint.path), {}).get(endpoint.method.lower())
    )
    if operation is None:  # not in the schema
        for name in declared_form_fields(endpoint.route):
            call.data = call.data or {}
            call.data[name] = named_value(world, name) or "matrix-x"
        for p in endpoint.route.dependant.query_params:
            if named_value(world, p.alias) is not None:
                call.params[p.alias] = named_value(world, p.alias)
        if call.data is None and endpoint.method in ("POST", "PUT", "PATCH"):
            call.json = {}
        return call
    for p in operation.get("parameters", []):
        if p["in"] == "query" and (p.get("required") or named_value(world, p["name"]) is not None):
            call.params[p["name"]] = example(world, p.get("schema", {}), p["name"])
    content = operation.get("requestBody", {}).get("content", {})
    override = body_override(world, endpoint)
    if override is not None:
        call.json = override
    elif "application/json" in content:
        call.json = example(world, content["application/json"]["schema"])
    elif "application/x-www-form-urlencoded" in content:
        call.data = example(world, content["application/x-www-form-urlencoded"]["schema"])
    elif endpoint.method in ("POST", "PUT", "PATCH"):
        call.json = {}
    return call


def send(world: World, call: Call, credentials: Credentials) -> httpx.Response:
    data = call.data
    if data is not None and "csrf" in data:
        data = {**data, "csrf": credentials.csrf or ""}
    return world.http.request(
        call.method,
        call.path,
        params=call.params,
        json=call.json,
        data=data,
        headers=credentials.headers,
    )


def expectation(rule: Rule, caller: str) -> str:
    """What the policy says `caller` gets from a route with `rule`."""
    if caller == "anonymous" or rule.kind == "monitoring":  # no person's credential opens it
        return "unauthenticated"
    if rule.kind == "device":
        return "allowed" if caller == "device" else "unauthenticated"
    if caller == "device":
        return "unauthenticated"
    role = Role(ROLE_OF[caller])
    if role == Role.external and rule.action not in WITHOUT_SECOND_FACTOR:
        return "forbidden"  # no TOTP at sign-in: nothing disclosed opens
    return "allowed" if role in ACTIONS[rule.action] else "forbidden"  # type: ignore[index]


def _to_sign_in(r: httpx.Response) -> bool:
    location = r.headers.get("location", "")
    return r.status_code in (302, 303, 307) and location.startswith("/ui/login")


def verdict(rule: Rule, expected: str, r: httpx.Response) -> str | None:
    """None if the response is what was expected, else what was wrong."""
    got = f"{r.status_code} {r.headers.get('location', '')} {r.text[:160]}"
    if r.status_code >= 500:
        return f"server error: {got}"
    ui = rule.via == "session"
    if expected == "unauthenticated":
        if ui and not _to_sign_in(r):
            return f"expected a redirect to the sign-in page, got {got}"
        if not ui and (r.status_code != 401 or not r.headers.get("www-authenticate")):
            challenge = r.headers.get("www-authenticate")
            return f"expected 401 with WWW-Authenticate, got {got} (challenge: {challenge})"
    elif expected == "forbidden":
        if r.status_code != 403:
            return f"expected 403, got {got}"
    elif r.status_code in (401, 403) or _to_sign_in(r):
        return f"the policy allows this caller, but got {got}"
    error_type = "text/html" if ui else PROBLEM_JSON
    if r.status_code >= 400 and not r.headers["content-type"].startswith(error_type):
        return f"an error page should be {error_type}: {r.headers['content-type']}"
    return None


@pytest.mark.parametrize("endpoint", GATED, ids=str)
def test_authorization_matrix(world: World, endpoint: Endpoint) -> None:
    rule = endpoint.rule
    assert rule is not None
    call = build_call(world, endpoint)
    wrong = []
    # Refusals first, then the callers who may act (whose calls may change things).
    for caller in sorted(CALLERS, key=lambda c: expectation(rule, c) == "allowed"):
        expected = expectation(rule, caller)
        problem = verdict(rule, expected, send(world, call, world.credentials(caller, rule)))
        if problem:
            wrong.append(f"{caller} ({expected}): {problem}")
    # A credential meant for the other half opens nothing: the UI's cookie is no credential
    # for the JSON API (so no other site can ride on it), nor a bearer token for the UI.
    if rule.kind == "person" and world.ui_sessions:
        other = (
            Credentials(world.headers("eo_brown"))
            if rule.via == "session"
            else world.ui_sessions["eo_brown"]
        )
        problem = verdict(rule, "unauthenticated", send(world, call, other))
        if problem:
            what = "bearer token" if rule.via == "session" else "UI cookie"
            wrong.append(f"eo_brown's {what}: {problem}")
    if endpoint.path.endswith("/logout"):
        world.renew()  # the callers allowed to sign out just did
    assert not wrong, f"{endpoint} [{rule}] {call}:\n  " + "\n  ".join(wrong)


def test_the_matrix_covers_every_role_and_both_kinds_of_gate() -> None:
    """Guards the guard: if the route table were misread the matrix would be empty and pass."""
    assert {e.rule.kind for e in GATED} == {"person", "device", "monitoring"}, [
        str(e) for e in GATED
    ]
    assert len([e for e in GATED if e.path.startswith("/api/")]) >= 20
    assert {ROLE_OF[p] for p in PEOPLE.values()} == {r.value for r in Role}


# ==============================================================================================
# 3. Tampered paths and ids
# ==============================================================================================

HOSTILE_IDS = [
    str(uuid.uuid4()),  # no such object
    "../../../etc/passwd",  # traversal, encoded as one path segment
    "..%2F..%2Fhealthz",  # traversal, double encoded
    "%2e%2e%2f%2e%2e%2fkeys",
    "' OR '1'='1",  # SQL
    "1; DROP TABLE clips; --",
    "%' OR 1=1 --",
    "\x00",  # NUL: PostgreSQL refuses it in text
    "clip\x00' OR 1=1",
    "x" * 4000,  # overlong
    "\u202e\u0000\U0001f4a9",
]

FOOTAGE_ROUTES = [
    "/api/v1/clips/{id}",
    "/api/v1/clips/{id}/stream?reason=audit",
    "/api/v1/clips/{id}/original?reason=audit",
    "/api/v1/clips/{id}/thumbnail",
    "/api/v1/cases/{id}",
]


def secrets_of(world: World) -> list[str]:
    """What no refusal may contain: the clip's hash, its officer and incident, the store's
    presigning key."""
    presign_key = (world.ctx.settings.secrets_dir() / "presign.key").read_text().strip()
    return [world.clip_sha256, "PC1234", "BWV-7781", presign_key]


def assert_refused_cleanly(
    r: httpx.Response, world: World, what: str, *, content_type: str = PROBLEM_JSON
) -> None:
    assert 400 <= r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith(content_type), (what, r.headers["content-type"])
    leaked = [s for s in secrets_of(world) if s in r.text]
    assert not leaked, f"{what} leaked {leaked}: {r.text[:300]}"


def test_another_officers_clip_is_not_found(world: World) -> None:
    """pc_jones may not learn that pc_smith's clip exists: every route says 404."""
    jones = world.force.as_("pc_jones")
    clip = world.clip_id
    attempts = [("GET", r.replace("{id}", clip), None) for r in FOOTAGE_ROUTES[:4]] + [
        ("GET", f"/api/v1/cases/{world.case_id}", None),
        ("POST", f"/api/v1/clips/{clip}/tags", {"tag": "mine"}),
        ("DELETE", f"/api/v1/clips/{clip}/tags/{world.tag}", None),
        ("POST", f"/api/v1/clips/{clip}/bookmarks", {"at_ms": 0, "note": "x"}),
    ]
    for method, path, body in attempts:
        r = world.http.request(method, path, headers=jones, json=body)
        assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text[:200]}"
        assert_refused_cleanly(r, world, f"{method} {path}")
    # Searching cannot reach it either, whatever the filter or wildcard.
    for params in (
        {"officer_id": "PC1234"},
        {"q": "%%%"},
        {"q": "___"},
        {"tag": world.tag},
        {"case_id": world.case_id},
        {"q": "' OR '1'='1"},
    ):
        r = world.http.get("/api/v1/clips", headers=jones, params=params)
        assert r.status_code == 200 and r.json()["items"] == [], (params, r.text[:300])


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=lambda s: repr(s[:20]))
def test_hostile_ids_are_refused_cleanly(world: World, hostile: str) -> None:
    eo = world.force.as_("eo_brown")
    segment = quote(hostile, safe="%")  # keep the pre-encoded ones as they are
    for route in FOOTAGE_ROUTES:
        path = route.replace("{id}", segment)
        assert_refused_cleanly(world.http.get(path, headers=eo), world, path)
    for path, body in (
        (f"/api/v1/clips/{segment}/tags", {"tag": "x"}),
        (f"/api/v1/cases/{segment}/items", {"clip_ids": [hostile]}),
        (f"/api/v1/cases/{world.case_id}/items", {"clip_ids": [hostile]}),
        (f"/api/v1/cases/{world.case_id}/members", {"username": hostile}),
    ):
        assert_refused_cleanly(world.http.post(path, headers=eo, json=body), world, path)
    device = world.headers("device")
    for method, path in (
        ("GET", f"/api/v1/uploads/{segment}"),
        ("POST", f"/api/v1/uploads/{segment}/complete"),
    ):
        assert_refused_cleanly(world.http.request(method, path, headers=device), world, path)
    # As a user name at sign-in (nothing is known about the caller yet).
    r = world.http.post("/api/v1/auth/token", data={"username": hostile, "password": PASSWORD})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    # The UI's pages answer HTML, but the same way: a 4xx, nothing leaked.
    if world.ui_sessions:
        session = world.ui_sessions["eo_brown"].headers
        for path in (
            f"/ui/clips/{segment}",
            f"/ui/cases/{segment}",
            f"/ui/clips/{segment}/stream?reason=audit",
        ):
            r = world.http.get(path, headers=session)
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
            assert not [s for s in secrets_of(world) if s in r.text], path
    # In query strings too, asked by pc_jones, who can see no clip: any item is a leak.
    jones = world.force.as_("pc_jones")
    for params in (
        {"case_id": hostile},
        {"tag": hostile},
        {"officer_id": hostile},
        {"q": hostile[:200]},
        {"state": hostile},
        {"category": hostile},
    ):
        r = world.http.get("/api/v1/clips", headers=jones, params=params)
        assert r.status_code < 500, (params, r.text[:300])
        if r.status_code == 200:
            assert r.json()["items"] == [], params


def raw_get(
    world: World, raw_path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """GET with the path sent byte for byte (httpx would resolve `../` before sending)."""
    parts = urlsplit(world.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", raw_path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type", ""), resp.read()
    finally:
        conn.close()


def test_literal_dot_segments_do_not_reach_other_routes(world: World) -> None:
    eo = world.force.as_("eo_brown")
    for raw in (
        "/api/v1/clips/../../../api/v1/audit/access",
        f"/api/v1/clips/{world.clip_id}/../../ledger/entries",
        "/api/v1/objects/../../../etc/passwd",
        "/api/v1/objects/incoming/../../keys/presign.key",
    ):
        status, ctype, body = raw_get(world, raw, eo)
        assert 400 <= status < 500 and ctype.startswith(PROBLEM_JSON), (raw, status, body[:200])
        assert b'"entries"' not in body and b'"items"' not in body and b"root:" not in body, raw


def test_object_keys_cannot_leave_the_store_even_when_signed(world: World) -> None:
    """The presigned object routes are public; their signature is the check. A traversal key
    is refused unsigned, with a signature for another key, and with a genuine signature."""
    store = world.ctx.store
    good = urlsplit(store.presign_get(f"originals/{world.clip_sha256}", dt.timedelta(minutes=5)))
    for key in (
        "../keys/presign.key",
        "%2e%2e/keys/presign.key",
        "..%2Fkeys%2Fpresign.key",
        f"originals/{world.clip_sha256}/../../keys/presign.key",
        "/etc/passwd",
    ):
        for query in ("", good.query):  # unsigned; signed for another key
            r = world.http.get(f"/api/v1/objects/{key}?{query}")
            assert_refused_cleanly(r, world, f"GET {key}?{query[:20]}")
            r = world.http.put(f"/api/v1/objects/{key}?{query}", content=b"overwrite")
            assert_refused_cleanly(r, world, f"PUT {key}?{query[:20]}")
        try:
            signed = store.presign_get(key, dt.timedelta(minutes=5))
        except InvalidInput:  # the store will not even sign it: as good
            continue
        r = world.http.get(urlsplit(signed).path + "?" + urlsplit(signed).query)
        assert_refused_cleanly(r, world, f"GET {key}, signed by the store")
    # ... while the genuine URL for the genuine key works (so the refusals above mean something).
    assert world.http.get(f"{good.path}?{good.query}").status_code == 200


# ==============================================================================================
# 4. Security headers on every kind of response
# ==============================================================================================


def assert_security_headers(r: httpx.Response, what: str) -> None:
    csp = r.headers.get("content-security-policy", "")
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", (what, csp)
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, (what, csp)
    assert "default-src" in directives, (what, csp)
    assert r.headers.get("x-content-type-options") == "nosniff", what
    assert r.headers.get("x-frame-options") == "DENY", what


def test_security_headers_on_every_kind_of_response(world: World) -> None:
    eo = world.force.as_("eo_brown")
    responses = {
        "API JSON": world.http.get("/api/v1/me", headers=eo),
        "problem (404)": world.http.get(f"/api/v1/clips/{uuid.uuid4()}", headers=eo),
        "problem (422)": world.http.get("/api/v1/clips", headers=eo, params={"page": 0}),
        "streamed clip (206)": world.http.get(
            f"/api/v1/clips/{world.clip_id}/stream",
            headers={**eo, "Range": "bytes=0-99"},
            params={"reason": "audit"},
        ),
        "healthz": world.http.get("/healthz"),
        "plain text (checkpoint)": world.http.get("/api/v1/ledger/checkpoint"),
        "unauthenticated (401)": world.http.get("/api/v1/clips"),
        "unknown route (404)": world.http.get("/no/such/route"),
    }
    assert responses["streamed clip (206)"].status_code == 206
    for what, r in responses.items():
        assert_security_headers(r, what)


def test_every_401_carries_a_challenge(world: World) -> None:
    """RFC 9110 §15.5.2: a 401 says how to authenticate: Bearer for people, Device for docks."""
    cases = {
        "no token": world.http.get("/api/v1/me"),
        "garbage token": world.http.get("/api/v1/me", headers={"Authorization": "Bearer nope"}),
        "device key on a person's route": world.http.get(
            "/api/v1/me", headers=world.headers("device")
        ),
        "no device key": world.http.get(f"/api/v1/uploads/{world.upload_id}"),
        "unknown device key": world.http.get(
            f"/api/v1/uploads/{world.upload_id}", headers={"Authorization": "Device evd_unknown"}
        ),
        "person's token on a device route": world.http.get(
            f"/api/v1/uploads/{world.upload_id}", headers=world.force.as_("eo_brown")
        ),
    }
    for what, r in cases.items():
        assert r.status_code == 401, (what, r.status_code, r.text)
        assert r.headers.get("www-authenticate"), (what, dict(r.headers))
        assert r.headers["content-type"].startswith(PROBLEM_JSON), what
    assert cases["no token"].headers["www-authenticate"].startswith("Bearer")
    assert cases["no device key"].headers["www-authenticate"].startswith("Device")


# ==============================================================================================
# 5. Tokens that must no longer open anything
# ==============================================================================================


def _user_token(world: World, username: str) -> str:
    issued = login(world.ctx, username, PASSWORD, None, source_ip="198.51.100.9")
    return issued.access_token


def _refused(world: World, token: str) -> httpx.Response:
    r = world.http.get("/api/v1/clips", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    return r


def test_an_expired_token_is_refused(world: World) -> None:
    with world.ctx.db.session() as s:
        user = s.query(User).filter_by(username="eo_brown").one()
    ttl = world.ctx.settings.jwt_ttl_seconds
    issued_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ttl + 120)
    clock.set_clock(lambda: issued_at)
    try:
        token = issue_token(world.ctx, user).access_token
    finally:
        clock.set_clock(None)
    assert "expired" in _refused(world, token).json()["detail"]


def test_a_token_for_a_disabled_or_deleted_account_is_refused(world: World) -> None:
    for name in ("pc_leaver", "pc_gone"):
        create_user(world.ctx, name, "evidence_officer", PASSWORD)
    leaver, gone = _user_token(world, "pc_leaver"), _user_token(world, "pc_gone")
    r = world.http.get("/api/v1/clips", headers={"Authorization": f"Bearer {leaver}"})
    assert r.status_code == 200, r.text  # the tokens work...
    with world.ctx.db.write_session() as s:
        s.execute(update(User).where(User.username == "pc_leaver").values(disabled=True))
        s.execute(delete(User).where(User.username == "pc_gone"))
    _refused(world, leaver)  # ...until the account is disabled
    _refused(world, gone)  # ...or removed


# ==============================================================================================
# 6. schemathesis: no operation answers 5xx, whatever it is sent
# ==============================================================================================

# schemathesis 4's pytest integration (`schemathesis.pytest.from_fixture`) relies on pytest
# internals that pytest 9 removed (`Function._nodeid`), so the run goes through its CLI, the
# interface it documents and keeps stable, against the live server of the world fixture.
# Bounded for a 2-core machine: a few examples per operation, the examples, coverage
# (boundary and invalid values) and fuzzing phases, no stateful phase.
# The seed is fixed so a failure reproduces; set EVIDENCE_FUZZ_SEED to explore further.
# Every operation is included, the presigned object routes too: without a valid signature
# they must still answer 403, never 5xx, whatever the key, query or body.
FUZZ_SEED = os.environ.get("EVIDENCE_FUZZ_SEED", "20250301")


def run_schemathesis(
    world: World, headers: dict[str, str], workdir: Path
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{world.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "8",
        "--workers",
        "1",
        "--seed",
        FUZZ_SEED,
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--warnings",
        "off",
        "--no-color",
        *[arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")],
    ]
    # In a scratch directory: its crash cache (.schemathesis/) stays out of the repository.
    return subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workdir,
        env={**os.environ, "NO_COLOR": "1"},
    )


@pytest.mark.parametrize("who", ["evidence officer", "anonymous"])
def test_schemathesis_finds_no_server_error(world: World, who: str, tmp_path: Path) -> None:
    headers = world.force.as_("eo_brown") if who == "evidence officer" else {}
    try:
        result = run_schemathesis(world, headers, tmp_path)
    finally:
        world.renew()  # schemathesis calls the sign-out route too
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"schemathesis found failures ({who}):\n{report}"
    # ... and it really tested every operation the schema lists.
    operations = sum(len(ops) for ops in OPENAPI["paths"].values())
    assert re.search(rf"Tested: {operations}\b", result.stdout), report


# ==============================================================================================
# 7. What the public health and monitoring answers may say
# ==============================================================================================


def test_metrics_are_for_the_monitoring_token_and_count_refusals_as_one(tmp_path: Path) -> None:
    """No public signal tells an unknown name from a wrong password, a locked or a disabled
    account: /metrics answers only the scraper's token, and its refusals carry no reason."""
    from pydantic import SecretStr
    from sqlalchemy import update as sql_update

    url = f"sqlite:///{tmp_path}/e.db"
    upgrade(url)
    settings = make_settings(
        tmp_path, url, metrics_token=SecretStr("scraper-secret-1"), login_max_failures=2
    )
    ctx = Context(settings)
    create_user(ctx, "pc_real", "officer", PASSWORD, officer_id="PC1")
    create_user(ctx, "pc_gone", "officer", PASSWORD, officer_id="PC2")
    with ctx.db.write_session() as s:
        s.execute(sql_update(User).where(User.username == "pc_gone").values(disabled=True))
    with running_api(settings) as base:
        http = httpx.Client(base_url=base, timeout=30)
        token = http.post("/api/v1/auth/token", data={"username": "pc_real", "password": PASSWORD})
        person = {"Authorization": f"Bearer {token.json()['access_token']}"}
        for headers in (
            {},
            person,
            {"Authorization": "Bearer scraper-secret-2"},
            {"Authorization": "Basic c2NyYXBlci1zZWNyZXQtMQ=="},
        ):
            r = http.get("/metrics", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            assert "evidence_" not in r.text
        for name, password in (
            ("nobody", PASSWORD),
            ("pc_real", "wrong"),
            ("pc_real", "wrong"),
            ("pc_real", PASSWORD),
            ("pc_gone", PASSWORD),
        ):  # unknown, bad, locked, disabled
            assert (
                http.post(
                    "/api/v1/auth/token", data={"username": name, "password": password}
                ).status_code
                == 401
            )
        r = http.get("/metrics", headers={"Authorization": "Bearer scraper-secret-1"})
        assert r.status_code == 200
        refused = [
            line for line in r.text.splitlines() if line.startswith("evidence_login_failures_total")
        ]
        assert len(refused) == 1 and "{" not in refused[0], refused
    # Without a token configured, metrics are not served to anyone.
    with running_api(settings.model_copy(update={"metrics_token": None})) as base:
        r = httpx.get(base + "/metrics", headers={"Authorization": "Bearer scraper-secret-1"})
        assert r.status_code == 401


def test_readiness_says_ok_or_failed_and_keeps_the_details_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed check names no host, port, driver or path; the server log does."""
    import logging

    caplog.set_level(logging.ERROR, logger="api.routes.health")
    url = f"sqlite:///{tmp_path}/e.db"
    upgrade(url)
    with running_api(make_settings(tmp_path, url)) as base:
        r = httpx.get(base + "/readyz")
        assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "storage": "ok"}
    # A database that cannot be reached: the port is closed.
    dead = make_settings(
        tmp_path, f"postgresql+psycopg://evidence:pw@127.0.0.1:{_closed_port()}/evidence"
    )
    with running_api(dead) as base:
        r = httpx.get(base + "/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "checks": {"database": "failed", "storage": "ok"}}
    assert "127.0.0.1" in caplog.text and "127.0.0.1" not in r.text
    # A local store on a filesystem with less free space than the threshold.
    full = make_settings(tmp_path, url, storage_min_free_mb=2**40)
    with running_api(full) as base:
        r = httpx.get(base + "/readyz")
    assert r.status_code == 503 and r.json()["checks"] == {"database": "ok", "storage": "disk full"}
    assert str(full.resolved_storage_dir()) in caplog.text
    assert str(tmp_path) not in r.text


def _closed_port() -> int:
    from tests.fixtures.services import free_port

    return free_port()


def test_a_request_body_beyond_the_limit_is_a_413_before_any_route_parses_it(
    tmp_path: Path,
) -> None:
    """A device's declaration with a 10 MB sidecar, or any body streamed without a length,
    is refused whole with a problem document, and nothing reaches the permanent ledger.
    A declaration with the largest sidecar a dock sends (1 MiB) still goes through."""
    url = f"sqlite:///{tmp_path}/e.db"
    upgrade(url)
    settings = make_settings(tmp_path, url)
    ctx = Context(settings)
    key = create_device(ctx, None, "dock-big").key
    device = {"Authorization": f"Device {key}"}

    def declaration(sidecar_bytes: int) -> dict[str, Any]:
        return {
            "sha256": "ab" * 32,
            "size": 10,
            "filename": "FILE0001.MP4",
            "metadata": {"note": "x" * sidecar_bytes},
        }

    before = ctx.ledger.size()
    with running_api(settings) as base, httpx.Client(base_url=base, timeout=60) as http:
        r = http.post("/api/v1/uploads", headers=device, json=declaration(10_000_000))
        assert r.status_code == 413, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert str(settings.max_request_bytes) in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
            yield (
                b'{"sha256": "'
                + b"ab" * 32
                + b'", "size": 10, "filename": "a.mp4", "metadata": {"n": "'
            )
            for _ in range(20):
                yield b"y" * 1_000_000
            yield b'"}}'

        r = http.post(
            "/api/v1/uploads",
            headers={**device, "Content-Type": "application/json"},
            content=chunks(),
        )
        assert r.status_code == 413, r.text
        r = http.post("/api/v1/auth/token", data={"username": "x" * 9_000_000, "password": "p"})
        assert r.status_code == 413, r.text
        assert ctx.ledger.size() == before, "nothing refused reached the ledger"

        r = http.post("/api/v1/uploads", headers=device, json=declaration(1024 * 1024 - 100))
        assert r.status_code == 201, r.text
    assert ctx.ledger.size() == before + 1  # its upload.declared
