"""Deduplication and what a device may learn or write: only a verified, promoted original
satisfies another device's declaration, and a liar's rejected upload never costs the honest
clip its place."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select

from evidence.accounts.service import create_device
from evidence.clips.models import Clip, ClipState
from evidence.context import Context
from evidence.ingest.models import Upload
from evidence.ingest.service import process_upload
from evidence.storage import original_key
from tests.fixtures.api import running_api
from tests.fixtures.ingest import Dock
from tests.fixtures.media import Clip as ClipFile

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md


@pytest.fixture
def two_docks(ctx: Context):
    honest = create_device(ctx, None, "dock-honest").key
    liar = create_device(ctx, None, "dock-liar").key
    with running_api(ctx.settings) as url:
        http = httpx.Client(base_url=url, timeout=30)
        yield Dock(http, honest), Dock(http, liar), ctx


def _send_other_bytes(liar: Dock, real: ClipFile, other: ClipFile) -> dict:
    """Declare the real clip's hash and size, PUT other bytes of that length, complete."""
    declared = liar.declare(real)
    assert declared.status_code == 201, declared.text
    body = declared.json()
    junk = other.path.read_bytes()[: real.size].ljust(real.size, b"\0")
    for part in body["parts"]:
        r = httpx.put(part["url"], content=junk[part["offset"] : part["offset"] + part["size"]])
        assert r.status_code == 200, r.text
    done = liar.complete(body["id"])
    assert done.status_code == 202, done.text
    return done.json()


def entries(ctx: Context, ref: str) -> list[dict]:
    return [json.loads(e) for _, e in ctx.ledger.entries_about(ref)]


@pytest.mark.parametrize("order", ["liar judged first", "honest judged first"])
def test_an_unverified_upload_of_the_same_hash_never_stands_in_for_the_real_clip(
    two_docks, clip_1080p: ClipFile, clip_mov: ClipFile, order: str
) -> None:
    honest, liar, ctx = two_docks
    lied = _send_other_bytes(liar, clip_1080p, clip_mov)
    # While the liar's bytes wait to be verified, the honest dock is NOT told "exists":
    # it gets its own upload and sends its own bytes.
    declared = honest.declare(clip_1080p)
    assert declared.status_code == 201 and declared.json()["state"] == "pending", declared.text
    body = declared.json()
    honest.send(clip_1080p, body)
    done = honest.complete(body["id"])
    assert done.status_code == 202, done.text
    assert done.json()["clip_id"] is None, "no clip id for bytes not yet verified"

    if order == "liar judged first":
        assert process_upload(ctx, lied["id"]) == "rejected"
        assert process_upload(ctx, body["id"]) == "stored"
    else:
        assert process_upload(ctx, body["id"]) == "stored"
        assert process_upload(ctx, lied["id"]) == "rejected"

    with ctx.db.session() as s:
        clips = s.scalars(select(Clip)).all()
        states = {u.id: u.state for u in s.scalars(select(Upload))}
    assert len(clips) == 1, "one clip row per sha256"
    assert clips[0].state == ClipState.ready, "the liar's rejection did not reject the real clip"
    assert states == {lied["id"]: "rejected", body["id"]: "stored"}
    assert ctx.store.stat(original_key(clip_1080p.sha256)).sha256 == clip_1080p.sha256
    assert ctx.store.exists(f"quarantine/{lied['id']}"), "the liar's bytes are kept aside"
    assert not ctx.store.exists(f"incoming/{body['id']}")
    status = honest.http.get(f"/api/v1/uploads/{body['id']}", headers=honest.headers).json()
    assert status["clip_id"] == clips[0].id, "verified bytes: now the device may know the clip"
    # Every later declaration of these bytes is now answered "exists".
    again = honest.declare(clip_1080p)
    assert again.status_code == 200 and again.json()["state"] == "exists"


def test_a_rejected_upload_does_not_satisfy_a_later_declaration(
    two_docks, clip_1080p: ClipFile, clip_mov: ClipFile
) -> None:
    honest, liar, ctx = two_docks
    lied = _send_other_bytes(liar, clip_1080p, clip_mov)
    assert process_upload(ctx, lied["id"]) == "rejected"
    declared = honest.declare(clip_1080p)
    assert declared.status_code == 201 and declared.json()["state"] == "pending"


def test_a_second_upload_of_stored_bytes_is_verified_on_its_own_and_leaves_no_incoming(
    two_docks, clip_1080p: ClipFile
) -> None:
    """Both devices declared before either was verified: both send, both are verified, the
    clip is stored once, and the second upload's incoming object does not linger."""
    first, second, ctx = two_docks
    a = first.declare(clip_1080p).json()
    b = second.declare(clip_1080p).json()
    assert a["state"] == b["state"] == "pending"
    for dock, body in ((first, a), (second, b)):
        dock.send(clip_1080p, body)
        assert dock.complete(body["id"]).status_code == 202
    assert process_upload(ctx, a["id"]) == "stored"
    assert process_upload(ctx, b["id"]) == "stored"
    assert not ctx.store.exists(f"incoming/{a['id']}")
    assert not ctx.store.exists(f"incoming/{b['id']}"), "a duplicate upload's bytes are cleaned"
    with ctx.db.session() as s:
        (clip,) = s.scalars(select(Clip)).all()
    types = [e["type"] for e in entries(ctx, f"clip:{clip.id}")]
    assert types.count("clip.ingested") == 1


def test_declaring_a_known_hash_reveals_no_clip_id_and_writes_nothing_into_its_timeline(
    two_docks, clip_1080p: ClipFile
) -> None:
    owner, stranger, ctx = two_docks
    done = owner.dock(clip_1080p)
    process_upload(ctx, done["id"])
    before = entries(ctx, f"clip:{done['clip_id']}")

    name = "x" * 200 + "\u202e\x07evil.mp4"
    r = stranger.http.post(
        "/api/v1/uploads",
        headers=stranger.headers,
        json={"sha256": clip_1080p.sha256, "size": clip_1080p.size, "filename": name},
    )
    assert r.status_code == 200
    assert r.json()["state"] == "exists" and "clip_id" not in r.json()
    status = stranger.http.get(f"/api/v1/uploads/{r.json()['id']}", headers=stranger.headers)
    assert status.json()["clip_id"] is None
    assert entries(ctx, f"clip:{done['clip_id']}") == before, "the clip's timeline is untouched"
    (entry,) = [e for e in entries(ctx, f"upload:{r.json()['id']}")]
    assert entry["type"] == "upload.duplicate" and "clip" not in entry["subject"]
    assert "\x07" not in entry["filename"] and "\u202e" not in entry["filename"]

    wrong_size = stranger.http.post(
        "/api/v1/uploads",
        headers=stranger.headers,
        json={"sha256": clip_1080p.sha256, "size": clip_1080p.size + 1, "filename": "a.mp4"},
    )
    assert wrong_size.status_code == 409
    assert wrong_size.headers["content-type"] == "application/problem+json"
    assert entries(ctx, f"clip:{done['clip_id']}") == before


# -- sidecars ---------------------------------------------------------------------------------

HOSTILE_SIDECARS = {
    "NaN": '{"officer_id": "4711", "x": NaN}',
    "Infinity": '{"x": Infinity}',
    "-Infinity": '{"x": -Infinity}',
    "1e400": '{"x": 1e400}',
    "beyond 2^53": '{"x": 9007199254740993}',
    "beyond 2^64": '{"x": 18446744073709551617}',
    "lone surrogate": '{"x": "\\ud800"}',
    "lone surrogate key": '{"\\udfff": 1}',
}


@pytest.mark.parametrize("name", list(HOSTILE_SIDECARS))
def test_a_sidecar_the_canonical_form_cannot_hold_is_kept_as_a_file_and_the_clip_proceeds(
    two_docks, clip_1080p: ClipFile, name: str
) -> None:
    dock, _, ctx = two_docks
    raw = HOSTILE_SIDECARS[name]
    body = '{"sha256": "%s", "size": %d, "filename": "a.mp4", "metadata": %s}' % (
        clip_1080p.sha256,
        clip_1080p.size,
        raw,
    )
    r = dock.http.post(
        "/api/v1/uploads",
        content=body.encode(),
        headers={**dock.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
    declared = r.json()
    (entry,) = entries(ctx, f"upload:{declared['id']}")
    kept = entry["sidecar"]["sidecar_file"]
    assert "canonical JSON" in entry["sidecar"]["sidecar_error"]
    stored = b"".join(ctx.store.open(kept["key"]))
    assert kept["sha256"] == ctx.store.stat(kept["key"]).sha256
    assert json.loads(stored) == json.loads(raw) or name in ("NaN",), "kept as sent"
    dock.send(clip_1080p, declared)
    done = dock.complete(declared["id"])
    assert done.status_code == 202, done.text
    assert process_upload(ctx, declared["id"]) == "stored"


def test_a_huge_sidecar_does_not_enter_the_ledger(two_docks, clip_1080p: ClipFile) -> None:
    """Far over the ledger's 64 KiB for a sidecar, and over the dock's 1 MiB, but under the
    bound on any request body (beyond it the whole declaration is a 413: test_security)."""
    dock, _, ctx = two_docks
    huge = {"officer_id": "4711", "padding": "x" * (4 * 1024 * 1024)}
    r = dock.http.post(
        "/api/v1/uploads",
        headers=dock.headers,
        json={
            "sha256": clip_1080p.sha256,
            "size": clip_1080p.size,
            "filename": "a.mp4",
            "metadata": huge,
        },
    )
    assert r.status_code == 201, r.text
    ((_, raw_entry),) = ctx.ledger.entries_about(f"upload:{r.json()['id']}")
    assert len(raw_entry) < 2048, "the permanent entry stays small"
    kept = json.loads(raw_entry)["sidecar"]["sidecar_file"]
    assert kept["size"] > 4 * 1024 * 1024 and ctx.store.stat(kept["key"]).size == kept["size"]


def test_control_characters_in_a_sidecar_never_hold_the_clip_back(
    two_docks, clip_1080p: ClipFile
) -> None:
    dock, _, ctx = two_docks
    sidecar = {"officer_id": "47\u000011", "camera_serial": "CAM\u202e1"}
    r = dock.http.post(
        "/api/v1/uploads",
        headers=dock.headers,
        json={
            "sha256": clip_1080p.sha256,
            "size": clip_1080p.size,
            "filename": "a.mp4",
            "metadata": sidecar,
        },
    )
    assert r.status_code == 201, r.text
    dock.send(clip_1080p, r.json())
    done = dock.complete(r.json()["id"])
    assert done.status_code == 202, done.text
    with ctx.db.session() as s:
        clip = s.get(Clip, done.json()["clip_id"])
    assert "\x00" not in clip.officer_id


@pytest.mark.parametrize("filename", ["\ud800.mp4", "a\u0000b.mp4"])
def test_a_filename_that_cannot_be_stored_is_a_clear_422(
    two_docks, clip_1080p: ClipFile, filename: str
) -> None:
    dock, _, ctx = two_docks
    body = json.dumps({"sha256": clip_1080p.sha256, "size": clip_1080p.size, "filename": filename})
    r = dock.http.post(
        "/api/v1/uploads",
        content=body.encode(),
        headers={**dock.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
