"""Redactions: black boxes and muted ranges over a copy of a clip, made by real ffmpeg from the
original, reproducible byte for byte, recorded in the ledger, refused to anyone but evidence
officers, and carried (and verified) in a court bundle when asked."""

from __future__ import annotations

import array
import hashlib
import json
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app as cli
from evidence.bundles import layout
from evidence.bundles import manifest as mf
from evidence.bundles.service import build_bundle
from evidence.clips.models import Derivative
from evidence.context import Context
from evidence.errors import InvalidInput
from evidence.media.derivatives import Recipe
from evidence.media.probe import probe
from evidence.media.redaction import redact
from evidence.media.runner import ffmpeg_binary, ffmpeg_version, sha256_file
from evidence.migrate import upgrade
from evidence.redactions import make_redaction
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.ingest import ingest_file
from tests.fixtures.people import Force, make_force

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

# clip_mov: 1280x720 at 30000/1001, 2 s, a 440 Hz tone throughout.
BOX = {"x": 101, "y": 81, "w": 301, "h": 201, "start_ms": 500, "end_ms": 1500}
MUTE = {"start_ms": 500, "end_ms": 1200}
REASON = "face of a bystander, not relevant to the charge"


@dataclass
class World:
    ctx: Context
    http: httpx.Client
    force: Force
    clip_id: str
    clip_sha256: str
    kind: str
    work: Path

    def url(self, suffix: str = "") -> str:
        return f"/api/v1/clips/{self.clip_id}{suffix}"

    def entries(self, type_: str) -> list[tuple[int, dict]]:
        return [
            (i, json.loads(e))
            for i, e in self.ctx.ledger.entries_about(f"clip:{self.clip_id}")
            if json.loads(e)["type"] == type_
        ]

    def derivative(self) -> Derivative:
        with self.ctx.db.session() as s:
            return s.query(Derivative).filter_by(clip_id=self.clip_id, kind=self.kind).one()

    def fetch(self, key: str, name: str) -> Path:
        path = self.work / name
        with path.open("wb") as out:
            for chunk in self.ctx.store.open(key):
                out.write(chunk)
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, clip_mov) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """One clip ingested, a redaction requested over HTTP and made by the worker in-process."""
    tmp = tmp_path_factory.mktemp("redactions")
    url = f"sqlite:///{tmp}/evidence.db"
    upgrade(url)
    ctx = Context(make_settings(tmp, url))
    clip_id = ingest_file(ctx, clip_mov, metadata={"officer_id": "PC1234"})
    with running_api(ctx.settings) as base, httpx.Client(base_url=base, timeout=30) as http:
        force = make_force(ctx, http)
        r = http.post(
            f"/api/v1/clips/{clip_id}/redactions",
            headers=force.as_("eo_brown"),
            json={"boxes": [BOX], "mute": [MUTE], "reason": REASON},
        )
        assert r.status_code == 202, r.text
        assert r.json() == {"kind": "redaction-1", "state": "queued"}
        made = make_redaction(ctx, clip_id, "redaction-1")  # the worker's job, in-process
        assert made["state"] == "ready" and made["key"] == f"derived/{clip_id}/redaction-1"
        yield World(ctx, http, force, clip_id, clip_mov.sha256, "redaction-1", tmp)


# -- what ffmpeg made ------------------------------------------------------------------------


def gray_frame(path: Path, at_s: float, width: int, height: int) -> bytes:
    """The frame shown at `at_s`, decoded to 8-bit luma."""
    done = subprocess.run(
        [
            ffmpeg_binary(),
            "-v",
            "error",
            "-ss",
            f"{at_s:.3f}",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert len(done.stdout) == width * height
    return done.stdout


def brightest(frame: bytes, width: int, x: int, y: int, w: int, h: int) -> int:
    return max(max(frame[(y + j) * width + x : (y + j) * width + x + w]) for j in range(h))


def samples(path: Path) -> array.array:
    """The first audio stream as mono 16-bit samples at 48 kHz."""
    done = subprocess.run(
        [
            ffmpeg_binary(),
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            "48000",
            "-f",
            "s16le",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return array.array("h", done.stdout)


def loudest(pcm: array.array, start_s: float, end_s: float) -> int:
    return max(abs(v) for v in pcm[int(start_s * 48000) : int(end_s * 48000)])


def test_the_box_is_black_during_its_range_and_only_there(world: World) -> None:
    path = world.fetch(world.derivative().key, "redaction.mp4")
    facts = probe(path)
    assert facts.playable and (facts.width, facts.height) == (1280, 720), "full size, not a proxy"
    assert (facts.video_codec, facts.audio_codec) == ("h264", "aac")
    box = (BOX["x"], BOX["y"], BOX["w"], BOX["h"])
    inside = gray_frame(path, 1.0, 1280, 720)
    assert brightest(inside, 1280, *box) <= 24, "every pixel of the box is black"
    assert brightest(inside, 1280, 600, 300, 300, 200) > 100, "the rest of the picture is not"
    for outside in (0.2, 1.8):
        assert brightest(gray_frame(path, outside, 1280, 720), 1280, *box) > 100, outside


def test_the_mute_range_is_silent_and_the_rest_is_not(world: World) -> None:
    pcm = samples(world.fetch(world.derivative().key, "redaction.mp4"))
    # AAC smears an edge over a few ms; inside the range, away from its edges, it is silent.
    assert loudest(pcm, 0.52, 1.18) <= 64
    assert loudest(pcm, 0.05, 0.45) > 2000 and loudest(pcm, 1.25, 1.9) > 2000


def test_running_the_recipe_again_gives_the_same_bytes(world: World) -> None:
    d = world.derivative()
    recipe = d.recipe
    assert recipe["input_sha256"] == world.clip_sha256 and recipe["output_sha256"] == d.sha256
    assert recipe["ffmpeg_version"] == ffmpeg_version()
    args = recipe["args"]
    assert args[0] == "ffmpeg" and "{input}" in args and "{output}" in args
    assert not any(str(world.work) in a for a in args), "no machine path in the recipe"
    graph = args[args.index("-filter_complex") + 1]
    assert "drawbox=color=black" in graph and "t=fill" in graph and "aeval=" in graph
    original = world.fetch(f"originals/{world.clip_sha256}", "original.mov")
    again = world.work / "again.mp4"
    argv = Recipe(
        recipe["ffmpeg_version"], tuple(args), recipe["input_sha256"], recipe["output_sha256"]
    ).argv(original, again)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert sha256_file(again) == d.sha256


def test_the_ledger_records_the_request_and_the_derivative(world: World) -> None:
    req_index, req = world.entries("redaction.requested")[0]
    assert req["actor"] == "user:eo_brown" and req["kind"] == world.kind
    assert req["boxes"] == [BOX] and req["mute"] == [MUTE] and req["reason"] == REASON
    assert req["frame"] == {"width": 1280, "height": 720}
    created = [e for _, e in world.entries("derivative.created") if e["kind"] == world.kind]
    assert len(created) == 1
    d = world.derivative()
    assert created[0]["recipe"] == d.recipe and created[0]["sha256"] == d.sha256
    assert created[0]["redaction"] == {
        "request_index": req_index,
        "requested_by": "user:eo_brown",
        "reason": REASON,
        "boxes": [BOX],
        "mute": [MUTE],
    }
    # The clip's detail lists it with the other derivatives.
    detail = world.http.get(world.url(), headers=world.force.as_("eo_brown")).json()
    listed = {x["kind"]: x for x in detail["derivatives"]}
    assert listed[world.kind]["sha256"] == d.sha256 and listed[world.kind]["recipe"] == d.recipe
    # The worker's task again (a redelivery): nothing made or recorded twice.
    size = world.ctx.ledger.size()
    assert make_redaction(world.ctx, world.clip_id, world.kind)["sha256"] == d.sha256
    assert world.ctx.ledger.size() == size


def test_a_redaction_plays_like_the_proxy_and_every_viewing_is_recorded(world: World) -> None:
    eo, d = world.force.as_("eo_brown"), world.derivative()
    why = world.ctx.settings.access_reasons[0]
    r = world.http.get(world.url("/stream"), headers=eo, params={"reason": why, "kind": world.kind})
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", r.text
    assert hashlib.sha256(r.content).hexdigest() == d.sha256
    part = world.http.get(
        world.url("/stream"),
        headers={**eo, "Range": "bytes=0-9"},
        params={"reason": why, "kind": world.kind},
    )
    assert part.status_code == 206 and part.content == r.content[:10]
    assert (
        world.http.get(world.url("/stream"), headers=eo, params={"reason": why}).status_code == 200
    )
    views = [e for _, e in world.entries("clip.viewed") if e["actor"] == "user:eo_brown"]
    assert sorted(e["object"] for e in views) == sorted(
        [d.key, f"derived/{world.clip_id}/proxy.mp4"]
    ), "one entry per viewing (ranges of it are one), the redaction and the proxy apart"
    assert next(e for e in views if e["object"] == d.key)["sha256"] == d.sha256
    for kind, status in (("redaction-9", 404), ("original", 422), ("redaction-0", 422)):
        r = world.http.get(world.url("/stream"), headers=eo, params={"reason": why, "kind": kind})
        assert r.status_code == status, (kind, r.text)
    assert (
        world.http.get(
            world.url("/stream"),
            headers=world.force.as_("adm_black"),
            params={"reason": why, "kind": world.kind},
        ).status_code
        == 403
    )


def test_only_evidence_officers_may_redact(world: World) -> None:
    body = {"boxes": [BOX], "reason": REASON}
    for who in ("pc_smith", "cps_green", "aud_white", "adm_black"):
        r = world.http.post(world.url("/redactions"), headers=world.force.as_(who), json=body)
        assert r.status_code == 403, (who, r.text)
    assert world.http.post(world.url("/redactions"), json=body).status_code == 401
    r = world.http.post(
        "/api/v1/clips/no-such-clip/redactions", headers=world.force.as_("eo_brown"), json=body
    )
    assert r.status_code == 404


def test_bad_requests_are_refused_with_clear_text(world: World) -> None:
    eo = world.force.as_("eo_brown")
    before = len(world.entries("redaction.requested"))
    cases = [
        (
            {"boxes": [{**BOX, "x": 1100, "w": 200}]},
            "x + w = 1300 is beyond the picture's width of 1280",
        ),
        ({"boxes": [{**BOX, "y": 700}]}, "y + h = 901 is beyond the picture's height of 720"),
        (
            {"boxes": [{**BOX, "start_ms": 900, "end_ms": 400}]},
            "boxes[0]: end_ms (400) must be after start_ms (900)",
        ),
        (
            {"boxes": [BOX, {**BOX, "end_ms": 60_000}]},
            "boxes[1]: end_ms (60000) is beyond the end of the clip",
        ),
        (
            {"mute": [{"start_ms": 100, "end_ms": 100}]},
            "mute[0]: end_ms (100) must be after start_ms (100)",
        ),
        ({"boxes": [], "mute": []}, "at least one box"),
        ({"boxes": [BOX], "reason": " ok "}, "needs a reason"),
    ]
    for body, text in cases:
        r = world.http.post(world.url("/redactions"), headers=eo, json={"reason": REASON, **body})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (
            body
        )
        assert text in r.json()["detail"], (text, r.json())
    for body in (
        {"boxes": [BOX]},
        {"boxes": [{**BOX, "x": -1}], "reason": REASON},
        {"boxes": [{"x": 1}], "reason": REASON},
    ):
        r = world.http.post(world.url("/redactions"), headers=eo, json=body)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (
            body
        )
    assert len(world.entries("redaction.requested")) == before, "nothing recorded for a refusal"
    # A good second request is the clip's second redaction.
    r = world.http.post(
        world.url("/redactions"), headers=eo, json={"mute": [MUTE], "reason": REASON}
    )
    assert r.status_code == 202 and r.json()["kind"] == "redaction-2", r.text


def test_boxes_are_in_the_picture_as_shown(clip_rotated, tmp_path: Path) -> None:
    """A portrait clip (stored 1920x1080, shown 1080x1920): a box low in the upright picture,
    where the stored frame has no rows, is accepted and blacked out there."""
    box = {"x": 100, "y": 1500, "w": 400, "h": 300, "start_ms": 0, "end_ms": 3000}
    with pytest.raises(InvalidInput, match="width of 1080 px"):
        redact(
            clip_rotated.path,
            tmp_path / "x.mp4",
            boxes=[{**box, "x": 900}],
            mute=[],
            input_sha256=clip_rotated.sha256,
        )
    out = tmp_path / "upright.mp4"
    recipe = redact(clip_rotated.path, out, boxes=[box], mute=[], input_sha256=clip_rotated.sha256)
    facts = probe(out, decode=False)
    assert (facts.width, facts.height, facts.rotation) == (1080, 1920, 0)
    frame = gray_frame(out, 1.0, 1080, 1920)
    assert brightest(frame, 1080, 100, 1500, 400, 300) <= 24
    assert brightest(frame, 1080, 100, 600, 400, 300) > 100
    assert recipe.output_sha256 == sha256_file(out)


def test_a_bundle_carries_redactions_when_asked_and_verifies(world: World) -> None:
    eo = world.force.as_("eo_brown")
    case = world.http.post(
        "/api/v1/cases", headers=eo, json={"title": "R v Roe", "reference": "URN 7"}
    )
    case_id = case.json()["id"]
    assert (
        world.http.post(
            f"/api/v1/cases/{case_id}/items", headers=eo, json={"clip_ids": [world.clip_id]}
        ).status_code
        == 200
    )
    d = world.derivative()
    for asked in (True, False):
        r = world.http.post(
            f"/api/v1/cases/{case_id}/bundles", headers=eo, json={"include_redactions": asked}
        )
        assert r.status_code == 202, r.text
        bundle_id = r.json()["id"]
        assert build_bundle(world.ctx, bundle_id) == "ready"
        path = world.fetch(f"bundles/{bundle_id}.zip", f"bundle-{asked}.zip")
        with zipfile.ZipFile(path) as zf:
            m = json.loads(zf.read(layout.MANIFEST))
            names = zf.namelist()
            (ex,) = m["exhibits"]
            (red,) = [x for x in ex["derivatives"] if x["kind"] == world.kind]
            assert red["recipe"] == d.recipe and red["redaction"]["reason"] == REASON
            if asked:
                assert red["file"] == f"media/{mf.safe_ref(ex['exhibit_ref'])}/redaction-1.mp4"
                assert hashlib.sha256(zf.read(red["file"])).hexdigest() == d.sha256 == red["sha256"]
                assert f"{d.sha256}  {red['file']}\n" in zf.read(layout.SUMS).decode()
                assert not any(n.endswith("proxy.mp4") for n in names), "proxies were not asked for"
            else:
                assert red["file"] is None and not any("redaction" in n for n in names)
        result = CliRunner().invoke(
            cli,
            [
                "verify",
                "bundle",
                str(path),
                "--key",
                world.ctx.ledger.verifier_key,
                "--bundle-key",
                str(world.ctx.settings.secrets_dir() / "bundle.pub.pem"),
            ],
        )
        assert result.exit_code == 0, result.output
        if asked:
            assert f"PASS  exhibit {ex['exhibit_ref']} derivative {world.kind}" in result.output


def test_the_worker_task_is_registered_under_the_name_the_api_sends(tmp_path: Path) -> None:
    import workers.tasks  # noqa: F401  (registers the tasks, as the worker does at start)
    from evidence import queue
    from evidence.config import Settings
    from workers.app import make_celery

    assert queue.MAKE_REDACTION in make_celery(Settings(data_dir=tmp_path)).tasks
