"""Admins manage users and devices through the API; every change is a ledger entry."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from sqlalchemy import select, update

from evidence import audit, clock
from evidence.access import Principal
from evidence.accounts import service
from evidence.accounts.models import Role, User
from evidence.accounts.service import create_user
from evidence.context import Context
from evidence.errors import AccessDenied
from tests.fixtures.api import running_api
from tests.fixtures.people import PASSWORD, login, make_force


@pytest.fixture
def admin(ctx: Context):
    with running_api(ctx.settings) as url:
        http = httpx.Client(base_url=url, timeout=30)
        yield make_force(ctx, http), ctx


def types(ctx: Context) -> list[str]:
    return [json.loads(e)["type"] for _, e in ctx.ledger.entries(0, ctx.ledger.size())]


def test_admin_creates_lists_disables_and_reenables_a_user(admin) -> None:
    f, ctx = admin
    h = f.as_("adm_black")
    r = f.http.post("/api/v1/users", headers=h, json={
        "username": "pc_new", "role": "officer", "password": "a long enough password",
        "officer_id": "PC9999"})
    assert r.status_code == 201 and r.json()["officer_id"] == "PC9999"
    names = [u["username"] for u in f.http.get("/api/v1/users", headers=h).json()["items"]]
    assert "pc_new" in names
    token = login(f.http, "pc_new", "a long enough password")
    assert f.http.patch("/api/v1/users/pc_new", headers=h, json={"disabled": True}).json()["disabled"]
    # Disabling takes effect at once, even for a token issued before.
    assert f.http.get("/api/v1/clips", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    f.http.patch("/api/v1/users/pc_new", headers=h, json={"disabled": False})
    assert f.http.get("/api/v1/clips", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert types(ctx).count("user.updated") == 2


def test_admin_cannot_lock_themselves_out(admin) -> None:
    f, _ = admin
    r = f.http.patch("/api/v1/users/adm_black", headers=f.as_("adm_black"), json={"disabled": True})
    assert r.status_code == 409


def test_role_change_is_recorded_and_applies(admin) -> None:
    f, ctx = admin
    r = f.http.patch("/api/v1/users/pc_jones", headers=f.as_("adm_black"), json={"role": "evidence_officer"})
    assert r.status_code == 200 and r.json()["role"] == "evidence_officer"
    assert f.http.post("/api/v1/cases", headers=f.as_("pc_jones"),
                       json={"title": "t", "reference": "r"}).status_code == 201
    entry = [json.loads(e) for _, e in ctx.ledger.entries(0, ctx.ledger.size())
             if json.loads(e)["type"] == "user.updated"][0]
    assert entry["previous_role"] == "officer" and entry["actor"] == "user:adm_black"


def test_devices_are_created_with_a_key_shown_once_and_can_be_disabled(admin, clip_1080p) -> None:
    f, ctx = admin
    h = f.as_("adm_black")
    r = f.http.post("/api/v1/devices", headers=h, json={"name": "dock-9"})
    assert r.status_code == 201
    key = r.json()["key"]
    dock = {"Authorization": f"Device {key}"}
    body = {"sha256": clip_1080p.sha256, "size": clip_1080p.size, "filename": "a.mp4"}
    assert f.http.post("/api/v1/uploads", headers=dock, json=body).status_code == 201
    assert "key" not in json.dumps(f.http.get("/api/v1/devices", headers=h).json())
    assert f.http.patch("/api/v1/devices/dock-9", headers=h, json={"disabled": True}).status_code == 204
    assert f.http.post("/api/v1/uploads", headers=dock, json=body).status_code == 401
    assert key not in json.dumps([e.decode() for _, e in ctx.ledger.entries(0, ctx.ledger.size())])


def test_only_admins_administer(admin) -> None:
    f, _ = admin
    for user in ("eo_brown", "aud_white", "pc_smith", "cps_green"):
        assert f.http.get("/api/v1/users", headers=f.as_(user)).status_code == 403
        assert f.http.post("/api/v1/devices", headers=f.as_(user), json={"name": "x1"}).status_code == 403


def _principal(ctx: Context, username: str) -> Principal:
    with ctx.db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
    return Principal(user.id, user.username, Role(user.role), user.officer_id)


def test_grants_in_force_are_listed_and_only_auditors_receive_them(admin) -> None:
    """The admin's grants page: `audit.list_grants` (in force only) and `audit.grantees`."""
    f, ctx = admin
    adm = _principal(ctx, "adm_black")
    case = f.http.post("/api/v1/cases", headers=f.as_("eo_brown"),
                       json={"title": "R v Roe", "reference": "U7"}).json()
    assert audit.grantees(ctx, adm) == ["aud_white"]
    create_user(ctx.ledger, "aud_gone", "auditor", PASSWORD)
    assert audit.grantees(ctx, adm) == ["aud_gone", "aud_white"]
    service.set_user_state(ctx.ledger, adm, "aud_gone", disabled=True)
    assert audit.grantees(ctx, adm) == ["aud_white"]  # a disabled auditor is not offered

    now = clock.now()
    for days in (30, 2):
        audit.grant_footage(ctx, adm, username="aud_white", reason=f"review for {days} days",
                            expires_at=now + dt.timedelta(days=days), case_id=case["id"])
    grants = audit.list_grants(ctx, adm)
    assert [(g["username"], g["case_id"], g["clip_id"], g["reason"], g["granted_by"])
            for g in grants] == [
        ("aud_white", case["id"], None, "review for 2 days", "adm_black"),  # soonest first
        ("aud_white", case["id"], None, "review for 30 days", "adm_black")]
    clock.set_clock(lambda: now + dt.timedelta(days=3))
    assert [g["reason"] for g in audit.list_grants(ctx, adm)] == ["review for 30 days"]
    for name in ("eo_brown", "aud_white"):
        with pytest.raises(AccessDenied):
            audit.list_grants(ctx, _principal(ctx, name))
        with pytest.raises(AccessDenied):
            audit.grantees(ctx, _principal(ctx, name))


def test_the_user_list_says_whether_a_lock_out_is_still_in_force(admin) -> None:
    _, ctx = admin
    adm = _principal(ctx, "adm_black")
    until = clock.now() + dt.timedelta(minutes=15)
    with ctx.db.write_session() as s:
        s.execute(update(User).where(User.username == "pc_jones").values(locked_until=until))
    (jones,) = [u for u in service.list_users(ctx.ledger, adm) if u["username"] == "pc_jones"]
    assert jones["locked"] is True and jones["locked_until"]
    clock.set_clock(lambda: until + dt.timedelta(seconds=1))
    (jones,) = [u for u in service.list_users(ctx.ledger, adm) if u["username"] == "pc_jones"]
    assert jones["locked"] is False
