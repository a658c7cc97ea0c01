"""evidence.media on real encodes: facts, bad inputs, proxies, thumbnails, recipes, kills."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from evidence.errors import EvidenceError, MediaError
from evidence.media import derivatives
from evidence.media import probe as probing
from evidence.media.derivatives import (
    THUMBNAIL_WIDTH,
    Recipe,
    make_proxy,
    make_thumbnail,
    proxy_plan,
    transcode_proxy,
)
from evidence.media.probe import (
    MediaFacts,
    _rate_from_decimal,
    parse_datetime,
    parse_iso6709,
    probe,
)
from evidence.media.runner import ffmpeg_binary, ffmpeg_version, ffprobe_binary, sha256_file
from tests.fixtures.media import (
    DURATION_S,
    MOV_LOCATION,
    SIDECAR,
    SMALL_DURATION_S,
    TAGGED_CREATION_TIME,
    Clip,
    encoders,
    lavfi_inputs,
)
from tests.fixtures.services import missing

REPO = Path(__file__).resolve().parents[1]


def one_frame_ms(rate: str) -> int:
    num, den = (int(x) for x in rate.split("/"))
    return -(-1000 * den // num)  # ceil


def assert_no_floats(value: Any) -> None:
    assert not isinstance(value, float), value
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            assert_no_floats(item)
    elif isinstance(value, list):
        for item in value:
            assert_no_floats(item)


def top_level_boxes(path: Path) -> list[str]:
    """MP4 box types in file order, reading only the box headers."""
    kinds = []
    with open(path, "rb") as f:
        size_total = path.stat().st_size
        offset = 0
        while offset + 8 <= size_total:
            f.seek(offset)
            header = f.read(16)
            size, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = size_total - offset
            kinds.append(kind)
            offset += size
    return kinds


def first_frame_rgb(
    path: Path, width: int = 6, height: int = 6
) -> list[list[tuple[int, int, int]]]:
    """The first displayed frame, shrunk to a few pixels (ffmpeg applies the display matrix)."""
    raw = subprocess.run(
        [ffmpeg_binary(), "-v", "error", "-i", str(path), "-frames:v", "1",
         "-vf", f"format=rgb24,scale={width}:{height}:flags=area",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    pixels = [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]
    return [pixels[r * width : (r + 1) * width] for r in range(height)]  # type: ignore[misc]


def is_red(p: tuple[int, int, int]) -> bool:
    return p[0] > 150 and p[1] < 100 and p[2] < 100


def is_cyan(p: tuple[int, int, int]) -> bool:
    return p[0] < 100 and p[1] > 150 and p[2] > 150


def partials(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.partial"))


# --- binaries ----------------------------------------------------------------------------


def test_ffmpeg_and_ffprobe_found_and_versioned() -> None:
    assert Path(ffmpeg_binary()).is_file()
    assert ffprobe_binary() is not None, "Debian's ffmpeg package ships ffprobe"
    version = ffmpeg_version()
    assert version and " " not in version
    assert version == ffmpeg_version()  # cached, same answer


def test_env_overrides_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    bundled = imageio_ffmpeg.get_ffmpeg_exe()
    monkeypatch.setenv("EVIDENCE_FFMPEG", bundled)
    monkeypatch.setenv("EVIDENCE_FFPROBE", "")
    assert ffmpeg_binary() == bundled
    assert ffprobe_binary() is None  # "" forces the `ffmpeg -i` fallback
    assert ffmpeg_version()  # the bundled build's own version
    monkeypatch.setenv("EVIDENCE_FFPROBE", "/usr/bin/ffprobe")
    assert ffprobe_binary() == "/usr/bin/ffprobe"


def test_required_encoders_exist() -> None:
    found = encoders()
    assert {"libx264", "aac", "mjpeg"} <= found, "the proxy and thumbnail need these"


# --- probe: good clips -------------------------------------------------------------------


def test_probe_1080p(clip_1080p: Clip) -> None:
    facts = probe(clip_1080p.path)
    assert facts.playable and facts.error is None
    assert "mp4" in (facts.container or "")
    assert facts.video_codec == "h264" and facts.audio_codec == "aac"
    assert (facts.width, facts.height) == (1920, 1080)
    assert facts.frame_rate == "30/1"
    assert abs(facts.duration_ms - DURATION_S * 1000) <= one_frame_ms("30/1")  # type: ignore[operator]
    assert facts.rotation == 0
    assert facts.creation_time is None and facts.gps is None
    assert facts.tags["major_brand"] == "isom"


def test_probe_rotated_reports_display_matrix(clip_rotated: Clip) -> None:
    facts = probe(clip_rotated.path)
    assert facts.playable
    assert facts.rotation == 90
    assert (facts.width, facts.height) == (1920, 1080)  # as stored; rotation says how to show


def test_probe_hevc(clip_hevc: Clip | None) -> None:
    if clip_hevc is None:
        missing(f"this ffmpeg ({ffmpeg_version()}) lists no libx265 encoder (Debian's has one)")
    facts = probe(clip_hevc.path)
    assert facts.playable, facts.error
    assert facts.video_codec == "hevc" and facts.audio_codec == "aac"
    assert (facts.width, facts.height) == (640, 360)
    assert facts.frame_rate == "30/1"
    assert abs(facts.duration_ms - SMALL_DURATION_S * 1000) <= one_frame_ms("30/1")  # type: ignore[operator]


def test_probe_mov_with_apple_keys(clip_mov: Clip) -> None:
    facts = probe(clip_mov.path)
    assert facts.playable, facts.error
    assert facts.tags["major_brand"] == "qt  "
    assert facts.video_codec == "h264" and facts.audio_codec == "pcm_s16le"
    assert (facts.width, facts.height) == (1280, 720)
    assert facts.frame_rate == "30000/1001"
    assert abs(facts.duration_ms - SMALL_DURATION_S * 1000) <= one_frame_ms("30000/1001")  # type: ignore[operator]
    # 09:15:30 at +01:00 is 08:15:30 UTC; the offset is kept in the datetime.
    assert facts.creation_time == dt.datetime(2024, 6, 2, 8, 15, 30, tzinfo=dt.UTC)
    assert facts.creation_time.utcoffset() == dt.timedelta(hours=1)  # type: ignore[union-attr]
    assert facts.gps == {"lat": "53.4808", "lon": "-2.2426", "alt": "38.000"}
    assert facts.tags["com.apple.quicktime.location.ISO6709"] == MOV_LOCATION


def test_probe_creation_time_and_gps(clip_tagged: Clip) -> None:
    facts = probe(clip_tagged.path)
    assert facts.playable
    assert facts.creation_time == dt.datetime.fromisoformat(TAGGED_CREATION_TIME)
    assert facts.creation_time.tzinfo is not None  # type: ignore[union-attr]
    assert facts.gps is not None
    assert facts.gps["lat"] == "51.5007" and facts.gps["lon"] == "-0.1246"
    assert float(facts.gps["alt"]) == 11.0  # ffmpeg rewrites the altitude's digits
    assert facts.as_dict()["creation_time"] == TAGGED_CREATION_TIME


def test_sidecar_clip_is_distinct_and_has_sidecar(
    clip_with_sidecar: Clip, clip_1080p: Clip
) -> None:
    assert clip_with_sidecar.sha256 != clip_1080p.sha256
    assert clip_with_sidecar.sidecar == SIDECAR
    assert json.loads(json.dumps(clip_with_sidecar.sidecar)) == SIDECAR
    facts = probe(clip_with_sidecar.path)
    assert facts.playable and facts.creation_time is None and facts.gps is None


def test_as_dict_is_canonical_json_without_floats(good_clips: dict[str, Clip]) -> None:
    for name, clip in good_clips.items():
        as_dict = probe(clip.path, decode=False).as_dict()
        assert_no_floats(as_dict)
        assert json.loads(rfc8785.dumps(as_dict)) == as_dict, name


def test_clip_fixture_hashes_are_right(
    good_clips: dict[str, Clip], bad_clips: dict[str, Clip]
) -> None:
    for clip in [*good_clips.values(), *bad_clips.values()]:
        assert sha256_file(clip.path) == clip.sha256
        assert clip.path.stat().st_size == clip.size


# --- probe: bad clips --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["truncated", "truncated-faststart", "corrupt", "empty", "text"])
def test_bad_input_is_unplayable_with_ffmpegs_error(name: str, bad_clips: dict[str, Clip]) -> None:
    clip = bad_clips[name]
    facts = probe(clip.path)  # must not raise
    assert facts.playable is False
    assert facts.error and facts.error.strip()
    assert str(clip.path.parent) not in facts.error  # no machine paths in the ledger
    assert " @ 0x" not in facts.error  # nor pointer addresses
    assert_no_floats(facts.as_dict())


def test_truncated_with_moov_at_end_fails_to_open(clip_truncated: Clip) -> None:
    facts = probe(clip_truncated.path)
    assert "moov atom not found" in (facts.error or "")
    assert facts.video_codec is None


def test_truncated_faststart_probes_but_decode_catches_it(clip_truncated_faststart: Clip) -> None:
    metadata_only = probe(clip_truncated_faststart.path, decode=False)
    assert metadata_only.playable and metadata_only.video_codec == "h264"  # it looks fine...
    facts = probe(clip_truncated_faststart.path)
    assert not facts.playable  # ...until it is decoded
    assert "partial file" in (facts.error or "") or "truncated" in (facts.error or "")


def test_corrupt_probes_but_decode_catches_it(clip_corrupt: Clip) -> None:
    assert probe(clip_corrupt.path, decode=False).playable
    facts = probe(clip_corrupt.path)
    assert not facts.playable
    assert facts.video_codec == "h264" and facts.width == 1920  # what could be read is kept


def test_missing_file_is_a_caller_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.mp4")


def test_decode_timeout_is_reported_not_raised(
    clip_1080p: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probing, "DECODE_LIMIT", (0.05, 0.0, 0.0))
    facts = probe(clip_1080p.path)
    assert not facts.playable and "timed out" in (facts.error or "")


# --- probe without ffprobe (imageio-ffmpeg's binary has none) ---------------------------


@pytest.fixture(params=["system-ffmpeg", "imageio-ffmpeg"])
def no_ffprobe(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "imageio-ffmpeg":
        imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
        monkeypatch.setenv("EVIDENCE_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("EVIDENCE_FFPROBE", "")
    return str(request.param)


@pytest.fixture(scope="module")
def ffprobe_facts(good_clips: dict[str, Clip]) -> dict[str, MediaFacts]:
    return {name: probe(clip.path, decode=False) for name, clip in good_clips.items()}


def test_fallback_probe_matches_ffprobe(
    no_ffprobe: str, good_clips: dict[str, Clip], ffprobe_facts: dict[str, MediaFacts]
) -> None:
    for name, clip in good_clips.items():
        fallback, reference = probe(clip.path, decode=False), ffprobe_facts[name]
        assert fallback.playable, (name, fallback.error)
        for key in ("container", "video_codec", "audio_codec", "width", "height", "frame_rate",
                    "rotation", "creation_time", "gps", "video_profile", "pixel_format",
                    "field_order", "audio_profile"):  # fmt: skip
            assert getattr(fallback, key) == getattr(reference, key), (name, key)
        # `ffmpeg -i` prints the duration to 10 ms.
        assert abs(fallback.duration_ms - reference.duration_ms) <= 10, name  # type: ignore[operator]


def test_fallback_probe_decode_check(
    no_ffprobe: str, clip_rotated: Clip, bad_clips: dict[str, Clip]
) -> None:
    assert probe(clip_rotated.path).playable
    for name, clip in bad_clips.items():
        facts = probe(clip.path)
        assert not facts.playable and facts.error, name
        assert str(clip.path.parent) not in facts.error, name


# --- parsers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+51.5007-000.1246/", {"lat": "51.5007", "lon": "-0.1246"}),
        ("+51.5007-000.1246+011.000/", {"lat": "51.5007", "lon": "-0.1246", "alt": "11.000"}),
        ("-33.8688+151.2093-005.5/", {"lat": "-33.8688", "lon": "151.2093", "alt": "-5.5"}),
        ("+5130.042-00007.476/", {"lat": "51.5007000", "lon": "-0.1246000"}),  # DDMM.MMM
        ("+513002.52-0000728.56/", {"lat": "51.5007000", "lon": "-0.1246000"}),  # DDMMSS.SS
        (
            "+51.5007-000.1246+011.000CRSWGS_84/",
            {"lat": "51.5007", "lon": "-0.1246", "alt": "11.000"},
        ),
        ("+91.0000+000.0000/", None),
        ("not a place", None),
        ("", None),
    ],
)
def test_parse_iso6709(text: str, expected: dict[str, str] | None) -> None:
    assert parse_iso6709(text) == expected


@given(
    lat=st.decimals(min_value=-90, max_value=90, places=4),
    lon=st.decimals(min_value=-180, max_value=180, places=4),
)
def test_parse_iso6709_round_trips_decimal_degrees(lat: Decimal, lon: Decimal) -> None:
    text = f"{'+' if lat >= 0 else '-'}{abs(lat):07.4f}{'+' if lon >= 0 else '-'}{abs(lon):08.4f}/"
    point = parse_iso6709(text)
    assert point is not None
    assert Decimal(point["lat"]) == lat and Decimal(point["lon"]) == lon


@pytest.mark.parametrize(
    ("printed", "rational"),
    [
        ("30", "30/1"),
        ("29.97", "30000/1001"),
        ("23.98", "24000/1001"),
        ("59.94", "60000/1001"),
        ("25", "25/1"),
        ("12.50", "25/2"),
        ("1k", "1000/1"),
    ],
)
def test_rate_from_ffmpeg_print(printed: str, rational: str) -> None:
    assert _rate_from_decimal(printed) == rational


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:34:56.000000Z", dt.datetime(2024, 5, 1, 12, 34, 56, tzinfo=dt.UTC)),
        ("2024-05-01T13:34:56+0100", dt.datetime(2024, 5, 1, 12, 34, 56, tzinfo=dt.UTC)),
        ("2024:05:01 12:34:56", dt.datetime(2024, 5, 1, 12, 34, 56, tzinfo=dt.UTC)),
        ("yesterday", None),
    ],
)
def test_parse_datetime(text: str, expected: dt.datetime | None) -> None:
    assert parse_datetime(text) == expected


def test_media_error_is_an_evidence_error() -> None:
    err = MediaError("it broke", stderr="moov atom not found", hint="keep the original")
    assert isinstance(err, EvidenceError)
    assert "moov atom not found" in str(err) and "keep the original" in str(err)


def test_probe_names_what_decides_remux_or_transcode(
    clip_1080p: Clip, clip_mov: Clip, unremuxable_clips: dict[str, Clip]
) -> None:
    facts = probe(clip_1080p.path, decode=False)
    assert (facts.video_profile, facts.pixel_format, facts.field_order) == (
        "High",
        "yuv420p",
        "progressive",
    )
    assert facts.audio_profile == "LC"
    assert probe(clip_mov.path, decode=False).audio_profile is None  # PCM has no profile
    c422 = probe(unremuxable_clips["422"].path, decode=False)
    assert (c422.video_profile, c422.pixel_format) == ("High 4:2:2", "yuv422p")
    assert probe(unremuxable_clips["interlaced"].path, decode=False).field_order == "tt"


# --- proxy: remux or transcode -------------------------------------------------------------


def packet_hashes(path: Path) -> list[str]:
    """SHA-256 of each stream's packets as stored: equal for a stream copied unchanged."""
    out = subprocess.run(
        [ffmpeg_binary(), "-v", "error", "-i", str(path), "-map", "0", "-c", "copy",
         "-f", "streamhash", "-hash", "sha256", "-"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return out.split()


@pytest.fixture(scope="module")
def remuxed(clip_tagged: Clip, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recipe]:
    """The proxy of a 1080p H.264 High/AAC-LC clip with a creation time and a location."""
    dst = tmp_path_factory.mktemp("remux") / "proxy.mp4"
    return dst, make_proxy(clip_tagged.path, dst, input_sha256=clip_tagged.sha256)


def test_a_clip_browsers_play_is_remuxed_with_the_same_streams_moov_first(
    remuxed: tuple[Path, Recipe], clip_tagged: Clip
) -> None:
    dst, recipe = remuxed
    assert recipe.method == "remux" and recipe.as_dict()["method"] == "remux"
    assert recipe.reason and "H.264 High yuv420p progressive 1920x1080" in recipe.reason
    assert "copy" in recipe.args and "libx264" not in recipe.args and "+faststart" in recipe.args
    facts, source = probe(dst), probe(clip_tagged.path)
    assert facts.playable, facts.error
    for key in ("video_codec", "audio_codec", "width", "height", "frame_rate", "video_profile",
                "pixel_format", "field_order", "audio_profile"):  # fmt: skip
        assert getattr(facts, key) == getattr(source, key), key
    assert abs(facts.duration_ms - source.duration_ms) <= one_frame_ms("30/1")  # type: ignore[operator]
    assert packet_hashes(dst) == packet_hashes(clip_tagged.path), "the streams, unchanged"
    boxes = top_level_boxes(dst)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # +faststart
    original = top_level_boxes(clip_tagged.path)
    assert original.index("moov") > original.index("mdat"), "moved to the front, as it had to be"
    # The viewing copy drops the original's tags: no creation time, no location.
    assert facts.gps is None and facts.creation_time is None and source.gps is not None
    assert recipe.output_sha256 == sha256_file(dst) and not partials(dst.parent)


def test_the_remux_recipe_reproduces_the_proxy(
    remuxed: tuple[Path, Recipe], clip_tagged: Clip, tmp_path: Path
) -> None:
    _, recipe = remuxed
    again = tmp_path / "again.mp4"
    subprocess.run(recipe.argv(clip_tagged.path, again), check=True, capture_output=True)
    assert sha256_file(again) == recipe.output_sha256


@pytest.mark.parametrize(
    ("name", "method", "reason"),
    [
        ("1080p", "remux", "H.264 High yuv420p progressive 1920x1080 with AAC LC"),
        ("sidecar", "remux", "with AAC LC"),
        ("silent", "remux", "with no audio"),
        ("rotated", "transcode", "rotation 90"),
        ("mov", "transcode", "audio codec pcm_s16le"),
        ("hevc", "transcode", "video codec hevc"),
        ("422", "transcode", "H.264 profile High 4:2:2"),
        ("interlaced", "transcode", "field order tt"),
        ("1440p", "transcode", "picture 2560x1440"),
    ],
)
def test_the_proxy_is_a_remux_only_where_browsers_play_the_original(
    name: str,
    method: str,
    reason: str,
    good_clips: dict[str, Clip],
    unremuxable_clips: dict[str, Clip],
    clip_silent: Clip,
    tmp_path: Path,
) -> None:
    clips = {**good_clips, **unremuxable_clips, "silent": clip_silent}
    if name not in clips:
        missing("no libx265 encoder on this machine (see test_probe_hevc)")
    clip = clips[name]
    dst = tmp_path / "proxy.mp4"
    recipe = make_proxy(clip.path, dst, input_sha256=clip.sha256)
    assert (recipe.method, reason in (recipe.reason or "")) == (method, True), recipe.reason
    facts, source = probe(dst), probe(clip.path, decode=False)
    assert facts.playable and facts.video_codec == "h264", facts.error
    assert facts.pixel_format == "yuv420p" and facts.field_order == "progressive"
    assert facts.audio_codec == ("aac" if source.audio_codec else None)
    if method == "remux":
        assert (facts.width, facts.height) == (source.width, source.height)
    else:
        assert max(facts.width, facts.height) <= 1280 and facts.rotation == 0  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"container": "matroska,webm"}, "container matroska,webm"),
        ({"video_profile": "High 10", "pixel_format": "yuv420p10le"}, "profile High 10"),
        ({"pixel_format": "yuv444p"}, "pixel format yuv444p"),
        ({"field_order": None}, "field order None"),
        ({"width": 1080, "height": 1920}, None),  # portrait 1080p is still 1080p
        ({"width": 3840, "height": 2160}, "picture 3840x2160"),
        ({"audio_codec": "mp3", "audio_profile": None}, "audio codec mp3"),
        ({"audio_profile": "Main"}, "AAC profile Main"),
        ({"audio_profile": "HE-AAC"}, None),
        ({"pixel_format": "yuvj420p"}, None),  # full-range 4:2:0, as many cameras write
    ],
)
def test_proxy_plan_reads_the_probe(
    clip_1080p: Clip, change: dict[str, Any], reason: str | None
) -> None:
    from dataclasses import replace

    plan = proxy_plan(replace(probe(clip_1080p.path, decode=False), **change))
    if reason is None:
        assert plan.method == "remux", plan
    else:
        assert plan.method == "transcode" and reason in plan.reason, plan


@pytest.fixture(scope="module")
def proxy_1080p(
    clip_1080p: Clip, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Recipe, list[float], float]:
    """The transcoded proxy of the 1080p clip (asked for: make_proxy would remux it)."""
    dst = tmp_path_factory.mktemp("proxy") / "proxy.mp4"
    fractions: list[float] = []
    started = time.monotonic()
    recipe = transcode_proxy(
        clip_1080p.path, dst, input_sha256=clip_1080p.sha256, progress=fractions.append
    )
    return dst, recipe, fractions, time.monotonic() - started


def test_proxy_is_h264_aac_720p_faststart(
    proxy_1080p: tuple[Path, Recipe, list[float], float],
) -> None:
    dst, recipe, _, seconds = proxy_1080p
    assert recipe.method == "transcode" and recipe.reason
    facts = probe(dst)
    assert facts.playable, facts.error
    assert facts.video_codec == "h264" and facts.audio_codec == "aac"
    assert (facts.width, facts.height) == (1280, 720)
    assert facts.rotation == 0
    assert abs(facts.duration_ms - DURATION_S * 1000) <= 2 * one_frame_ms("30/1")  # type: ignore[operator]
    boxes = top_level_boxes(dst)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # +faststart
    assert recipe.output_sha256 == sha256_file(dst)
    assert not partials(dst.parent)
    print(f"proxy of the 1080p clip: {seconds:.2f} s")


def test_proxy_recipe_is_machine_independent(
    proxy_1080p: tuple[Path, Recipe, list[float], float], clip_1080p: Clip
) -> None:
    dst, recipe, _, _ = proxy_1080p
    as_dict = recipe.as_dict()
    assert_no_floats(as_dict)
    assert json.loads(rfc8785.dumps(as_dict)) == as_dict
    assert as_dict["ffmpeg_version"] == ffmpeg_version()
    assert as_dict["input_sha256"] == clip_1080p.sha256
    args = as_dict["args"]
    assert args[0] == "ffmpeg"
    assert "{input}" in args and "{output}" in args
    machine_paths = [
        str(clip_1080p.path.parent),
        str(dst.parent),
        ffmpeg_binary(),
        "/tmp",
        "/usr",
    ]
    assert not [a for a in args if any(p in a for p in machine_paths)], args
    assert "libx264" in args and "+faststart" in args and "veryfast" in args


def test_proxy_recipe_reproduces_the_proxy(
    proxy_1080p: tuple[Path, Recipe, list[float], float], clip_1080p: Clip, tmp_path: Path
) -> None:
    _, recipe, _, _ = proxy_1080p
    again = tmp_path / "again.mp4"
    argv = [
        a.replace("{input}", str(clip_1080p.path)).replace("{output}", str(again))
        for a in recipe.args
    ]
    argv[0] = ffmpeg_binary()
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    assert probe(again).playable
    # Same ffmpeg, same args, same bytes: libx264 is deterministic and no tags are written.
    assert sha256_file(again) == recipe.output_sha256


def test_progress_grows_and_ends_at_one(
    proxy_1080p: tuple[Path, Recipe, list[float], float],
) -> None:
    _, _, fractions, _ = proxy_1080p
    assert len(fractions) >= 2, fractions
    assert all(a < b for a, b in itertools.pairwise(fractions)), fractions
    assert all(0 < f <= 1 for f in fractions)
    assert fractions[-1] == 1.0 and fractions.count(1.0) == 1


def test_proxy_of_rotated_clip_is_upright(
    clip_rotated: Clip, clip_1080p: Clip, tmp_path: Path
) -> None:
    dst = tmp_path / "proxy.mp4"
    transcode_proxy(clip_rotated.path, dst, input_sha256=clip_rotated.sha256)
    facts = probe(dst)
    assert facts.playable
    assert (facts.width, facts.height) == (720, 1280)  # portrait, pixels turned
    assert facts.rotation == 0  # nothing left for a player to turn
    # testsrc2's bars run red (left) to cyan (right); turned clockwise, red is on top.
    rows = first_frame_rgb(dst)
    assert is_red(rows[0][3]) and is_cyan(rows[-1][3]), rows
    landscape = first_frame_rgb(clip_1080p.path)
    assert is_red(landscape[3][0]) and is_cyan(landscape[3][-1]), landscape


@pytest.mark.parametrize("name", ["hevc", "mov"])
def test_proxy_of_other_codecs(name: str, good_clips: dict[str, Clip], tmp_path: Path) -> None:
    if name not in good_clips:
        missing("no libx265 encoder on this machine (see test_probe_hevc)")
    clip = good_clips[name]
    dst = tmp_path / "proxy.mp4"
    transcode_proxy(clip.path, dst, input_sha256=clip.sha256)
    facts = probe(dst)
    source = probe(clip.path, decode=False)
    assert facts.playable and facts.video_codec == "h264" and facts.audio_codec == "aac"
    assert facts.frame_rate == source.frame_rate
    assert facts.height <= 720 and facts.width <= source.width  # type: ignore[operator]
    assert facts.gps is None and facts.creation_time is None  # tags stay with the original


def test_proxy_without_audio(tmp_path: Path) -> None:
    src = tmp_path / "silent.mp4"
    subprocess.run(
        [ffmpeg_binary(), "-v", "error", *lavfi_inputs("321x241", "25", 1, audio=False),
         "-c:v", "libx264", "-preset", "ultrafast", str(src)],
        check=True, timeout=60,
    )  # fmt: skip
    dst = tmp_path / "proxy.mp4"
    recipe = transcode_proxy(src, dst, input_sha256="0" * 64)
    facts = probe(dst)
    assert facts.playable and facts.audio_codec is None
    assert (facts.width, facts.height) == (320, 240)  # odd sizes made even, never upscaled
    assert "aac" not in recipe.args


@pytest.mark.parametrize("name", ["truncated", "empty", "text"])
def test_proxy_of_bad_input_raises_and_writes_nothing(
    name: str, bad_clips: dict[str, Clip], tmp_path: Path
) -> None:
    dst = tmp_path / "proxy.mp4"
    with pytest.raises(MediaError) as caught:
        transcode_proxy(bad_clips[name].path, dst, input_sha256=bad_clips[name].sha256)
    assert "What to do" in str(caught.value)
    assert not dst.exists() and not partials(tmp_path)


def test_proxy_failure_keeps_ffmpegs_stderr(
    clip_1080p: Clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(derivatives, "PROXY_PRESET", "no-such-preset")
    dst = tmp_path / "proxy.mp4"
    with pytest.raises(MediaError) as caught:
        transcode_proxy(clip_1080p.path, dst, input_sha256=clip_1080p.sha256)
    assert "no-such-preset" in caught.value.stderr
    assert str(tmp_path) not in str(caught.value)
    assert not dst.exists() and not partials(tmp_path)


def test_transcode_timeout_raises_and_leaves_nothing(
    clip_1080p: Clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(derivatives, "TRANSCODE_LIMIT", (0.3, 0.0, 0.0))
    dst = tmp_path / "proxy.mp4"
    with pytest.raises(MediaError, match="timed out"):
        transcode_proxy(clip_1080p.path, dst, input_sha256=clip_1080p.sha256)
    assert not dst.exists() and not partials(tmp_path)


def test_rerun_replaces_dst_with_the_same_bytes(tmp_path: Path) -> None:
    src = tmp_path / "small.mp4"
    subprocess.run(
        [ffmpeg_binary(), "-v", "error", *lavfi_inputs("426x240", "30", 1),
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(src)],
        check=True, timeout=60,
    )  # fmt: skip
    dst = tmp_path / "proxy.mp4"
    first = transcode_proxy(src, dst, input_sha256="1" * 64)
    second = transcode_proxy(src, dst, input_sha256="1" * 64)
    assert first == second and sha256_file(dst) == first.output_sha256
    assert (probe(dst).width, probe(dst).height) == (426, 240)


KILL_SCRIPT = """
import sys
from pathlib import Path
from evidence.media.derivatives import transcode_proxy

def progress(fraction):
    print(fraction, flush=True)

transcode_proxy(
    Path(sys.argv[1]), Path(sys.argv[2]), input_sha256="0" * 64, progress=progress
)
print("done", flush=True)
"""


def ffmpeg_processes_writing(directory: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        if str(directory) in cmdline and ".partial" in cmdline:
            pids.append(int(proc.name))
    return pids


def test_killed_transcode_leaves_no_dst(clip_1080p: Clip, tmp_path: Path) -> None:
    dst = tmp_path / "out" / "proxy.mp4"
    worker = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(clip_1080p.path), str(dst)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert worker.stdout is not None
    first = worker.stdout.readline()  # ffmpeg is now mid-way
    assert first and first.strip() != "done", first
    assert ffmpeg_processes_writing(dst.parent), "ffmpeg should be running"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    # ffmpeg dies with its parent (PR_SET_PDEATHSIG) instead of finishing an orphaned proxy.
    deadline = time.monotonic() + 10
    while ffmpeg_processes_writing(dst.parent) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ffmpeg_processes_writing(dst.parent)
    assert not dst.exists()
    assert partials(dst.parent)  # the dead worker's temporary file, never renamed
    # The redelivered task sweeps it away and completes.
    recipe = transcode_proxy(clip_1080p.path, dst, input_sha256=clip_1080p.sha256)
    assert dst.exists() and sha256_file(dst) == recipe.output_sha256
    assert not partials(dst.parent)


# --- thumbnail ---------------------------------------------------------------------------


def test_thumbnail_is_a_jpeg_of_the_right_width(clip_1080p: Clip, tmp_path: Path) -> None:
    dst = tmp_path / "thumb.jpg"
    recipe = make_thumbnail(clip_1080p.path, dst, input_sha256=clip_1080p.sha256)
    assert dst.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG SOI + marker
    facts = probe(dst, decode=False)
    assert facts.video_codec == "mjpeg"
    assert (facts.width, facts.height) == (THUMBNAIL_WIDTH, 180)
    assert recipe.output_sha256 == sha256_file(dst)
    assert recipe.args[0] == "ffmpeg" and "{input}" in recipe.args and "{output}" in recipe.args
    assert "0.300" in recipe.args  # 10% into a 3 s clip
    assert not partials(tmp_path)


def test_thumbnail_of_rotated_clip_is_upright(clip_rotated: Clip, tmp_path: Path) -> None:
    dst = tmp_path / "thumb.jpg"
    make_thumbnail(clip_rotated.path, dst, input_sha256=clip_rotated.sha256, at_ms=1000)
    facts = probe(dst, decode=False)
    assert facts.width == THUMBNAIL_WIDTH and facts.height > facts.width  # type: ignore[operator]


def test_thumbnail_of_bad_input_raises(clip_text: Clip, tmp_path: Path) -> None:
    dst = tmp_path / "thumb.jpg"
    with pytest.raises(MediaError):
        make_thumbnail(clip_text.path, dst, input_sha256=clip_text.sha256)
    assert not dst.exists() and not partials(tmp_path)


def test_thumbnail_past_the_end_raises(clip_1080p: Clip, tmp_path: Path) -> None:
    dst = tmp_path / "thumb.jpg"
    with pytest.raises(MediaError):
        make_thumbnail(clip_1080p.path, dst, input_sha256=clip_1080p.sha256, at_ms=60_000)
    assert not dst.exists() and not partials(tmp_path)


def test_facts_dataclass_is_frozen() -> None:
    facts = MediaFacts()
    with pytest.raises(AttributeError):
        facts.playable = True  # type: ignore[misc]
