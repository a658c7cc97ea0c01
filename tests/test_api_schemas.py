"""The JSON API documents what it returns: /openapi.json names a response schema for every
JSON route and the problem document for its errors, declares both ways of signing in, and
real answers from a store after real work match their documented models exactly (no field
added, none dropped, none converted).

The models live in api/schemas/; a field a service starts to return without its schema is a
500 (the models forbid undeclared fields), which these calls and every other API test see.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import typing
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import TypeAdapter

from api.app import create_app
from api.problems import PROBLEM_JSON
from evidence import clock
from evidence.config import Settings
from tests.fixtures.people import PASSWORD


def _app_for_inspection() -> Any:
    with tempfile.TemporaryDirectory() as d:
        return create_app(Settings(data_dir=Path(d), database_url=f"sqlite:///{d}/e.db"))


APP = _app_for_inspection()
OPENAPI = APP.openapi()
# (method, path) -> the route as declared, with its response_model and responses. FastAPI
# 0.16x keeps included routers whole in app.routes; iter_route_contexts walks them.
ROUTES = {
    (method, context.path_format): context.original_route
    for context in iter_route_contexts(APP.routes)
    if isinstance(context.original_route, APIRoute)
    for method in context.methods or ()
}

# The routes whose answer is not a JSON document, and what it is instead. Every other route
# in the document answers JSON and must name its schema; a new route is one or the other.
NOT_JSON = {
    ("GET", "/metrics"): "Prometheus text",
    ("GET", "/api/v1/ledger/checkpoint"): "a signed note, text",
    ("GET", "/api/v1/ledger/key"): "the verifier key, text",
    ("GET", "/api/v1/bundles/key"): "a PEM public key, text",
    ("GET", "/api/v1/clips/{clip_id}/stream"): "video, ranged",
    ("GET", "/api/v1/clips/{clip_id}/original"): "the original bytes, ranged",
    ("GET", "/api/v1/clips/{clip_id}/thumbnail"): "a JPEG",
    ("GET", "/api/v1/bundles/{bundle_id}/download"): "the bundle's ZIP, ranged",
    ("GET", "/api/v1/audit/access.csv"): "CSV",
    ("GET", "/api/v1/objects/{key}"): "the object's bytes, ranged",
}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in OPENAPI["paths"].items()
        for method, op in ops.items()
    ]


def _model_name(schema: dict[str, Any]) -> list[str]:
    """The component(s) a response schema names: one, or each of a union's."""
    if "$ref" in schema:
        return [schema["$ref"].rsplit("/", 1)[1]]
    return [n for option in schema.get("anyOf", []) for n in _model_name(option)]


def test_every_json_route_names_its_response_schema() -> None:
    documented = {(method, path) for method, path, _ in _operations()}
    assert documented == {k for k, route in ROUTES.items() if route.include_in_schema}
    named = 0
    for method, path, op in _operations():
        answers = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        assert answers, (method, path)
        for status, response in answers.items():
            if status == "204":
                assert "content" not in response, (method, path)
                continue
            if (method, path) in NOT_JSON:
                assert response["content"] and "application/json" not in response["content"]
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            names = _model_name(schema)
            assert names, f"{method} {path} answers {status} JSON without a documented schema"
            for name in names:
                component = OPENAPI["components"]["schemas"][name]
                # A documented answer is exactly its fields (api/schemas: Out).
                assert component.get("additionalProperties") is False, (method, path, name)
            named += 1
    assert named >= 50  # every JSON route of the store, not a handful


def test_every_error_answer_is_documented_as_a_problem() -> None:
    problem = OPENAPI["components"]["schemas"]["Problem"]
    assert {"title", "status"} <= set(problem["required"])
    assert {"type", "title", "status", "detail"} <= set(problem["properties"])
    for method, path, op in _operations():
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        if path == "/readyz":  # not ready: a 503 with the checks, for load balancers
            assert list(errors) == ["503"]
            assert errors["503"]["content"] == op["responses"]["200"]["content"]
            continue
        if op.get("security") or op.get("parameters") or op.get("requestBody"):
            # A caller who signs in, or sends anything, can be refused: it says how.
            assert errors, f"{method} {path} documents none of its errors"
        for status, response in errors.items():
            content = response["content"]
            # Sent as application/problem+json (api/problems.py), and documented so: never
            # FastAPI's own validation-error shape, which this API does not send.
            assert list(content) == [PROBLEM_JSON], (method, path, status, content)
            assert content[PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "HTTPValidationError" not in OPENAPI["components"]["schemas"]


def test_both_ways_of_signing_in_are_declared() -> None:
    schemes = OPENAPI["components"]["securitySchemes"]
    assert schemes["Device"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": schemes["Device"]["description"],
    }
    assert "Device <key>" in schemes["Device"]["description"]
    assert schemes["OAuth2PasswordBearer"]["type"] == "oauth2"
    for method, path, op in _operations():
        if path.startswith("/api/v1/uploads"):
            assert op["security"] == [{"Device": []}], (method, path)


# -- real answers against their documented models ----------------------------------------------


class Api:
    """Calls a running store and checks each answer against the model its route documents."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.checked: set[tuple[str, str]] = set()

    def call(
        self, method: str, template: str, who: str | None = None, status: int = 200, **kw: Any
    ) -> Any:
        params = {k: kw.pop(k) for k in list(kw) if "{" + k + "}" in template}
        headers = kw.pop("headers", None) or (self.f.as_(who) if who else {})
        url = kw.pop("url", None) or template.format(**params)  # a presigned URL as given
        r = self.f.http.request(method, url, headers=headers, **kw)
        assert r.status_code == status, (method, template, r.status_code, r.text)
        body = r.json()
        route = ROUTES[(method, template)]
        documented = OPENAPI["paths"][template][method.lower()]["responses"][str(status)]
        names = _model_name(documented["content"]["application/json"]["schema"])
        model = route.responses.get(status, {}).get("model", route.response_model)
        assert names == [m.__name__ for m in typing.get_args(model) or [model]], template
        # Exactly the documented fields: validation refuses one too many (extra="forbid") or
        # one missing, and the round trip shows none was converted or added by a default.
        adapter = TypeAdapter(model)
        again = adapter.dump_python(adapter.validate_python(body), mode="json", exclude_unset=True)
        assert again == body, (method, template)
        self.checked.add((method, template))
        return body


@pytest.mark.e2e  # the answers come from a running store: see docs/testing.md
def test_real_answers_match_their_documented_models(bundled) -> None:  # type: ignore[no-untyped-def]
    f, ctx, case_id, bundle_id, _ = bundled
    api = Api(f)
    assert api.call("GET", "/healthz") == {"status": "ok"}
    assert api.call("GET", "/readyz")["status"] == "ok"
    assert api.call("GET", "/api/v1/me", "eo_brown")["role"] == "evidence_officer"
    assert api.call("GET", "/api/v1/bundles/keys")["keys"]

    # Clips: a page, the detail with its custody and retention, annotations.
    page = api.call("GET", "/api/v1/clips", "eo_brown")
    assert page["next_before"] is None and len(page["items"]) == 2
    clip_id = page["items"][0]["id"]
    api.call("GET", "/api/v1/clips/unattributed", "eo_brown")
    api.call("GET", "/api/v1/categories", "pc_smith")
    assert api.call(
        "POST", "/api/v1/clips/{clip_id}/tags", "eo_brown", clip_id=clip_id, json={"tag": "x/1"}
    ) == {"tags": ["x/1"]}
    api.call(
        "POST",
        "/api/v1/clips/{clip_id}/bookmarks",
        "eo_brown",
        status=201,
        clip_id=clip_id,
        json={"at_ms": 0, "note": "arrival"},
    )
    api.call("GET", "/api/v1/clips/{clip_id}/attribution", "eo_brown", clip_id=clip_id)
    viewing = api.call(
        "POST",
        "/api/v1/clips/{clip_id}/viewings",
        "eo_brown",
        status=201,
        clip_id=clip_id,
        json={"kind": "proxy", "reason": "investigation: schema check"},
    )
    assert viewing["url"].startswith("/api/v1/viewings/")
    hold = api.call(
        "POST",
        "/api/v1/holds",
        "eo_brown",
        status=201,
        json={"case_id": case_id, "reason": "appeal lodged"},
    )
    detail = api.call("GET", "/api/v1/clips/{clip_id}", "eo_brown", clip_id=clip_id)
    assert detail["custody"] and detail["retention"]["holds"][0]["id"] == hold["id"]
    assert "reason_withheld" not in detail["retention"]["holds"][0]
    # Those who may not read a hold's reasons are told it is withheld, as the policy says.
    held = api.call("GET", "/api/v1/holds", "adm_black")["items"]
    assert held[0]["reason"] is None and held[0]["reason_withheld"] is True
    assert api.call("GET", "/api/v1/holds", "eo_brown")["items"][0]["reason"] == "appeal lodged"

    # Cases, shares, bundles.
    assert api.call("GET", "/api/v1/cases", "eo_brown")["items"][0]["id"] == case_id
    assert api.call("GET", "/api/v1/cases/{case_id}", "cps_green", case_id=case_id)["exhibits"]
    api.call("GET", "/api/v1/cases/{case_id}/shares", "eo_brown", case_id=case_id)
    org = api.call(
        "POST",
        "/api/v1/organisations",
        "adm_black",
        status=201,
        json={"name": "Doe & Co Solicitors", "kind": "defence_firm"},
    )
    api.call(
        "PUT",
        "/api/v1/users/{username}/organisation",
        "adm_black",
        username="cps_green",
        json={"organisation_id": org["id"]},
    )
    assert api.call("GET", "/api/v1/organisations", "eo_brown")["items"][0]["members"] == 1
    assert (
        api.call("GET", "/api/v1/bundles/{bundle_id}", "cps_green", bundle_id=bundle_id)["state"]
        == "ready"
    )
    # The options the world's bundle was built with: the same bundle, reused (200, not 202).
    again = api.call(
        "POST",
        "/api/v1/cases/{case_id}/bundles",
        "eo_brown",
        case_id=case_id,
        json={"include_proxies": True},
    )
    assert again == {"id": bundle_id, "state": "ready", "reused": True}
    download = api.call(
        "POST",
        "/api/v1/bundles/{bundle_id}/viewings",
        "cps_green",
        status=201,
        bundle_id=bundle_id,
        json={"reason": "court preparation: schema check"},
    )
    assert download["media_type"] == "application/zip"

    # Retention, the camera register.
    api.call("GET", "/api/v1/retention/policy", "eo_brown")
    api.call("GET", "/api/v1/retention/schedule", "eo_brown", params={"within_days": 36500})
    api.call("GET", "/api/v1/disposals", "eo_brown")
    api.call("POST", "/api/v1/cameras", "eo_brown", status=201, json={"serial": "BWV-SCHEMA-1"})
    api.call(
        "POST",
        "/api/v1/cameras/{serial}/assignments",
        "eo_brown",
        status=201,
        serial="BWV-SCHEMA-1",
        json={"officer_id": "PC1234", "kind": "personal"},
    )
    api.call("GET", "/api/v1/cameras", "eo_brown")
    assert (
        api.call("GET", "/api/v1/cameras/{serial}", "eo_brown", serial="BWV-SCHEMA-1")["holder"]
        is not None
    )

    # The auditors' views and the ledger (entries: open-ended facts, by type).
    log = api.call("GET", "/api/v1/audit/access", "aud_white", params={"limit": 5})
    assert len(log["items"]) == 5 and log["next_before"] == log["items"][-1]["index"]
    api.call("GET", "/api/v1/audit/alerts", "aud_white")
    size = ctx.ledger.size()
    api.call("GET", "/api/v1/ledger/entries", "aud_white", params={"start": 0, "end": 3})
    api.call(
        "GET",
        "/api/v1/ledger/proofs/inclusion",
        "aud_white",
        params={"index": 0, "tree_size": size},
    )
    api.call(
        "GET", "/api/v1/ledger/proofs/consistency", "aud_white", params={"first": 1, "second": size}
    )
    expires = (clock.now() + dt.timedelta(days=1)).isoformat()
    grant = api.call(
        "POST",
        "/api/v1/grants",
        "adm_black",
        status=201,
        json={
            "username": "aud_white",
            "reason": "complaint review",
            "expires_at": expires,
            "case_id": case_id,
        },
    )
    assert grant["pending"] is True

    # Administration: a grant waits for a second administrator, with its four fields.
    [waiting] = [
        a
        for a in api.call("GET", "/api/v1/approvals", "adm_grey")["items"]
        if a["id"] == grant["request_id"]
    ]
    assert waiting["kind"] == "grant" and waiting["reason"] == "complaint review"
    api.call("GET", "/api/v1/users", "adm_black")
    device = api.call(
        "POST", "/api/v1/devices", "adm_black", status=201, json={"name": "dock-schema"}
    )
    api.call("GET", "/api/v1/devices", "adm_black")

    # A docking device: these answers are built in the route, so only this checks them.
    dock = {"Authorization": f"Device {device['key']}"}
    declared = api.call(
        "POST",
        "/api/v1/uploads",
        status=201,
        headers=dock,
        json={"sha256": "ab" * 32, "size": 5, "filename": "schema.mp4"},
    )
    [part] = declared["parts"]
    api.call("PUT", "/api/v1/objects/{key}", url=part["url"], content=b"12345")
    api.call(
        "POST",
        "/api/v1/uploads/{upload_id}/complete",
        status=202,
        headers=dock,
        upload_id=declared["id"],
    )
    api.call("GET", "/api/v1/uploads/{upload_id}", headers=dock, upload_id=declared["id"])

    # Signing in, and one's own account: answers the routes build (for their headers).
    api.call(
        "POST",
        "/api/v1/auth/token",
        data={"username": "pc_jones", "password": PASSWORD},
    )
    api.call("POST", "/api/v1/account/totp", "pc_jones")

    assert len(api.checked) >= 40
