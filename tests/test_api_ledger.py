"""The ledger routes (docs/ledger.md), spoken to over real HTTP."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from evidence.accounts.service import create_user
from evidence.context import Context
from evidence.ledger import merkle
from evidence.ledger.note import NoteVerifier, open_checkpoint
from tests.fixtures.api import running_api
from tests.fixtures.people import PASSWORD, login


@pytest.fixture
def api(ctx: Context):
    for i in range(11):
        ctx.ledger.append("test.event", actor="user:tester", subject={"clip": f"c{i}"}, n=i)
    with running_api(ctx.settings) as url:
        http = httpx.Client(base_url=url, timeout=10)
        yield http, ctx


def authorise(http: httpx.Client, ctx: Context, role: str = "auditor") -> None:
    """Entries and proofs are for auditors (and evidence officers); add the user after the
    ledger was filled so the entry counts above stay as they are."""
    create_user(ctx, f"u_{role}", role, PASSWORD)
    http.headers["Authorization"] = f"Bearer {login(http, f'u_{role}')}"


def test_entries_and_proofs_need_an_auditor_but_checkpoint_and_key_are_public(api) -> None:
    http, ctx = api
    assert http.get("/api/v1/ledger/entries").status_code == 401
    assert http.get("/api/v1/ledger/checkpoint").status_code == 200
    assert http.get("/api/v1/ledger/key").status_code == 200
    authorise(http, ctx, "officer")
    assert http.get("/api/v1/ledger/entries").status_code == 403
    assert (
        http.get("/api/v1/ledger/proofs/inclusion", params={"index": 0, "tree_size": 1}).status_code
        == 403
    )


def test_checkpoint_and_key_are_plain_text_and_verify(api) -> None:
    http, ctx = api
    key = http.get("/api/v1/ledger/key")
    assert key.status_code == 200 and key.headers["content-type"].startswith("text/plain")
    cp_resp = http.get("/api/v1/ledger/checkpoint")
    assert cp_resp.headers["content-type"].startswith("text/plain")
    cp = open_checkpoint(cp_resp.text, NoteVerifier.from_vkey(key.text.strip()))
    assert cp.size == 11 and cp.origin == ctx.settings.ledger_origin
    older = open_checkpoint(
        http.get("/api/v1/ledger/checkpoint", params={"size": 4}).text,
        NoteVerifier.from_vkey(key.text.strip()),
    )
    assert older.size == 4


def test_entries_proofs_round_trip(api) -> None:
    http, ctx = api
    authorise(http, ctx)
    body = http.get("/api/v1/ledger/entries", params={"start": 2, "end": 6}).json()
    assert [e["index"] for e in body["entries"]] == [2, 3, 4, 5]
    assert json.loads(base64.b64decode(body["entries"][0]["entry"]))["n"] == 2
    all_entries = http.get("/api/v1/ledger/entries", params={"start": 0, "end": 11}).json()[
        "entries"
    ]
    leaves = [merkle.leaf_hash(base64.b64decode(e["entry"])) for e in all_entries]
    tree = merkle.InMemoryTree()
    for leaf in leaves:
        tree.append(leaf)
    inc = http.get("/api/v1/ledger/proofs/inclusion", params={"index": 5, "tree_size": 11}).json()
    assert (inc["index"], inc["tree_size"]) == (5, 11)
    merkle.verify_inclusion(
        leaves[5], 5, 11, [base64.b64decode(h) for h in inc["hashes"]], tree.root()
    )
    con = http.get("/api/v1/ledger/proofs/consistency", params={"first": 3, "second": 11}).json()
    assert (con["first"], con["second"]) == (3, 11)
    merkle.verify_consistency(
        3, 11, [base64.b64decode(h) for h in con["hashes"]], tree.root(3), tree.root(11)
    )


@pytest.mark.parametrize(
    "path, params, status",
    [
        ("/api/v1/ledger/proofs/inclusion", {"index": 11, "tree_size": 11}, 400),
        ("/api/v1/ledger/proofs/inclusion", {"index": 0, "tree_size": 99}, 400),
        ("/api/v1/ledger/proofs/consistency", {"first": 5, "second": 3}, 400),
        ("/api/v1/ledger/proofs/inclusion", {"index": "x", "tree_size": 3}, 422),
        ("/api/v1/ledger/entries", {"start": 5, "end": 2}, 400),
        ("/api/v1/ledger/checkpoint", {"size": 99}, 404),
    ],
)
def test_bad_requests_get_problem_json(api, path: str, params: dict, status: int) -> None:
    http, ctx = api
    authorise(http, ctx)
    resp = http.get(path, params=params)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == status and body["title"]


def test_health_readiness_metrics_openapi(api) -> None:
    http, _ = api
    assert http.get("/healthz").json() == {"status": "ok"}
    root = http.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "database": "ok",
        "storage": "ok",
    }
    assert http.get("/metrics").status_code == 401  # the monitoring system's (test_security.py)
    paths = http.get("/openapi.json").json()["paths"]
    for route in (
        "/api/v1/ledger/checkpoint",
        "/api/v1/ledger/key",
        "/api/v1/ledger/entries",
        "/api/v1/ledger/proofs/inclusion",
        "/api/v1/ledger/proofs/consistency",
    ):
        assert route in paths


def test_the_openapi_document_names_how_each_caller_authenticates(api) -> None:
    """Docking devices (`Authorization: Device <key>`) and people (bearer tokens) are both
    declared, and each ingest route asks for the device scheme, never a person's token."""
    http, _ = api
    doc = http.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["Device"]["type"] == "apiKey" and schemes["Device"]["in"] == "header"
    assert (
        schemes["Device"]["name"] == "Authorization"
        and "Device <key>" in (schemes["Device"]["description"])
    )
    ingest = [
        op
        for path, ops in doc["paths"].items()
        if path.startswith("/api/v1/uploads")
        for op in ops.values()
    ]
    assert len(ingest) >= 3
    assert all(op.get("security") == [{"Device": []}] for op in ingest), ingest
    cases = doc["paths"]["/api/v1/cases"]["get"]
    assert cases.get("security") == [{"OAuth2PasswordBearer": []}]
