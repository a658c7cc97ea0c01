"""Sharing a case with the CPS: the recipient sees only what was shared, only until it
expires or is revoked, and every share, revocation and recipient access is in the ledger."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from evidence import clock
from evidence.accounts.service import create_device
from evidence.context import Context
from evidence.ingest.service import process_upload
from tests.fixtures.api import running_api
from tests.fixtures.ingest import Dock
from tests.fixtures.people import make_force


@pytest.fixture
def shared_world(ctx: Context, clip_with_sidecar, clip_mov):
    key = create_device(ctx, None, "dock-1").key
    with running_api(ctx.settings) as url:
        http = httpx.Client(base_url=url, timeout=30)
        dock = Dock(http, key)
        clip_ids = []
        for clip in (clip_with_sidecar, clip_mov):
            done = dock.dock(clip)
            process_upload(ctx, done["id"])
            clip_ids.append(done["clip_id"])
        f = make_force(ctx, http)
        case = http.post(
            "/api/v1/cases",
            headers=f.as_("eo_brown"),
            json={"title": "R v Doe", "reference": "URN 01"},
        ).json()
        http.post(
            f"/api/v1/cases/{case['id']}/items",
            headers=f.as_("eo_brown"),
            json={"clip_ids": clip_ids[:1]},
        )
        yield f, ctx, case["id"], clip_ids


def cps_sees(f, case_id: str) -> tuple[int, set[str]]:
    status = f.http.get(f"/api/v1/cases/{case_id}", headers=f.as_("cps_green")).status_code
    clips = {
        c["id"] for c in f.http.get("/api/v1/clips", headers=f.as_("cps_green")).json()["items"]
    }
    return status, clips


def ledger_types(ctx: Context) -> list[dict]:
    return [json.loads(e) for _, e in ctx.ledger.entries(0, ctx.ledger.size())]


def share(f, case_id: str, user: str = "cps_green", days: float = 7, who: str = "eo_brown"):
    expires = (clock.now() + dt.timedelta(days=days)).isoformat()
    return f.http.post(
        f"/api/v1/cases/{case_id}/shares",
        headers=f.as_(who),
        json={"username": user, "expires_at": expires},
    )


def test_cps_sees_only_the_shared_case_until_it_expires(shared_world) -> None:
    f, ctx, case_id, clip_ids = shared_world
    assert cps_sees(f, case_id) == (404, set())
    r = share(f, case_id)
    assert r.status_code == 201 and r.json()["active"]
    assert cps_sees(f, case_id) == (200, {clip_ids[0]}), "the case's clip, not the other one"
    stream = f.http.get(
        f"/api/v1/clips/{clip_ids[0]}/stream",
        headers=f.as_("cps_green"),
        params={"reason": "charging decision"},
    )
    assert stream.status_code == 200
    assert f.http.get(f"/api/v1/clips/{clip_ids[1]}", headers=f.as_("cps_green")).status_code == 404
    entries = ledger_types(ctx)
    created = [e for e in entries if e["type"] == "share.created"][0]
    assert created["recipient"] == "cps_green" and created["actor"] == "user:eo_brown"
    accessed = [e for e in entries if e["type"] == "case.accessed"]
    assert accessed and accessed[0]["subject"]["share"] == r.json()["id"]
    assert any(e["type"] == "clip.viewed" and e["actor"] == "user:cps_green" for e in entries)
    # Eight days later the share has lapsed: nothing is visible any more.
    later = clock.now() + dt.timedelta(days=8)
    clock.set_clock(lambda: later)
    # A token minted before the jump has expired too; sign in again at the new time.
    from tests.fixtures.people import login

    f.tokens["cps_green"] = login(f.http, "cps_green")
    assert cps_sees(f, case_id) == (404, set())


def test_revoking_a_share_ends_access_at_once_and_is_recorded(shared_world) -> None:
    f, ctx, case_id, clip_ids = shared_world
    share_id = share(f, case_id).json()["id"]
    assert cps_sees(f, case_id)[0] == 200
    assert f.http.delete(f"/api/v1/shares/{share_id}", headers=f.as_("eo_brown")).status_code == 204
    assert f.http.delete(f"/api/v1/shares/{share_id}", headers=f.as_("eo_brown")).status_code == 204
    assert cps_sees(f, case_id) == (404, set())
    revoked = [e for e in ledger_types(ctx) if e["type"] == "share.revoked"]
    assert len(revoked) == 1 and revoked[0]["subject"]["share"] == share_id
    listed = f.http.get(f"/api/v1/cases/{case_id}/shares", headers=f.as_("eo_brown")).json()[
        "items"
    ]
    assert listed[0]["revoked_at"] and not listed[0]["active"]


def test_shares_are_for_cps_users_made_by_evidence_officers(shared_world) -> None:
    f, _, case_id, _ = shared_world
    assert share(f, case_id, user="pc_jones").status_code == 404
    assert share(f, case_id, who="pc_smith").status_code == 403
    assert share(f, case_id, who="cps_green").status_code == 403
    assert share(f, case_id, days=-1).status_code == 422
    assert share(f, case_id, days=400).status_code == 422
