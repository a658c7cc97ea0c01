"""The camera register: registering, assigning (never two wearers at once), state, who may
do what through the API, and `evidence admin`'s camera commands."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from evidence.cameras import service
from evidence.context import Context
from evidence.errors import Conflict, InvalidInput, NotFound
from tests.fixtures.api import running_api
from tests.fixtures.people import make_force

UTC = dt.UTC


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def types_about(ctx: Context, serial: str) -> list[str]:
    return [json.loads(e)["type"] for _, e in ctx.ledger.entries_about(f"camera:{serial}")]


def test_register_assign_end_and_the_ledger(ctx: Context) -> None:
    cam = service.register_camera(ctx, None, " x6039a1b2 ", make="Axon", model="Body 3")
    assert (cam["serial"], cam["state"], cam["registered_by"]) == (
        "X6039A1B2",
        "in_service",
        "system:cli",
    )
    with pytest.raises(Conflict, match="already in the register"):
        service.register_camera(ctx, None, "X6039A1B2")
    with pytest.raises(InvalidInput, match="serial"):
        service.register_camera(ctx, None, "no spaces please")

    issue = service.assign(
        ctx,
        None,
        "X6039A1B2",
        officer_id="4711",
        kind="personal",
        starts_at=t("2026-11-01T00:00:00"),
    )
    assert issue["ends_at"] is None
    assert issue["describe"] == "camera register: personal issue since 2026-11-01"
    ended = service.end_assignment(
        ctx, None, "X6039A1B2", issue["id"], ends_at=t("2026-12-01T06:00:00")
    )
    assert ended["ends_at"] == "2026-12-01T06:00:00.000000Z" and ended["ended_by"] == "system:cli"
    with pytest.raises(Conflict, match="never rewritten"):
        service.end_assignment(ctx, None, "X6039A1B2", issue["id"])
    # Handed back, it can go out from the pool for a shift.
    shift = service.assign(
        ctx,
        None,
        "X6039A1B2",
        officer_id="4712",
        kind="pool",
        starts_at=t("2026-12-01T07:00:00"),
        ends_at=t("2026-12-01T19:00:00"),
    )
    detail = service.camera_detail(ctx, None, "X6039A1B2")
    assert [a["id"] for a in detail["assignments"]] == [issue["id"], shift["id"]]
    assert detail["clips_total"] == 0
    assert types_about(ctx, "X6039A1B2") == [
        "camera.registered",
        "camera.assigned",
        "camera.assignment_ended",
        "camera.assigned",
    ]


def test_overlapping_assignments_are_refused_naming_the_overlap(ctx: Context) -> None:
    service.register_camera(ctx, None, "VB400-0042")
    shift = service.assign(
        ctx,
        None,
        "VB400-0042",
        officer_id="PC5678",
        kind="pool",
        starts_at=t("2026-12-01T07:00:00"),
        ends_at=t("2026-12-01T19:00:00"),
    )
    for starts, ends in (
        ("2026-12-01T18:00:00", "2026-12-02T02:00:00"),  # overlaps the end
        ("2026-12-01T06:00:00", "2026-12-01T08:00:00"),  # the start
        ("2026-12-01T09:00:00", "2026-12-01T10:00:00"),
    ):  # inside it
        with pytest.raises(Conflict) as refused:
            service.assign(
                ctx,
                None,
                "VB400-0042",
                officer_id="PC1234",
                kind="pool",
                starts_at=t(starts),
                ends_at=t(ends),
            )
        assert "PC5678" in str(refused.value) and shift["id"] in str(refused.value)
    # An open-ended personal issue starting before the shift's end overlaps it too.
    with pytest.raises(Conflict, match="PC5678"):
        service.assign(
            ctx,
            None,
            "VB400-0042",
            officer_id="PC1234",
            kind="personal",
            starts_at=t("2026-11-01T00:00:00"),
        )
    # Back to back is no overlap: the end is exclusive.
    nxt = service.assign(
        ctx,
        None,
        "VB400-0042",
        officer_id="PC1234",
        kind="pool",
        starts_at=t("2026-12-01T19:00:00"),
        ends_at=t("2026-12-02T03:00:00"),
    )
    assert nxt["officer_id"] == "PC1234"
    with pytest.raises(InvalidInput, match="pool checkout needs its end"):
        service.assign(ctx, None, "VB400-0042", officer_id="PC1234", kind="pool")
    with pytest.raises(InvalidInput, match="end after it starts"):
        service.assign(
            ctx,
            None,
            "VB400-0042",
            officer_id="PC1234",
            kind="pool",
            starts_at=t("2026-12-05T10:00:00"),
            ends_at=t("2026-12-05T09:00:00"),
        )
    with pytest.raises(NotFound, match="no camera"):
        service.assign(ctx, None, "NOPE-1", officer_id="PC1234", kind="personal")


def test_a_lost_camera_is_not_assigned(ctx: Context) -> None:
    service.register_camera(ctx, None, "BWC-7788")
    with pytest.raises(InvalidInput, match="reason"):
        service.set_state(ctx, None, "BWC-7788", "lost", "")
    lost = service.set_state(ctx, None, "BWC-7788", "lost", "left in a patrol car, reported 3 Dec")
    assert lost["state"] == "lost"
    with pytest.raises(Conflict, match="only a camera in service"):
        service.assign(ctx, None, "BWC-7788", officer_id="PC1234", kind="personal")
    with pytest.raises(InvalidInput, match="in_service, lost, retired"):
        service.set_state(ctx, None, "BWC-7788", "stolen", "why not")
    entry = json.loads(ctx.ledger.entries_about("camera:BWC-7788")[-1][1])
    assert (entry["type"], entry["previous"], entry["state"]) == (
        "camera.state_changed",
        "in_service",
        "lost",
    )


def test_the_api_obeys_the_policy_per_role(ctx: Context) -> None:
    with running_api(ctx.settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        f = make_force(ctx, http)
        made = http.post(
            "/api/v1/cameras",
            headers=f.as_("adm_black"),
            json={"serial": "X6039A1B2", "make": "Axon"},
        )
        assert made.status_code == 201, made.text
        for user in ("pc_smith", "cps_green"):
            assert http.get("/api/v1/cameras", headers=f.as_(user)).status_code == 403
        for user in ("pc_smith", "cps_green", "aud_white"):
            r = http.post("/api/v1/cameras", headers=f.as_(user), json={"serial": "B-1"})
            assert r.status_code == 403, (user, r.text)
            r = http.post(
                "/api/v1/cameras/X6039A1B2/assignments",
                headers=f.as_(user),
                json={"officer_id": "PC1234", "kind": "personal"},
            )
            assert r.status_code == 403, (user, r.text)
        assert http.get("/api/v1/cameras").status_code == 401
        eo = f.as_("eo_brown")
        issue = http.post(
            "/api/v1/cameras/X6039A1B2/assignments",
            headers=eo,
            json={"officer_id": "PC1234", "kind": "personal", "starts_at": "2026-11-01T00:00:00Z"},
        )
        assert issue.status_code == 201, issue.text
        clash = http.post(
            "/api/v1/cameras/X6039A1B2/assignments",
            headers=eo,
            json={
                "officer_id": "PC5678",
                "kind": "pool",
                "starts_at": "2026-12-01T07:00:00Z",
                "ends_at": "2026-12-01T19:00:00Z",
            },
        )
        assert clash.status_code == 409 and "PC1234" in clash.json()["detail"]
        naive = http.post(
            "/api/v1/cameras/X6039A1B2/assignments",
            headers=eo,
            json={
                "officer_id": "PC5678",
                "kind": "pool",
                "starts_at": "2027-01-01T07:00:00",
                "ends_at": "2027-01-01T09:00:00",
            },
        )
        assert naive.status_code == 422 and "time zone" in naive.json()["detail"]
        for user in ("aud_white", "eo_brown", "adm_black"):
            listed = http.get("/api/v1/cameras", headers=f.as_(user))
            assert listed.status_code == 200
            (camera,) = listed.json()["items"]
            assert camera["holder"]["officer_id"] == "PC1234"
        ended = http.post(
            f"/api/v1/cameras/X6039A1B2/assignments/{issue.json()['id']}/end", headers=eo, json={}
        )
        assert ended.status_code == 200 and ended.json()["ended_by"] == "user:eo_brown"
        state = http.post(
            "/api/v1/cameras/X6039A1B2/state",
            headers=eo,
            json={"state": "retired", "reason": "cracked lens"},
        )
        assert state.status_code == 200 and state.json()["state"] == "retired"
        detail = http.get("/api/v1/cameras/X6039A1B2", headers=f.as_("aud_white")).json()
        assert detail["holder"] is None and len(detail["assignments"]) == 1
        assert http.get("/api/v1/cameras/NOPE-1", headers=eo).status_code == 404


@pytest.fixture
def env(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("EVIDENCE_DATABASE_URL", ctx.db.url)
    from evidence.config import get_settings

    get_settings.cache_clear()
    yield ctx
    get_settings.cache_clear()


def test_the_admin_cli_registers_assigns_and_lists(env: Context) -> None:
    runner = CliRunner()
    made = runner.invoke(
        app, ["admin", "register-camera", "X6039A1B2", "--make", "Axon", "--model", "Body 3"]
    )
    assert made.exit_code == 0, made.output
    personal = runner.invoke(
        app,
        [
            "admin",
            "assign-camera",
            "X6039A1B2",
            "--officer-id",
            "4711",
            "--from",
            "2026-11-01T00:00:00Z",
            "--to",
            "2026-11-30T00:00:00Z",
        ],
    )
    assert personal.exit_code == 0, personal.output
    assert "pool checkout 2026-11-01 00:00" in personal.output
    issued = runner.invoke(app, ["admin", "assign-camera", "X6039A1B2", "--officer-id", "4711"])
    assert issued.exit_code == 0 and "personal issue since" in issued.output, issued.output
    listed = runner.invoke(app, ["admin", "cameras"])
    assert listed.exit_code == 0
    assert (
        "X6039A1B2\tAxon Body 3\tin_service\theld by 4711 (camera register: personal"
        in listed.output
    )
    # Errors are the service's words, exit 1, no traceback.
    again = runner.invoke(
        app,
        [
            "admin",
            "assign-camera",
            "X6039A1B2",
            "--officer-id",
            "4712",
            "--from",
            "2099-12-01T07:00:00Z",
            "--to",
            "2099-12-01T19:00:00Z",
        ],
    )
    assert again.exit_code == 1 and "already assigned to officer 4711" in again.output
    assert "Traceback" not in again.output and isinstance(again.exception, SystemExit)
    bad = runner.invoke(
        app, ["admin", "assign-camera", "X6039A1B2", "--officer-id", "4712", "--from", "yesterday"]
    )
    assert bad.exit_code == 1 and "ISO 8601" in bad.output
    unknown = runner.invoke(app, ["admin", "register-camera", "X6039A1B2"])
    assert unknown.exit_code == 1 and "already in the register" in unknown.output


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_the_migration_keeps_what_clips_held_before_the_register(
    engine: str, tmp_path, request: pytest.FixtureRequest
) -> None:
    """0012 on a store in use: every name a clip was docked under (a twin's too) and each
    ingested clip's first attribution (from its sidecar) are there afterwards; it goes
    down and up again."""
    from sqlalchemy import text

    from evidence.db import make_engine
    from evidence.migrate import upgrade

    url = (
        f"sqlite:///{tmp_path}/old.db"
        if engine == "sqlite"
        else request.getfixturevalue("postgres_server").create_database()
    )
    upgrade(url, "0011")
    at = dt.datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    db = make_engine(url)
    try:
        with db.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (id, name, kind, key_hash, disabled, created_at)"
                    " VALUES ('d1', 'dock-1', 'dock', :k, :f, :t)"
                ),
                {"k": "0" * 64, "f": False, "t": at},
            )
            conn.execute(
                text(
                    "INSERT INTO clips (id, sha256, size, state, filename, officer_id,"
                    " camera_serial, ingested_at, integrity) VALUES ('c1', :h, 10,"
                    " 'ready', 'a.mp4', 'PC1', 'CAM-1', :t, 'unchecked')"
                ),
                {"h": "a" * 64, "t": at},
            )
            for uid, name, state in (
                ("u1", "a.mp4", "stored"),
                ("u2", "b.mp4", "duplicate"),
                ("u3", "c.mp4", "rejected"),
            ):
                conn.execute(
                    text(
                        "INSERT INTO uploads (id, device_id, sha256, size, filename,"
                        " state, part_size, created_at) VALUES (:i, 'd1', :h, 10, :n,"
                        " :s, 8388608, :t)"
                    ),
                    {"i": uid, "h": "a" * 64, "n": name, "s": state, "t": at},
                )
        upgrade(url)
        with db.connect() as conn:
            names = (
                conn.execute(
                    text("SELECT filename FROM clip_names WHERE clip_id = 'c1' ORDER BY filename")
                )
                .scalars()
                .all()
            )
            hows = conn.execute(text("SELECT camera_how, officer_how FROM clips")).one()
            history = conn.execute(
                text("SELECT camera_serial, officer_id, officer_how, actor FROM clip_attributions")
            ).all()
        assert names == ["a.mp4", "b.mp4"]  # the rejected upload's bytes were not these
        assert tuple(hows) == ("sidecar", "sidecar")
        assert [tuple(r) for r in history] == [("CAM-1", "PC1", "sidecar", "system:worker")]
        from alembic import command

        from evidence.migrate import alembic_config

        command.downgrade(alembic_config(url), "0011")
        upgrade(url)
    finally:
        db.dispose()
