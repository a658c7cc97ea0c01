"""Which camera recorded a clip and which officer wore it: each vendor rule, then a real camera
folder docked with `evidence dock` through the real API, attributed by the camera register,
seen by the right officers, the rest queued for an evidence officer to attribute."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app
from evidence.accounts.service import create_device
from evidence.cameras import rules
from evidence.cameras.attribution import find_camera
from evidence.cameras.models import Camera
from evidence.clips.models import Clip
from evidence.context import Context
from evidence.errors import InvalidInput
from evidence.ingest.models import Upload
from evidence.ingest.service import check_source, complete_upload, declare_upload, process_upload
from evidence.types import new_id
from tests.fixtures.api import running_api
from tests.fixtures.cameras import (
    AXON_SERIAL,
    TAGGED_SERIAL,
    VB400_SERIAL,
    CameraFolder,
    build_camera_folder,
)
from tests.fixtures.ingest import Dock, distinct_copy, put_as_joined
from tests.fixtures.media import Clip as ClipFile
from tests.fixtures.people import make_force

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

# -- the vendor rules, one by one ----------------------------------------------------------------


@pytest.mark.parametrize(
    "tags, serial, how",
    [
        ({"comment": "Axon Body 3 X6039A1B2 fw 1.2"}, "X6039A1B2", "container tag 'comment'"),
        ({"Encoder": "Motorola VB400-0042 v5"}, "VB400-0042", "container tag 'encoder'"),
        ({"SERIAL_NUMBER": " hx2-551234 "}, "HX2-551234", "container tag 'serial_number'"),
        ({"camera_serial": "BWV-7781-0042"}, "BWV-7781-0042", "container tag 'camera_serial'"),
        ({"description": "Body camera, S/N: QZ-99812"}, "QZ-99812", "container tag 'description'"),
        ({"comment": "serial number=AB1234"}, "AB1234", "container tag 'comment'"),
    ],
)
def test_tag_rules_find_the_serial(tags: dict[str, str], serial: str, how: str) -> None:
    found = rules.from_tags(tags)
    assert found is not None and (found.serial, found.how) == (serial, how)


def test_tag_rules_name_the_make_and_model_they_know() -> None:
    found = rules.from_tags({"comment": "AXON BODY 3 x6039a1b2"})
    assert found == rules.Found("X6039A1B2", "container tag 'comment'", "Axon", "Body 3")


def test_tags_without_a_serial_name_no_camera() -> None:
    assert (
        rules.from_tags(
            {
                "encoder": "Lavf59.27.100",
                "major_brand": "isom",
                "comment": "recorded at the station",
                "title": "snapshot",
            }
        )
        is None
    )


@pytest.mark.parametrize(
    "path, filename, serial, how",
    [
        (
            "Axon Body 3/X6039A1B2/2026-12-01/AXON_Body_3_Video_2026-12-01_0930.mp4",
            "AXON_Body_3_Video_2026-12-01_0930.mp4",
            "X6039A1B2",
            "folder naming (Axon Body 3)",
        ),
        ("E:/axon_body_3/x6039a1b2/a.mp4", "a.mp4", "X6039A1B2", "folder naming (Axon Body 3)"),
        (
            "Video/VB400-0042_20261201_101500.mp4",
            "VB400-0042_20261201_101500.mp4",
            "VB400-0042",
            "file naming (Motorola VB400)",
        ),
        (None, "VB400-0042_20261201_101500.mp4", "VB400-0042", "file naming (Motorola VB400)"),
        ("DCIM/100BWC12/FILE0001.MP4", "FILE0001.MP4", "BWC12", "folder naming (DCIM folder)"),
    ],
)
def test_naming_rules_find_the_serial(
    path: str | None, filename: str, serial: str, how: str
) -> None:
    found = rules.from_path(path, filename)
    assert found is not None and (found.serial, found.how) == (serial, how)


@pytest.mark.parametrize(
    "path, filename",
    [
        ("DCIM/100MEDIA/FILE0001.MP4", "FILE0001.MP4"),  # a generic DCIM folder names no camera
        ("Axon Body 3/notaserial/a.mp4", "a.mp4"),
        ("VB400-0042.mp4", "VB400-0042.mp4"),  # the VB400 names files serial_date_time
    ],
)
def test_naming_that_is_not_a_vendors_names_no_camera(path: str, filename: str) -> None:
    assert rules.from_path(path, filename) is None


def test_volume_label_rule() -> None:
    assert rules.from_volume_label("BWC-7788") == rules.Found("BWC-7788", "volume label BWC-7788")
    assert rules.from_volume_label("NO NAME") is None and rules.from_volume_label(None) is None


def test_the_sources_are_asked_in_the_documented_order() -> None:
    tags = {"comment": "S/N: TAG-1"}
    source = {"path": "Axon Body 3/X6039A1B2/a.mp4", "volume_label": "BWC-7788"}
    assert find_camera({"camera_serial": "side-1"}, tags, source, "a.mp4").how == "sidecar"
    assert find_camera({}, tags, source, "a.mp4").serial == "TAG-1"
    assert find_camera({}, {}, source, "a.mp4").how == "folder naming (Axon Body 3)"
    assert (
        find_camera(None, {}, {"volume_label": "BWC-7788"}, "a.mp4").how == "volume label BWC-7788"
    )
    assert find_camera(None, {}, None, "a.mp4") is None


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camera_folder(tmp_path_factory: pytest.TempPathFactory) -> CameraFolder:
    return build_camera_folder(tmp_path_factory.mktemp("camera-folder"))


def _ok(r: httpx.Response, status: int = 200) -> dict:
    assert r.status_code == status, r.text
    return r.json()


def _ids(f, user: str, **params) -> set[str]:  # type: ignore[no-untyped-def]
    return {
        c["id"]
        for c in _ok(f.http.get("/api/v1/clips", headers=f.as_(user), params=params))["items"]
    }


def test_a_docked_camera_folder_is_attributed_by_the_register(
    ctx: Context, camera_folder: CameraFolder, tmp_path: Path
) -> None:
    key = create_device(ctx, None, "dock-station-7").key
    with running_api(ctx.settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        f = make_force(ctx, http)
        eo = f.as_("eo_brown")
        # PC1234 (pc_smith) has their own Axon; PC5678 (pc_jones) takes a VB400 from the pool
        # for the early shift.
        _ok(
            http.post(
                "/api/v1/cameras",
                headers=eo,
                json={"serial": AXON_SERIAL, "make": "Axon", "model": "Body 3"},
            ),
            201,
        )
        _ok(
            http.post(
                f"/api/v1/cameras/{AXON_SERIAL}/assignments",
                headers=eo,
                json={
                    "officer_id": "PC1234",
                    "kind": "personal",
                    "starts_at": "2026-11-01T00:00:00Z",
                },
            ),
            201,
        )
        _ok(http.post("/api/v1/cameras", headers=eo, json={"serial": VB400_SERIAL}), 201)
        _ok(
            http.post(
                f"/api/v1/cameras/{VB400_SERIAL}/assignments",
                headers=eo,
                json={
                    "officer_id": "PC5678",
                    "kind": "pool",
                    "starts_at": "2026-12-01T07:00:00Z",
                    "ends_at": "2026-12-01T19:00:00Z",
                },
            ),
            201,
        )

        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "dock",
                str(camera_folder.root),
                "--api",
                url,
                "--device-key",
                key,
                "--wait",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        with ctx.db.session() as s:
            uploads = s.scalars(select(Upload).where(Upload.state == "processing")).all()
        assert len(uploads) == 4
        for u in uploads:
            assert process_upload(ctx, u.id) == "stored"
        with ctx.db.session() as s:
            clips = {c.sha256: c for c in s.scalars(select(Clip))}
            tagged_camera = s.get(Camera, TAGGED_SERIAL)
        by_file = {cf.rel: clips[cf.clip.sha256] for cf in camera_folder.files}

        # Each clip's camera, and how it was found.
        for cf in camera_folder.files:
            clip = by_file[cf.rel]
            assert (clip.camera_serial, clip.camera_how) == (cf.serial, cf.how), cf.rel
        axon, vb400 = by_file[camera_folder.axon.rel], by_file[camera_folder.vb400.rel]
        tagged, anonymous = by_file[camera_folder.tagged.rel], by_file[camera_folder.anonymous.rel]
        # Each clip's officer, and how.
        assert (axon.officer_id, axon.officer_how) == (
            "PC1234",
            "camera register: personal issue since 2026-11-01",
        )
        assert (vb400.officer_id, vb400.officer_how) == (
            "PC5678",
            "camera register: pool checkout 2026-12-01 07:00\u20132026-12-01 19:00 UTC",
        )
        assert tagged.officer_id is None and anonymous.officer_id is None
        # The unseen camera registered itself, saying how it was seen.
        assert tagged_camera is not None and tagged_camera.first_seen_at is not None
        registered = [json.loads(e) for _, e in ctx.ledger.entries_about(f"camera:{TAGGED_SERIAL}")]
        assert [(e["type"], e["actor"], e["how"]) for e in registered] == [
            ("camera.registered", "system:worker", "seen in a docked clip: container tag 'comment'")
        ]
        # clip.ingested carries the attribution.
        ingested = [
            json.loads(e)
            for _, e in ctx.ledger.entries_about(f"clip:{axon.id}")
            if json.loads(e)["type"] == "clip.ingested"
        ]
        assert ingested[0]["attribution"] == {
            "camera": {"serial": AXON_SERIAL, "how": "folder naming (Axon Body 3)"},
            "officer": {"id": "PC1234", "how": "camera register: personal issue since 2026-11-01"},
        }
        anon_entry = [
            json.loads(e)
            for _, e in ctx.ledger.entries_about(f"clip:{anonymous.id}")
            if json.loads(e)["type"] == "clip.ingested"
        ][0]
        assert anon_entry["attribution"] == {"camera": None, "officer": None}

        # Each officer sees the clips of the cameras they wore, and no others.
        assert _ids(f, "pc_smith") == {axon.id}
        assert _ids(f, "pc_jones") == {vb400.id}
        # The rest wait in the evidence officers' queue.
        queue = _ok(http.get("/api/v1/clips/unattributed", headers=eo))
        assert {c["id"] for c in queue["items"]} == {tagged.id, anonymous.id}
        assert queue["next_before"] is None  # the whole queue on one page
        assert http.get("/api/v1/clips/unattributed", headers=f.as_("pc_smith")).status_code == 403

        # An evidence officer attributes the anonymous clip, with a reason.
        path = f"/api/v1/clips/{anonymous.id}/attribution"
        assert http.post(path, headers=eo, json={"officer_id": "PC1234"}).status_code == 422
        unknown = http.post(path, headers=eo, json={"officer_id": "PC0000", "reason": "x"})
        assert unknown.status_code == 422 and "PC0000" in unknown.json()["detail"]
        assert (
            http.post(
                path, headers=f.as_("pc_smith"), json={"officer_id": "PC1234", "reason": "mine"}
            ).status_code
            == 403
        )
        reason = "PC1234's pocketbook: spare camera used on 1 Dec, serial label missing"
        done = _ok(http.post(path, headers=eo, json={"officer_id": "PC1234", "reason": reason}))
        assert done["officer_id"] == "PC1234" and done["reason"] == reason
        assert _ids(f, "pc_smith") == {axon.id, anonymous.id}
        queue = _ok(http.get("/api/v1/clips/unattributed", headers=eo))
        assert {c["id"] for c in queue["items"]} == {tagged.id}
        history = _ok(http.get(path, headers=f.as_("pc_smith")))["items"]
        assert [(h["actor"], h["officer_id"], h["officer_how"], h["reason"]) for h in history] == [
            ("system:worker", None, None, None),
            ("user:eo_brown", "PC1234", "re-attributed by user:eo_brown", reason),
        ]
        attributed = [
            json.loads(e)
            for _, e in ctx.ledger.entries_about(f"clip:{anonymous.id}")
            if json.loads(e)["type"] == "clip.attributed"
        ]
        assert [(e["previous"], e["new"], e["reason"]) for e in attributed] == [
            (
                {"camera_serial": None, "officer_id": None},
                {"camera_serial": None, "officer_id": "PC1234"},
                reason,
            )
        ]
        # pc_jones cannot read the history of a clip that is not theirs.
        assert http.get(path, headers=f.as_("pc_jones")).status_code == 404

        # A byte-identical twin docked under another name is one clip, found by either name.
        twin = tmp_path / "VB400-0042_20261201_101500 (copy).mp4"
        shutil.copyfile(camera_folder.vb400.clip.path, twin)
        again = Dock(http, key).dock(ClipFile.of(twin))
        assert again["state"] == "exists"
        assert _ids(f, "eo_brown", q="(copy)") == {vb400.id}
        assert _ok(http.get(f"/api/v1/clips/{vb400.id}", headers=eo))["names"] == [
            camera_folder.vb400.clip.path.name,
            twin.name,
        ]

    verified = CliRunner().invoke(
        app, ["verify", "ledger", "--db", ctx.db.url, "--key", ctx.ledger.verifier_key]
    )
    assert verified.exit_code == 0, verified.output


def test_without_a_recording_time_the_dock_time_decides(
    ctx: Context, camera_folder: CameraFolder, tmp_path: Path
) -> None:
    """A clip whose camera wrote no time is attributed by who held the camera when docked."""
    from evidence.cameras import service
    from tests.fixtures.ingest import ingest_file

    service.register_camera(ctx, None, VB400_SERIAL)
    service.assign(ctx, None, VB400_SERIAL, officer_id="PC5678", kind="personal")
    # The anonymous clip's bytes under a VB400 file name: no creation_time in it.
    named = tmp_path / f"{VB400_SERIAL}_20261202_080000.mp4"
    shutil.copyfile(camera_folder.anonymous.clip.path, named)
    clip_id = ingest_file(ctx, ClipFile.of(named))
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
    assert clip.recorded_at is None
    assert clip.officer_id == "PC5678"
    assert clip.officer_how.endswith("; no recording time, dock time used")


def test_the_register_outranks_the_sidecar_and_the_sidecar_is_the_fallback(
    ctx: Context, clip_with_sidecar: ClipFile, camera_folder: CameraFolder
) -> None:
    from evidence.cameras import service
    from tests.fixtures.ingest import ingest_file

    side = clip_with_sidecar.sidecar
    clip_id = ingest_file(ctx, clip_with_sidecar, metadata=side)
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
    assert (clip.camera_how, clip.officer_id, clip.officer_how) == ("sidecar", "PC1234", "sidecar")
    # Its camera (registered by that dock) is then issued to PC5678 for that night.
    service.assign(
        ctx,
        None,
        side["camera_serial"],
        officer_id="PC5678",
        kind="pool",
        starts_at=clip.recorded_at.replace(hour=18),
        ends_at=clip.recorded_at.replace(hour=23),
    )
    other = ingest_file(
        ctx, camera_folder.axon.clip, metadata={**side, "recorded_at": "2024-07-03T22:00:00Z"}
    )
    with ctx.db.session() as s:
        clip = s.get(Clip, other)
    assert clip.officer_id == "PC5678" and clip.officer_how.startswith("camera register: pool")


def test_the_declared_source_is_bounded_text_with_known_keys_only() -> None:
    assert check_source({"path": "DCIM/\x00100BWC12/a.mp4", "volume_label": "BWC-7788"}) == {
        "path": "DCIM/\ufffd100BWC12/a.mp4",
        "volume_label": "BWC-7788",
    }
    assert check_source({"path": None}) is None
    with pytest.raises(InvalidInput, match="unknown keys"):
        check_source({"path": "a", "owner": "me"})
    with pytest.raises(InvalidInput, match="at most 64"):
        check_source({"volume_label": "x" * 65})
    with pytest.raises(InvalidInput, match="at most 1024"):
        check_source({"path": ["not", "text"]})


def _dock_with_source(ctx: Context, clip: ClipFile, source: dict[str, str]) -> Clip:
    device = create_device(ctx, None, f"dock-{new_id()[:8]}").device
    declared = declare_upload(
        ctx, device, sha256=clip.sha256, size=clip.size, filename=clip.path.name, source=source
    )
    put_as_joined(ctx, declared.upload_id, clip.path)
    complete_upload(ctx, device, declared.upload_id)
    assert process_upload(ctx, declared.upload_id) == "stored"
    with ctx.db.session() as s:
        return s.scalars(select(Clip).where(Clip.sha256 == clip.sha256)).one()


def test_the_volume_label_and_a_registered_volume_uuid_name_the_camera(
    ctx: Context, camera_folder: CameraFolder, tmp_path: Path
) -> None:
    from evidence.cameras import service

    anonymous = camera_folder.anonymous.clip
    labelled = _dock_with_source(
        ctx, anonymous, {"path": "MISC/clip0001.mp4", "volume_label": "BWC-7788"}
    )
    assert (labelled.camera_serial, labelled.camera_how) == ("BWC-7788", "volume label BWC-7788")
    entry = json.loads(ctx.ledger.entries_about(f"upload:{_upload_of(ctx, labelled)}")[0][1])
    assert entry["source"] == {"path": "MISC/clip0001.mp4", "volume_label": "BWC-7788"}
    # A UUID names a camera only when the register holds one under it.
    unknown = _dock_with_source(
        ctx, distinct_copy(anonymous, tmp_path, "u1"), {"volume_uuid": "9C3E-0B71"}
    )
    assert unknown.camera_serial is None
    service.register_camera(ctx, None, "4F2A-11C9")
    service.assign(
        ctx,
        None,
        "4F2A-11C9",
        officer_id="PC1234",
        kind="personal",
        starts_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    known = _dock_with_source(
        ctx, distinct_copy(anonymous, tmp_path, "u2"), {"volume_uuid": "4f2a-11c9"}
    )
    assert (known.camera_serial, known.camera_how) == ("4F2A-11C9", "volume UUID 4F2A-11C9")
    assert known.officer_id == "PC1234" and known.officer_how.endswith("dock time used")


def _upload_of(ctx: Context, clip: Clip) -> str:
    with ctx.db.session() as s:
        return s.scalars(select(Upload.id).where(Upload.clip_id == clip.id)).one()
