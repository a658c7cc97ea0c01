"""Admins manage users and devices through the API; every change is a ledger entry."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from evidence import audit, clock
from evidence.access import Principal
from evidence.accounts import enrolment, service
from evidence.accounts.models import Enrolment, Role, User
from evidence.accounts.service import create_user
from evidence.context import Context
from evidence.errors import AccessDenied, Conflict, InvalidInput
from evidence.identity.tokens import issue_token
from tests.fixtures.api import running_api
from tests.fixtures.people import PASSWORD, login, make_force

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md


@pytest.fixture
def admin(ctx: Context):
    with running_api(ctx.settings) as url:
        http = httpx.Client(base_url=url, timeout=30)
        yield make_force(ctx, http), ctx


def types(ctx: Context) -> list[str]:
    return [json.loads(e)["type"] for _, e in ctx.ledger.entries(0, ctx.ledger.size())]


def enrol_token(url: str) -> str:
    assert "/ui/enrol/" in url, url
    return url.rsplit("/", 1)[1]


def enrol(f, url: str, password: str) -> None:
    r = f.http.post("/api/v1/auth/enrol", json={"token": enrol_token(url), "password": password})
    assert r.status_code == 204, r.text


def test_admin_creates_lists_disables_and_reenables_a_user(admin) -> None:
    """An admin creates an account without a password: the person enrols with the link."""
    f, ctx = admin
    h = f.as_("adm_black")
    r = f.http.post("/api/v1/users", headers=h, json={"username": "cps_new", "role": "cps"})
    assert r.status_code == 201 and r.json()["pending_approval"] is False
    names = [u["username"] for u in f.http.get("/api/v1/users", headers=h).json()["items"]]
    assert "cps_new" in names
    enrol(f, r.json()["enrolment_url"], "a long enough password")
    token = login(f.http, "cps_new", "a long enough password")
    assert f.http.patch("/api/v1/users/cps_new", headers=h, json={"disabled": True}).json()[
        "disabled"
    ]
    # Disabling takes effect at once, even for a token issued before.
    assert (
        f.http.get("/api/v1/clips", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )
    f.http.patch("/api/v1/users/cps_new", headers=h, json={"disabled": False})
    assert (
        f.http.get("/api/v1/clips", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    assert types(ctx).count("user.updated") == 2


def test_an_admin_never_sets_a_password_for_someone_else(admin) -> None:
    f, ctx = admin
    r = f.http.post(
        "/api/v1/users",
        headers=f.as_("adm_black"),
        json={
            "username": "eo_mine",
            "role": "evidence_officer",
            "password": "a password I would know",
        },
    )
    assert r.status_code == 422, r.text
    with ctx.db.session() as s:
        assert s.scalar(select(User).where(User.username == "eo_mine")) is None


def test_the_enrolment_link_works_once_is_stored_hashed_and_expires(admin) -> None:
    f, ctx = admin
    r = f.http.post(
        "/api/v1/users", headers=f.as_("adm_black"), json={"username": "aud_new", "role": "auditor"}
    )
    url = r.json()["enrolment_url"]
    token = enrol_token(url)
    # Nothing but its hash is kept, and the ledger has neither.
    with ctx.db.session() as s:
        stored = [row.token_hash for row in s.scalars(select(Enrolment))]
    assert token not in json.dumps(stored) and enrolment.token_hash(token) in stored
    assert token not in json.dumps(
        [e.decode() for _, e in ctx.ledger.entries(0, ctx.ledger.size())]
    )
    # Before enrolment no password opens the account.
    assert (
        f.http.post(
            "/api/v1/auth/token", data={"username": "aud_new", "password": "!enrol"}
        ).status_code
        == 401
    )
    short = f.http.post("/api/v1/auth/enrol", json={"token": token, "password": "short"})
    assert short.status_code == 422 and "too short" in short.json()["detail"]
    enrol(f, url, "my own passphrase 1")
    again = f.http.post(
        "/api/v1/auth/enrol", json={"token": token, "password": "my own passphrase 2"}
    )
    assert again.status_code == 404 and "already used or expired" in again.json()["detail"]
    login(f.http, "aud_new", "my own passphrase 1")
    (entry,) = [e for e in ledger(ctx) if e["type"] == "user.enrolled"]
    assert entry["purpose"] == "new" and entry["source_ip"] == "127.0.0.1"
    # A link not used in time is refused.
    r = f.http.post(
        "/api/v1/users",
        headers=f.as_("adm_black"),
        json={"username": "aud_late", "role": "auditor"},
    )
    clock.set_clock(
        lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=enrolment.ENROLMENT_HOURS + 1)
    )
    late = f.http.post(
        "/api/v1/auth/enrol",
        json={"token": enrol_token(r.json()["enrolment_url"]), "password": "my own passphrase 3"},
    )
    assert late.status_code == 404
    for bad in ("", "x", "../../etc", "a" * 150, "\x00" * 30):
        assert f.http.post(
            "/api/v1/auth/enrol", json={"token": bad, "password": "long enough pw 1"}
        ).status_code in (404, 422)


def ledger(ctx: Context) -> list[dict]:
    return [json.loads(e) for _, e in ctx.ledger.entries(0, ctx.ledger.size())]


def test_a_footage_account_opens_nothing_until_a_second_admin_approves(admin, clip_1080p) -> None:
    """The finding: an admin created an evidence officer, set its password and played footage.
    Now the admin gets a link, and the account waits for another admin."""
    f, ctx = admin
    h = f.as_("adm_black")
    r = f.http.post(
        "/api/v1/users", headers=h, json={"username": "eo_new", "role": "evidence_officer"}
    )
    assert r.status_code == 201 and r.json()["pending_approval"] is True
    enrol(f, r.json()["enrolment_url"], "the admin typed this 1")
    refused = f.http.post(
        "/api/v1/auth/token", data={"username": "eo_new", "password": "the admin typed this 1"}
    )
    assert refused.status_code == 401 and "second administrator" in refused.json()["detail"]
    # The token a pending account might hold opens nothing either.
    with ctx.db.session() as s:
        user = s.scalar(select(User).where(User.username == "eo_new"))
    early = issue_token(ctx, user).access_token
    assert (
        f.http.get("/api/v1/clips", headers={"Authorization": f"Bearer {early}"}).status_code == 401
    )

    (pending,) = f.http.get("/api/v1/approvals", headers=h).json()["items"]
    assert pending["kind"] == "account" and pending["username"] == "eo_new" and pending["mine"]
    # The one who asked cannot approve; nor can anyone but an admin.
    mine = f.http.post(f"/api/v1/approvals/{pending['id']}/approve", headers=h)
    assert mine.status_code == 409 and "another administrator" in mine.json()["detail"]
    for other in ("eo_brown", "aud_white"):
        assert (
            f.http.post(
                f"/api/v1/approvals/{pending['id']}/approve", headers=f.as_(other)
            ).status_code
            == 403
        )
    ok = f.http.post(f"/api/v1/approvals/{pending['id']}/approve", headers=f.as_("adm_grey"))
    assert ok.status_code == 200 and ok.json()["state"] == "approved"
    assert (
        f.http.post(
            f"/api/v1/approvals/{pending['id']}/refuse", headers=f.as_("adm_grey")
        ).status_code
        == 409
    )
    token = login(f.http, "eo_new", "the admin typed this 1")
    assert (
        f.http.get("/api/v1/clips", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    steps = [(e["type"], e["actor"]) for e in ledger(ctx) if e["type"].startswith("approval.")]
    assert steps == [
        ("approval.requested", "user:adm_black"),
        ("approval.approved", "user:adm_grey"),
    ]


def test_a_refused_account_stays_shut(admin) -> None:
    f, ctx = admin
    r = f.http.post(
        "/api/v1/users",
        headers=f.as_("adm_black"),
        json={"username": "pc_fake", "role": "officer", "officer_id": "PC7777"},
    )
    (pending,) = f.http.get("/api/v1/approvals", headers=f.as_("adm_grey")).json()["items"]
    assert pending["officer_id"] == "PC7777" and not pending["mine"]
    assert (
        f.http.post(
            f"/api/v1/approvals/{pending['id']}/refuse", headers=f.as_("adm_grey")
        ).status_code
        == 200
    )
    # Its link is spent and the account disabled.
    r2 = f.http.post(
        "/api/v1/auth/enrol",
        json={"token": enrol_token(r.json()["enrolment_url"]), "password": "long enough pw 1"},
    )
    assert r2.status_code == 404
    (fake,) = [
        u
        for u in service.list_users(ctx, _principal(ctx, "adm_grey"))
        if u["username"] == "pc_fake"
    ]
    assert fake["disabled"] and not fake["approved"]
    assert [e["type"] for e in ledger(ctx)][-1] == "approval.refused"


def test_officer_ids_are_unique(admin) -> None:
    """The finding: an officer made with another officer's id streamed that officer's clips."""
    f, ctx = admin
    for officer_id in ("PC1234", "pc1234", " PC1234 "):
        r = f.http.post(
            "/api/v1/users",
            headers=f.as_("adm_black"),
            json={"username": "pc_twin", "role": "officer", "officer_id": officer_id},
        )
        assert r.status_code == 409, r.text
        assert "already belongs to pc_smith" in r.json()["detail"]
    with pytest.raises(Conflict):
        create_user(ctx, "pc_twin", "officer", PASSWORD, officer_id="PC1234")
    # The database holds the line too, whatever path a row comes by.
    with pytest.raises(IntegrityError), ctx.db.write_session() as s:
        s.add(
            User(
                username="pc_twin",
                role="officer",
                officer_id="PC1234",
                password_hash="x",
                created_at=clock.now(),
                disabled=False,
                failed_logins=0,
            )
        )
    # An empty officer id is none at all (and any number of accounts have none).
    for name in ("aud_a1", "aud_a2"):
        r = f.http.post(
            "/api/v1/users",
            headers=f.as_("adm_black"),
            json={"username": name, "role": "auditor", "officer_id": ""},
        )
        assert r.status_code == 201 and r.json()["officer_id"] is None


def test_a_person_has_a_full_name_for_documents(admin) -> None:
    """Statements name people, not logins: an account may carry the name documents print,
    normalised to one line, bounded, and recorded when the account is made."""
    f, ctx = admin
    r = f.http.post(
        "/api/v1/users",
        headers=f.as_("adm_black"),
        json={
            "username": "pc_alun",
            "role": "officer",
            "officer_id": "PC4242",
            "full_name": "  PC   Alun\nJones ",
        },
    )
    assert r.status_code == 201 and r.json()["full_name"] == "PC Alun Jones"
    created = [json.loads(e) for _, e in ctx.ledger.entries(0, ctx.ledger.size())]
    assert [
        e["full_name"]
        for e in created
        if e["type"] == "user.created" and e["username"] == "pc_alun"
    ] == ["PC Alun Jones"]
    too_long = f.http.post(
        "/api/v1/users",
        headers=f.as_("adm_black"),
        json={"username": "pc_long", "role": "officer", "full_name": "x" * 101},
    )
    assert too_long.status_code == 422
    unprintable = f.http.post(
        "/api/v1/users",
        headers=f.as_("adm_black"),
        json={"username": "pc_bell", "role": "officer", "full_name": "PC \x07 Bell"},
    )
    assert unprintable.status_code == 422 and "printable" in unprintable.text
    listed = {
        u["username"]: u
        for u in f.http.get("/api/v1/users", headers=f.as_("adm_black")).json()["items"]
    }
    assert listed["pc_alun"]["full_name"] == "PC Alun Jones"


def test_admin_cannot_lock_themselves_out(admin) -> None:
    f, _ = admin
    r = f.http.patch("/api/v1/users/adm_black", headers=f.as_("adm_black"), json={"disabled": True})
    assert r.status_code == 409


def test_a_role_that_opens_footage_waits_for_approval_and_taking_one_away_does_not(admin) -> None:
    f, ctx = admin
    h = f.as_("adm_black")
    r = f.http.patch("/api/v1/users/cps_green", headers=h, json={"role": "evidence_officer"})
    assert r.status_code == 200 and r.json()["role"] == "cps"
    assert r.json()["pending_role"] == "evidence_officer"
    # Still a CPS lawyer: no case can be made.
    assert (
        f.http.post(
            "/api/v1/cases", headers=f.as_("cps_green"), json={"title": "t", "reference": "r"}
        ).status_code
        == 403
    )
    (pending,) = f.http.get("/api/v1/approvals", headers=h).json()["items"]
    assert (pending["kind"], pending["role"], pending["current_role"]) == (
        "role",
        "evidence_officer",
        "cps",
    )
    assert (
        f.http.post(
            f"/api/v1/approvals/{pending['id']}/approve", headers=f.as_("adm_grey")
        ).status_code
        == 200
    )
    assert (
        f.http.post(
            "/api/v1/cases", headers=f.as_("cps_green"), json={"title": "t", "reference": "r"}
        ).status_code
        == 201
    )
    # Taking a footage role away is immediate (it only closes) and recorded.
    r = f.http.patch("/api/v1/users/pc_jones", headers=h, json={"role": "auditor"})
    assert r.status_code == 200 and r.json()["role"] == "auditor"
    entry = [e for e in ledger(ctx) if e["type"] == "user.updated"][-1]
    assert entry["previous_role"] == "officer" and entry["actor"] == "user:adm_black"
    # An admin cannot make another admin alone either.
    r = f.http.patch("/api/v1/users/aud_white", headers=h, json={"role": "admin"})
    assert r.json()["role"] == "auditor" and r.json()["pending_role"] == "admin"


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
    assert (
        f.http.patch("/api/v1/devices/dock-9", headers=h, json={"disabled": True}).status_code
        == 204
    )
    assert f.http.post("/api/v1/uploads", headers=dock, json=body).status_code == 401
    assert key not in json.dumps([e.decode() for _, e in ctx.ledger.entries(0, ctx.ledger.size())])


def test_only_admins_administer(admin) -> None:
    f, _ = admin
    for user in ("eo_brown", "aud_white", "pc_smith", "cps_green"):
        assert f.http.get("/api/v1/users", headers=f.as_(user)).status_code == 403
        assert (
            f.http.post("/api/v1/devices", headers=f.as_(user), json={"name": "x1"}).status_code
            == 403
        )


def _principal(ctx: Context, username: str) -> Principal:
    with ctx.db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
    return Principal(user.id, user.username, Role(user.role), user.officer_id)


def test_grants_in_force_are_listed_and_only_auditors_receive_them(admin) -> None:
    """The admin's grants page: `audit.list_grants` (in force only) and `audit.grantees`."""
    f, ctx = admin
    adm = _principal(ctx, "adm_black")
    case = f.http.post(
        "/api/v1/cases", headers=f.as_("eo_brown"), json={"title": "R v Roe", "reference": "U7"}
    ).json()
    assert audit.grantees(ctx, adm) == ["aud_white"]
    create_user(ctx, "aud_gone", "auditor", PASSWORD)
    assert audit.grantees(ctx, adm) == ["aud_gone", "aud_white"]
    service.set_user_state(ctx, adm, "aud_gone", disabled=True)
    assert audit.grantees(ctx, adm) == ["aud_white"]  # a disabled auditor is not offered

    now = clock.now()
    for days in (30, 2):
        audit.grant_footage(
            ctx,
            adm,
            username="aud_white",
            reason=f"review for {days} days",
            expires_at=now + dt.timedelta(days=days),
            case_id=case["id"],
        )
    grants = audit.list_grants(ctx, adm)
    assert [
        (g["username"], g["case_id"], g["clip_id"], g["reason"], g["granted_by"]) for g in grants
    ] == [
        ("aud_white", case["id"], None, "review for 2 days", "adm_black"),  # soonest first
        ("aud_white", case["id"], None, "review for 30 days", "adm_black"),
    ]
    clock.set_clock(lambda: now + dt.timedelta(days=3))
    assert [g["reason"] for g in audit.list_grants(ctx, adm)] == ["review for 30 days"]
    for name in ("eo_brown", "aud_white"):
        with pytest.raises(AccessDenied):
            audit.list_grants(ctx, _principal(ctx, name))
        with pytest.raises(AccessDenied):
            audit.grantees(ctx, _principal(ctx, name))


def test_a_grant_reason_is_bounded_by_the_service_not_only_the_api(admin) -> None:
    """The reason goes into the permanent ledger: a caller that is not the API (the CLI, a
    script) gets the same 500-character bound, and a refused grant leaves no trace."""
    f, ctx = admin
    adm = _principal(ctx, "adm_black")
    case = f.http.post(
        "/api/v1/cases", headers=f.as_("eo_brown"), json={"title": "R v Long", "reference": "U8"}
    ).json()
    before = len(ledger(ctx))
    for reason in ("x" * 501, "review " * 2000, "   "):
        with pytest.raises(InvalidInput, match="500"):
            audit.grant_footage(
                ctx,
                adm,
                username="aud_white",
                reason=reason,
                expires_at=clock.now() + dt.timedelta(days=1),
                case_id=case["id"],
            )
    assert len(ledger(ctx)) == before and audit.list_grants(ctx, adm) == []
    made = audit.grant_footage(
        ctx,
        adm,
        username="aud_white",
        reason="  " + "y" * 500 + " ",
        expires_at=clock.now() + dt.timedelta(days=1),
        case_id=case["id"],
    )
    assert made["pending"] and [g["reason"] for g in audit.list_grants(ctx, adm)] == ["y" * 500]


def test_the_user_list_says_whether_a_lock_out_is_still_in_force(admin) -> None:
    _, ctx = admin
    adm = _principal(ctx, "adm_black")
    until = clock.now() + dt.timedelta(minutes=15)
    with ctx.db.write_session() as s:
        s.execute(update(User).where(User.username == "pc_jones").values(locked_until=until))
    (jones,) = [u for u in service.list_users(ctx, adm) if u["username"] == "pc_jones"]
    assert jones["locked"] is True and jones["locked_until"]
    clock.set_clock(lambda: until + dt.timedelta(seconds=1))
    (jones,) = [u for u in service.list_users(ctx, adm) if u["username"] == "pc_jones"]
    assert jones["locked"] is False


def test_a_footage_grant_opens_nothing_until_a_second_admin_approves(
    admin, clip_with_sidecar
) -> None:
    """The finding: an admin made an auditor and granted it footage alone."""
    from evidence.accounts.service import create_device
    from evidence.ingest.service import process_upload
    from tests.fixtures.ingest import Dock

    f, ctx = admin
    docked = Dock(f.http, create_device(ctx, None, "dock-g").key).dock(clip_with_sidecar)
    process_upload(ctx, docked["id"])
    clip = docked["clip_id"]
    stream = f"/api/v1/clips/{clip}/stream"
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    body = {
        "username": "aud_white",
        "clip_id": clip,
        "reason": "complaint 2024/7",
        "expires_at": expires,
    }
    r = f.http.post("/api/v1/grants", headers=f.as_("adm_black"), json=body)
    assert r.status_code == 201 and r.json()["pending"] is True
    assert (
        f.http.get(stream, headers=f.as_("aud_white"), params={"reason": "audit"}).status_code
        == 403
    )
    (item,) = f.http.get("/api/v1/approvals", headers=f.as_("adm_grey")).json()["items"]
    assert (item["kind"], item["username"], item["clip_id"], item["reason"]) == (
        "grant",
        "aud_white",
        clip,
        "complaint 2024/7",
    )
    assert (
        f.http.post(
            f"/api/v1/approvals/{item['id']}/approve", headers=f.as_("adm_black")
        ).status_code
        == 409
    )
    assert (
        f.http.post(
            f"/api/v1/approvals/{item['id']}/approve", headers=f.as_("adm_grey")
        ).status_code
        == 200
    )
    assert (
        f.http.get(stream, headers=f.as_("aud_white"), params={"reason": "audit"}).status_code
        == 200
    )
    # A refused grant never opens anything, and is no longer listed as in force.
    r = f.http.post(
        "/api/v1/grants", headers=f.as_("adm_grey"), json={**body, "reason": "second look"}
    )
    (item,) = f.http.get("/api/v1/approvals", headers=f.as_("adm_black")).json()["items"]
    assert (
        f.http.post(
            f"/api/v1/approvals/{item['id']}/refuse", headers=f.as_("adm_black")
        ).status_code
        == 200
    )
    grants = audit.list_grants(ctx, _principal(ctx, "adm_black"))
    assert [(g["reason"], g["pending"]) for g in grants] == [("complaint 2024/7", False)]
    # A grant revoked while it waits leaves nothing to approve.
    r = f.http.post(
        "/api/v1/grants", headers=f.as_("adm_black"), json={**body, "reason": "third look"}
    )
    assert (
        f.http.delete(f"/api/v1/grants/{r.json()['id']}", headers=f.as_("adm_black")).status_code
        == 204
    )
    assert f.http.get("/api/v1/approvals", headers=f.as_("adm_grey")).json()["items"] == []


@pytest.mark.parametrize("field", ["clip_id", "case_id"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_id_in_a_grant_is_a_clear_422(admin, field: str, value: str) -> None:
    """It was a 500 (the empty id reached the database's foreign key)."""
    f, ctx = admin
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    r = f.http.post(
        "/api/v1/grants",
        headers=f.as_("adm_black"),
        json={
            "username": "aud_white",
            field: value,
            "reason": "a good reason",
            "expires_at": expires,
        },
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "exactly one of clip_id or case_id" in r.json()["detail"]
    assert "grant.created" not in types(ctx)


def test_auditors_see_an_alert_for_every_account_change(admin) -> None:
    f, ctx = admin
    h = f.as_("adm_black")
    f.http.post(
        "/api/v1/users", headers=h, json={"username": "eo_alert", "role": "evidence_officer"}
    )
    f.http.patch("/api/v1/users/pc_jones", headers=h, json={"role": "evidence_officer"})
    for item in f.http.get("/api/v1/approvals", headers=f.as_("adm_grey")).json()["items"]:
        f.http.post(f"/api/v1/approvals/{item['id']}/refuse", headers=f.as_("adm_grey"))
    r = f.http.get("/api/v1/audit/alerts", headers=f.as_("aud_white"), params={"limit": 500})
    assert r.status_code == 200
    seen = [(a["type"], a.get("username")) for a in r.json()["items"]]
    for expected in [
        ("user.created", "eo_alert"),
        ("user.enrolment_issued", "eo_alert"),
        ("approval.requested", "eo_alert"),
        ("approval.refused", "eo_alert"),
        ("approval.requested", "pc_jones"),
        ("approval.refused", "pc_jones"),
    ]:
        assert expected in seen, (expected, seen)
    assert r.json()["items"][0]["index"] > r.json()["items"][-1]["index"]  # newest first
    page = f.http.get(
        "/api/v1/audit/alerts",
        headers=f.as_("aud_white"),
        params={"limit": 2, "before": r.json()["items"][0]["index"]},
    ).json()["items"]
    assert [a["index"] for a in page] == [a["index"] for a in r.json()["items"][1:3]]
    # Alerts are the auditors': the admins whose changes they are cannot read them.
    for who in ("adm_black", "adm_grey", "eo_brown", "pc_smith"):
        assert f.http.get("/api/v1/audit/alerts", headers=f.as_(who)).status_code == 403


def test_an_admin_unlocks_and_forces_a_reset_without_knowing_the_password(admin) -> None:
    f, ctx = admin
    h = f.as_("adm_black")
    for _ in range(ctx.settings.login_max_failures):
        f.http.post("/api/v1/auth/token", data={"username": "cps_green", "password": "wrong guess"})
    (green,) = [
        u
        for u in f.http.get("/api/v1/users", headers=h).json()["items"]
        if u["username"] == "cps_green"
    ]
    assert green["locked"]
    r = f.http.post("/api/v1/users/cps_green/unlock", headers=h)
    assert r.status_code == 200 and not r.json()["locked"]
    old_token = login(f.http, "cps_green")
    # A forced reset: the old password and every older token stop working; the link sets a
    # new one. A CPS account opens no footage by itself: it needs no second approval.
    r = f.http.post("/api/v1/users/cps_green/reset", headers=h)
    assert r.status_code == 200 and r.json()["pending_approval"] is False
    assert "password" not in json.dumps(r.json()).replace("enrolment", "")
    assert (
        f.http.post(
            "/api/v1/auth/token", data={"username": "cps_green", "password": PASSWORD}
        ).status_code
        == 401
    )
    assert (
        f.http.get("/api/v1/me", headers={"Authorization": f"Bearer {old_token}"}).status_code
        == 401
    )
    enrol(f, r.json()["enrolment_url"], "green's own new password")
    login(f.http, "cps_green", "green's own new password")
    # For an account that opens footage, whoever opens the link is vouched for again.
    r = f.http.post("/api/v1/users/eo_brown/reset", headers=h)
    assert r.json()["pending_approval"] is True
    enrol(f, r.json()["enrolment_url"], "who typed this one 1")
    assert (
        f.http.post(
            "/api/v1/auth/token", data={"username": "eo_brown", "password": "who typed this one 1"}
        ).status_code
        == 401
    )
    (item,) = f.http.get("/api/v1/approvals", headers=f.as_("adm_grey")).json()["items"]
    f.http.post(f"/api/v1/approvals/{item['id']}/approve", headers=f.as_("adm_grey"))
    login(f.http, "eo_brown", "who typed this one 1")
    assert f.http.post("/api/v1/users/adm_black/reset", headers=h).status_code == 409  # yourself
    assert f.http.post("/api/v1/users/nobody/reset", headers=h).status_code == 404
    kinds = [e["type"] for e in ledger(ctx)]
    assert {"user.unlocked", "user.reset", "user.enrolled"} <= set(kinds)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_the_migration_stops_on_shared_officer_ids_and_names_them(
    engine: str, tmp_path, request: pytest.FixtureRequest
) -> None:
    """Which of two accounts sharing a collar number is the officer is for people to decide:
    the upgrade refuses, names the duplicates, and goes through once they are resolved."""
    from sqlalchemy import text

    from evidence.db import make_engine
    from evidence.migrate import upgrade

    url = (
        f"sqlite:///{tmp_path}/old.db"
        if engine == "sqlite"
        else request.getfixturevalue("postgres_server").create_database()
    )
    upgrade(url, "0008")
    db = make_engine(url)
    try:
        with db.begin() as conn:
            for i, (name, officer_id) in enumerate(
                [("pc_a", "PC1"), ("pc_b", "PC1"), ("pc_c", ""), ("pc_d", "")]
            ):
                conn.execute(
                    text(
                        "INSERT INTO users (id, username, role, officer_id, password_hash,"
                        " disabled, failed_logins, created_at)"
                        " VALUES (:id, :n, 'officer', :o, 'x', :f, 0, :t)"
                    ),
                    {
                        "id": f"u{i}",
                        "n": name,
                        "o": officer_id,
                        "f": False,
                        "t": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
                    },
                )
        with pytest.raises(RuntimeError, match=r"shared: 'PC1' \(2 accounts\)"):
            upgrade(url, "0009")
        with db.begin() as conn:
            conn.execute(text("UPDATE users SET officer_id = NULL WHERE username = 'pc_b'"))
        upgrade(url, "0009")
        with db.connect() as conn:
            rows = dict(conn.execute(text("SELECT username, officer_id FROM users")).all())
            approved = set(conn.execute(text("SELECT approved FROM users")).scalars())
        assert rows == {"pc_a": "PC1", "pc_b": None, "pc_c": None, "pc_d": None}
        assert approved == {True}  # accounts already in use stay in force
    finally:
        db.dispose()


def test_the_enrolment_form_needs_its_own_nonce_so_another_site_cannot_post_it(admin) -> None:
    """The page is public (the token is the credential) and has no session to bind a CSRF
    token to: it carries the sign-in form's double-submit nonce instead."""
    f, ctx = admin
    r = f.http.post(
        "/api/v1/users", headers=f.as_("adm_black"), json={"username": "cps_x", "role": "cps"}
    )
    path = "/ui/enrol/" + enrol_token(r.json()["enrolment_url"])
    with httpx.Client(base_url=str(f.http.base_url), timeout=30) as browser:
        page = browser.get(path)
        assert page.status_code == 200 and "Welcome, cps_x" in page.text
        form = {"password": "chosen by an attacker", "repeat": "chosen by an attacker"}
        forged = browser.post(path, data={**form, "nonce": "guessed"})
        assert forged.status_code == 400
        cross = browser.post(
            path,
            data={**form, "nonce": browser.cookies.get("evidence_ui_login")},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403
        with ctx.db.session() as s:
            assert s.scalar(select(User.password_hash).where(User.username == "cps_x")) == "!enrol"
        good = browser.post(
            path,
            data={
                "password": "cps x own password",
                "repeat": "cps x own password",
                "nonce": browser.cookies.get("evidence_ui_login"),
            },
        )
        assert good.status_code == 303
    login(f.http, "cps_x", "cps x own password")
    assert f.http.get(path).status_code == 404


def test_an_admin_sets_where_notifications_go(admin) -> None:
    """An address for notifications, set and removed by an admin; only admins may, only a
    plain address is taken, and the ledger says it changed without holding it."""
    f, ctx = admin
    url = "/api/v1/users/cps_green/email"
    r = f.http.put(url, headers=f.as_("adm_black"), json={"email": "priya.green@cps.example"})
    assert r.status_code == 200 and r.json()["email"] == "priya.green@cps.example"
    listed = f.http.get("/api/v1/users", headers=f.as_("adm_black")).json()["items"]
    assert {u["username"]: u["email"] for u in listed}["cps_green"] == "priya.green@cps.example"
    header = f.http.put(
        url, headers=f.as_("adm_black"), json={"email": "p@cps.example\r\nBcc: x@example.org"}
    )
    assert header.status_code == 422
    assert f.http.put(url, headers=f.as_("eo_brown"), json={"email": "x@y.org"}).status_code == 403
    assert f.http.put(url, headers=f.as_("adm_black"), json={"email": None}).json()["email"] is None
    changes = [
        json.loads(e)
        for _, e in ctx.ledger.entries(0, ctx.ledger.size())
        if json.loads(e)["type"] == "user.updated"
    ]
    assert [e["email_set"] for e in changes] == [True, False]
    assert "cps.example" not in json.dumps(changes)
