"""Public submissions over the real API (docs/public-submissions.md): an evidence officer's
invitation, a member of the public's chunked and resumable upload hashed on arrival, the
receipt, quarantine out of every list until a decision, accept and reject with their ledger
entries, the rejected files' retention, and the link's abuse limits: expiry, one use, file
and byte limits, sniffed types, guessing and rate limits."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from evidence import clock
from evidence.clips.models import Clip
from evidence.context import Context
from evidence.storage import original_key
from evidence.submissions import service
from evidence.submissions.models import FileState, SubmissionFile
from evidence.verify.ledger import verify_ledger
from evidence.verify.ledger_db import DatabaseSource
from evidence.verify.report import Report
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.people import Force, make_force

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

CHUNK = 4096
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * CHUNK + 100)  # four chunks, the last short
PDF = b"%PDF-1.4\n" + os.urandom(CHUNK + 7)
EXE = b"MZ\x90\x00" + os.urandom(CHUNK)


@dataclass
class World:
    ctx: Context
    http: httpx.Client
    force: Force


def world_at(tmp_path: Path, database_url: str, **overrides: Any) -> Iterator[World]:
    settings = make_settings(tmp_path, database_url, submission_chunk_bytes=CHUNK, **overrides)
    ctx = Context(settings)
    with running_api(settings) as base:
        ctx.settings = ctx.settings.model_copy(update={"public_url": base})
        with httpx.Client(base_url=base, timeout=30) as http:
            yield World(ctx, http, make_force(ctx, http))


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    yield from world_at(tmp_path, database_url)


def invite(w: World, **body: Any) -> str:
    r = w.http.post(
        "/api/v1/submissions/invitations",
        json={"reference": "INC-2041", **body},
        headers=w.force.as_("eo_brown"),
    )
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    assert url.startswith(str(w.http.base_url) + "/submit/")
    return url.rsplit("/", 1)[1]


def api(token: str) -> str:
    return f"/api/v1/public/submissions/{token}"


def add(w: World, token: str, name: str, data: bytes) -> dict:
    r = w.http.post(api(token) + "/files", json={"filename": name, "size": len(data)})
    assert r.status_code == 201, r.text
    return r.json()


def put(w: World, token: str, f: dict, n: int, data: bytes) -> httpx.Response:
    chunk = data[n * f["chunk_size"] : (n + 1) * f["chunk_size"]]
    return w.http.put(api(token) + f"/files/{f['id']}/chunks/{n}", content=chunk)


def send(w: World, token: str, name: str, data: bytes) -> dict:
    f = add(w, token, name, data)
    for n in range(f["chunks"]):
        assert put(w, token, f, n, data).status_code == 200
    r = w.http.post(api(token) + f"/files/{f['id']}/complete")
    assert r.status_code == 200, r.text
    return r.json()


def entries(ctx: Context, type_: str) -> list[dict]:
    return [
        e
        for _, raw in ctx.ledger.entries(0, ctx.ledger.size())
        if (e := json.loads(raw))["type"] == type_
    ]


def listed_sha256(w: World, **query: Any) -> set[str]:
    r = w.http.get("/api/v1/clips", params=query, headers=w.force.as_("eo_brown"))
    assert r.status_code == 200, r.text
    return {c["sha256"] for c in r.json()["items"]}


def test_a_submission_is_hashed_on_arrival_quarantined_and_decided_in_the_ledger(
    world: World,
) -> None:
    w = world
    token = invite(w, contact={"name": "A. Witness", "phone": "07700 900123"})
    [invited] = entries(w.ctx, "submission.invited")
    assert invited["reference"] == "INC-2041" and invited["contact_given"] is True
    assert "A. Witness" not in json.dumps(invited), "personal details stay out of the ledger"

    png = send(w, token, "IMG_0001.png", PNG)
    pdf = send(w, token, "statement.pdf", PDF)
    assert png["sha256"] == hashlib.sha256(PNG).hexdigest() and png["state"] == "received"
    r = w.http.post(
        api(token) + "/finish",
        json={"description": "Taken from my window at 22:10"},
        headers={"User-Agent": "Phone\tbrowser " + "x" * 5000},
    )
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert {(f["filename"], f["size"], f["sha256"]) for f in receipt["files"]} == {
        ("IMG_0001.png", len(PNG), hashlib.sha256(PNG).hexdigest()),
        ("statement.pdf", len(PDF), hashlib.sha256(PDF).hexdigest()),
    }
    assert receipt["ledger_index"] is not None
    [submitted] = entries(w.ctx, "submission.submitted")
    assert submitted["description"] == "Taken from my window at 22:10"
    agent = submitted["user_agent"]
    assert agent.startswith("Phone\ufffdbrowser") and len(agent) == 256, "bounded, no controls"
    assert submitted["source_ip"] == "127.0.0.1"
    assert len(entries(w.ctx, "submission.file_received")) == 2
    # What the store holds in quarantine is what the receipt says, byte for byte.
    for f, data in ((png, PNG), (pdf, PDF)):
        held = b"".join(w.ctx.store.open(f"quarantine/public/{f['id']}"))
        assert held == data
    # The receipt stays readable through the link; the link takes nothing more.
    assert w.http.get(api(token) + "/receipt").json()["files"] == receipt["files"]
    assert (
        w.http.post(api(token) + "/files", json={"filename": "x.png", "size": 9}).status_code == 410
    )

    # Quarantined: no clip, in no list or search, for anyone.
    assert hashlib.sha256(PNG).hexdigest() not in listed_sha256(w)
    assert listed_sha256(w, q="IMG_0001") == set()
    with w.ctx.db.session() as s:
        assert s.query(Clip).count() == 0

    queue = w.http.get("/api/v1/submissions/queue", headers=w.force.as_("eo_brown")).json()
    assert {i["filename"] for i in queue["items"]} == {"IMG_0001.png", "statement.pdf"}
    for who in ("pc_smith", "cps_green", "adm_black"):
        h = w.force.as_(who)
        assert w.http.get("/api/v1/submissions/queue", headers=h).status_code == 403
        assert (
            w.http.post(
                "/api/v1/submissions/invitations", json={"reference": "X1"}, headers=h
            ).status_code
            == 403
        )

    eo = w.force.as_("eo_brown")
    no_reason = w.http.post(
        f"/api/v1/submissions/files/{png['id']}/accept", json={"reason": ""}, headers=eo
    )
    assert no_reason.status_code == 422
    r = w.http.post(
        f"/api/v1/submissions/files/{png['id']}/accept",
        json={"reason": "shows the incident"},
        headers=eo,
    )
    assert r.status_code == 200, r.text
    clip_id = r.json()["clip_id"]
    r = w.http.post(
        f"/api/v1/submissions/files/{pdf['id']}/reject",
        json={"reason": "unrelated document"},
        headers=eo,
    )
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    again = w.http.post(
        f"/api/v1/submissions/files/{pdf['id']}/accept", json={"reason": "changed mind"}, headers=eo
    )
    assert again.status_code == 409

    [accepted] = entries(w.ctx, "submission.accepted")
    assert accepted["reason"] == "shows the incident" and accepted["subject"]["clip"] == clip_id
    [rejected] = entries(w.ctx, "submission.rejected")
    assert rejected["reason"] == "unrelated document"
    assert rejected["rule"] == "rejected public submission: 90 days"
    # The accepted file is an original, checked against the hash taken on arrival.
    assert b"".join(w.ctx.store.open(original_key(png["sha256"]))) == PNG
    assert service.process_accepted(w.ctx, clip_id) in ("stored", "unplayable", "ready")
    assert listed_sha256(w, category="public submission") == {png["sha256"]}
    assert pdf["sha256"] not in listed_sha256(w)
    [ingested] = [e for e in entries(w.ctx, "clip.ingested") if e["subject"]["clip"] == clip_id]
    assert ingested["source"] == "public submission" and ingested["sha256"] == png["sha256"]

    # The rejected file is kept until its rule runs out, then disposed of, with a tombstone.
    assert service.dispose_rejected(w.ctx) == []
    assert w.ctx.store.exists(f"quarantine/public/{pdf['id']}")
    later = clock.now() + dt.timedelta(days=91)
    clock.set_clock(lambda: later)
    assert service.dispose_rejected(w.ctx) == [pdf["id"]]
    assert not w.ctx.store.exists(f"quarantine/public/{pdf['id']}")
    [disposed] = entries(w.ctx, "submission.disposed")
    assert disposed["sha256"] == pdf["sha256"]
    clock.set_clock(None)
    source = DatabaseSource(w.ctx.settings.resolved_database_url(), w.ctx.ledger.verifier_key)
    assert verify_ledger(source, Report(), key=w.ctx.ledger.verifier_key).ok


def test_an_interrupted_file_resumes_from_the_chunks_the_server_holds(world: World) -> None:
    w = world
    token = invite(w)
    f = add(w, token, "clip.png", PNG)
    assert f["chunks"] == 4
    for n in (0, 2):
        assert put(w, token, f, n, PNG).status_code == 200
    [held] = w.http.get(api(token)).json()["files"]
    assert held["received_chunks"] == [0, 2] and held["state"] == "receiving"
    early = w.http.post(api(token) + f"/files/{f['id']}/complete")
    assert early.status_code == 409 and "[1, 3]" in early.json()["detail"]
    wrong = w.http.put(api(token) + f"/files/{f['id']}/chunks/1", content=b"short")
    assert wrong.status_code == 422
    for n in (1, 3, 3):  # a chunk sent twice (its answer was lost) is simply kept again
        assert put(w, token, f, n, PNG).status_code == 200
    done = w.http.post(api(token) + f"/files/{f['id']}/complete").json()
    assert done["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert list(w.ctx.store.list(f"incoming/public/{f['id']}/")) == [], "chunks cleared"
    again = w.http.post(api(token) + f"/files/{f['id']}/complete").json()
    assert again["sha256"] == done["sha256"], "completing again changes nothing"
    assert len(entries(w.ctx, "submission.file_received")) == 1

    # A file left half-sent does not hold the submission back: it goes without it.
    half = add(w, token, "half.pdf", PDF)
    assert put(w, token, half, 0, PDF).status_code == 200
    receipt = w.http.post(api(token) + "/finish", json={"description": "done"}).json()
    assert [f["filename"] for f in receipt["files"]] == ["clip.png"]
    [refused] = entries(w.ctx, "submission.file_refused")
    assert refused["filename"] == "half.pdf" and "not completed" in refused["reason"]
    assert list(w.ctx.store.list(f"incoming/public/{half['id']}/")) == []


def test_limits_types_and_a_bad_file_that_loses_nothing_else(world: World) -> None:
    w = world
    token = invite(w, max_files=2, max_bytes=len(PNG) + len(PDF) + 10)
    bad = add(w, token, "holiday.mp4", EXE)  # the name says video; the bytes do not
    r = put(w, token, bad, 0, EXE)
    assert r.status_code == 415 and "not a kind of file" in r.json()["detail"]
    [refused] = entries(w.ctx, "submission.file_refused")
    assert refused["filename"] == "holiday.mp4"
    assert list(w.ctx.store.list(f"incoming/public/{bad['id']}/")) == []
    good = send(w, token, "a.png", PNG)  # a refused file does not count towards the limits
    too_big = w.http.post(api(token) + "/files", json={"filename": "b.pdf", "size": len(PDF) + 11})
    assert too_big.status_code == 413
    send(w, token, "b.pdf", PDF)
    third = w.http.post(api(token) + "/files", json={"filename": "c.pdf", "size": 10})
    assert third.status_code == 409 and "at most 2 files" in third.json()["detail"]
    receipt = w.http.post(api(token) + "/finish", json={"description": ""}).json()
    assert [f["id"] for f in receipt["files"]] == [good["id"], receipt["files"][1]["id"]]
    assert len(receipt["files"]) == 2
    too_long = w.http.post(
        "/api/v1/submissions/invitations",
        json={"reference": "R", "contact": {"name": "x" * 121}},
        headers=w.force.as_("eo_brown"),
    )
    assert too_long.status_code == 422
    neither = w.http.post(
        "/api/v1/submissions/invitations", json={}, headers=w.force.as_("eo_brown")
    )
    assert neither.status_code == 422


def test_expired_and_used_links_answer_410_with_a_human_message(world: World) -> None:
    w = world
    token = invite(w, expires_days=1)
    page = w.http.get(f"/submit/{token}")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and "/ui/static/submit.js" in page.text
    later = clock.now() + dt.timedelta(days=1, seconds=1)
    clock.set_clock(lambda: later)
    gone = w.http.get(f"/submit/{token}")
    assert gone.status_code == 410 and "this link expired" in gone.text.lower()
    assert w.http.get(api(token)).status_code == 410
    clock.set_clock(None)

    used = invite(w)
    send(w, used, "a.png", PNG)
    assert w.http.post(api(used) + "/finish", json={"description": "x"}).status_code == 200
    page = w.http.get(f"/submit/{used}")
    assert page.status_code == 410 and "already sent through this link" in page.text.lower()
    assert w.http.get(f"/submit/{used}/receipt").status_code == 200

    withdrawn = invite(w)
    sent = send(w, withdrawn, "a.png", PNG)
    [row] = w.http.get("/api/v1/submissions/invitations", headers=w.force.as_("eo_brown")).json()[
        "items"
    ][:1]
    r = w.http.post(
        f"/api/v1/submissions/invitations/{row['id']}/withdraw",
        json={"reason": "sent to the wrong number"},
        headers=w.force.as_("eo_brown"),
    )
    assert r.status_code == 200 and r.json()["state"] == "withdrawn"
    page = w.http.get(f"/submit/{withdrawn}")
    assert page.status_code == 410 and "withdrawn" in page.text
    [entry] = entries(w.ctx, "submission.withdrawn")
    assert entry["reason"] == "sent to the wrong number"
    assert w.ctx.store.exists(f"quarantine/public/{sent['id']}"), "what arrived stays"


def test_guessing_links_is_slowed_down_per_address(tmp_path: Path, sqlite_url: str) -> None:
    for w in world_at(tmp_path, sqlite_url, submission_bad_tokens_per_address=3):
        token = invite(w)
        for path in (api, "/submit/{}".format, api):
            guess = service.secrets.token_urlsafe(32)
            assert w.http.get(path(guess)).status_code == 404
        assert w.http.get(api("x" * 43)).status_code == 429
        # The address is slowed down whatever link it tries next, a real one included.
        assert w.http.get(api(token)).status_code == 429
        with w.ctx.db.session() as s:
            assert s.query(SubmissionFile).count() == 0


def test_each_link_and_address_has_a_rate_limit(tmp_path: Path, sqlite_url: str) -> None:
    for w in world_at(tmp_path, sqlite_url, submission_rate_per_link=5):
        token, other = invite(w), invite(w)
        answers = [w.http.get(api(token)) for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert int(answers[-1].headers["retry-after"]) > 0
        assert w.http.get(api(other)).status_code == 200, "another link is not affected"


def test_quarantined_files_are_not_clips(world: World) -> None:
    w = world
    token = invite(w)
    f = send(w, token, "a.png", PNG)
    with w.ctx.db.session() as s:
        row = s.get(SubmissionFile, f["id"])
        assert row is not None and row.state == FileState.received and row.clip_id is None
    # Not finished: not in the review queue either (its sender may still be adding files).
    queue = w.http.get("/api/v1/submissions/queue", headers=w.force.as_("eo_brown")).json()
    assert queue["items"] == []
    assert listed_sha256(w) == set()


def test_migration_0017_goes_down_and_up_again(database_url: str) -> None:
    """The tables 0017 adds go with a downgrade to 0015 and come back with an upgrade, on
    both engines; the schema then matches the models again (tests/test_migrations.py)."""
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from evidence.migrate import alembic_config, upgrade

    def tables() -> set[str]:
        engine = create_engine(database_url)
        try:
            return set(inspect(engine).get_table_names())
        finally:
            engine.dispose()

    assert {"invitations", "submission_files"} <= tables()
    command.downgrade(alembic_config(database_url), "0015")
    assert not {"invitations", "submission_files"} & tables()
    upgrade(database_url)
    assert {"invitations", "submission_files"} <= tables()


def test_an_accepted_photo_is_kept_with_a_thumbnail_and_can_be_an_exhibit(
    world: World, tmp_path: Path
) -> None:
    w = world
    eo = w.force.as_("eo_brown")
    case = w.http.post(
        "/api/v1/cases", json={"title": "Assault, High St", "reference": "OP-9"}, headers=eo
    ).json()
    token = invite(w, case_id=case["id"], reference=None)
    photo = tmp_path / "witness.jpg"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=640x480", "-frames:v", "1",
         str(photo)],
        check=True,
    )  # fmt: skip
    sent = send(w, token, photo.name, photo.read_bytes())
    assert sent["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert w.http.post(api(token) + "/finish", json={"description": "my photo"}).status_code == 200
    [queued] = w.http.get("/api/v1/submissions/queue", headers=eo).json()["items"]
    assert queued["case_id"] == case["id"] and queued["kind"] == "image"
    r = w.http.post(
        f"/api/v1/submissions/files/{sent['id']}/accept", json={"reason": "the scene"}, headers=eo
    )
    clip_id = r.json()["clip_id"]
    assert service.process_accepted(w.ctx, clip_id) == "unplayable"  # a photo: nothing to play
    with w.ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
        assert clip is not None and "image submission" in (clip.media_error or "")
        assert {d.kind for d in clip.derivatives} == {"thumbnail"}
    unattributed = w.http.get("/api/v1/clips/unattributed", headers=eo).json()["items"]
    assert clip_id not in {c["id"] for c in unattributed}, "no camera, no officer to find"
    thumb = w.http.get(f"/api/v1/clips/{clip_id}/thumbnail", headers=eo)
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    added = w.http.post(
        f"/api/v1/cases/{case['id']}/items", json={"clip_ids": [clip_id]}, headers=eo
    )
    assert added.status_code == 200, added.text
    assert service.process_accepted(w.ctx, clip_id) == "unplayable", "a second run does nothing"
