"""Media facts and browser derivatives, made with ffmpeg.

Commands are built with ffmpeg-python and run here with `subprocess`, so that we control
streaming (progress on stdout, a bounded tail of stderr), time limits and clean-up.

Choices worth knowing (see also docs/media.md):

* Binaries: `EVIDENCE_FFMPEG` / `EVIDENCE_FFPROBE` when set, else `ffmpeg` / `ffprobe` on
  PATH, else the ffmpeg that imageio-ffmpeg ships. That one has no ffprobe, so probing then
  parses the stream dump of `ffmpeg -i` (the same facts, duration to 10 ms). Setting
  `EVIDENCE_FFPROBE=""` forces that fallback, which is how the tests cover it.
* Playable means: the container opens, there is a video stream, and a full decode of the
  first video and audio streams (`-f null`) ends with no error-level message and covers the
  declared duration. A truncated or corrupted clip often probes fine (moov at the start,
  mdat cut or damaged) and only a decode shows it. Measured on this project's 2-core
  machine, a 20 s 1080p30 H.264/AAC clip: metadata 0.08 s, decode check 1.7 s (about 12x
  real time), proxy 6.5 s: the check costs a quarter of the transcode that follows it.
  `probe(path, decode=False)` skips it (metadata only) where that cost is not wanted.
* Rotation is the clockwise angle a player turns the stored picture to show it upright (the
  old `rotate` tag's meaning; a phone held upright records 90). ffprobe prints the display
  matrix as a counter-clockwise angle, so rotation = -that, modulo 360.
* Derivatives are written to a temporary file beside the destination and renamed into place
  only when ffmpeg succeeded, so a killed worker never leaves a half-written derivative.
  ffmpeg is asked (PR_SET_PDEATHSIG) to die with the process that started it.
* A Recipe records the argv with `ffmpeg` for the binary and `{input}` / `{output}` for the
  paths, so anyone with the same ffmpeg can re-run it; the output is deterministic for the
  same ffmpeg build (libx264 is deterministic by default, metadata is stripped).
"""

from __future__ import annotations

import collections
import ctypes
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import ffmpeg

from evidence.errors import DiskFull, InvalidInput, MediaError, says_disk_full

ENV_FFMPEG = "EVIDENCE_FFMPEG"
ENV_FFPROBE = "EVIDENCE_FFPROBE"

INPUT = "{input}"
OUTPUT = "{output}"

# Proxy: what every browser plays. Short side at most 720, long side at most 1280, never
# upscaled; applied after ffmpeg's autorotate, so a portrait clip becomes a 720x1280 proxy.
PROXY_CRF = 23
PROXY_PRESET = "veryfast"
PROXY_AUDIO_BITRATE = "128k"
THUMBNAIL_WIDTH = 320

CHUNK = 1024 * 1024
STDERR_TAIL_LINES = 40
ERROR_MAX_CHARS = 4000

# Time limits: a fixed allowance plus a share of the clip's length and size. Generous
# against what this machine does (decode about 8x real time, proxy about 2x at 1080p30),
# so only a hung or pathological run trips them.
PROBE_LIMIT = (30.0, 0.0, 60.0)  # (base s, s per media s, s per GiB)
DECODE_LIMIT = (60.0, 1.0, 120.0)
TRANSCODE_LIMIT = (120.0, 6.0, 300.0)
THUMBNAIL_LIMIT = (30.0, 0.0, 60.0)
VERSION_LIMIT = 15.0


# --- binaries --------------------------------------------------------------------------


def ffmpeg_binary() -> str:
    """The ffmpeg to run: $EVIDENCE_FFMPEG, else the system one, else imageio-ffmpeg's."""
    override = os.environ.get(ENV_FFMPEG)
    if override:
        return override
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # ImportError, or RuntimeError when it has no binary
        raise MediaError(
            "No ffmpeg found: none on PATH and imageio-ffmpeg has no binary",
            hint=f"install ffmpeg (apt-get install ffmpeg) or set {ENV_FFMPEG}",
        ) from exc


def ffprobe_binary() -> str | None:
    """The ffprobe to run, or None when there is none (probe then parses `ffmpeg -i`).

    $EVIDENCE_FFPROBE set to a path wins; set to the empty string it forces the fallback.
    """
    override = os.environ.get(ENV_FFPROBE)
    if override is not None:
        return override or None
    system = shutil.which("ffprobe")
    if system:
        return system
    # A custom ffmpeg build usually has its ffprobe beside it.
    sibling = Path(ffmpeg_binary()).with_name("ffprobe")
    return str(sibling) if sibling.is_file() and os.access(sibling, os.X_OK) else None


def ffmpeg_version() -> str:
    """The version token of `ffmpeg -version`'s first line, e.g. "5.1.9-0+deb12u1"."""
    return _version_of(ffmpeg_binary())


@lru_cache(maxsize=8)
def _version_of(binary: str) -> str:
    # Cached per binary path, so switching $EVIDENCE_FFMPEG (tests do) is honoured.
    try:
        out = subprocess.run(
            [binary, "-version"], check=False, capture_output=True, text=True, timeout=VERSION_LIMIT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MediaError(f"Could not run {binary} -version: {exc}", hint=_install_hint()) from exc
    first = out.stdout.splitlines()[0] if out.stdout else ""
    match = re.match(r"\S+ version (\S+)", first)
    if not match:
        raise MediaError(f"{binary} -version printed no version line", stderr=out.stderr[-500:])
    return match.group(1)


def _install_hint() -> str:
    return f"install ffmpeg (apt-get install ffmpeg) or point {ENV_FFMPEG} at a working binary"


# --- facts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaFacts:
    """What ffmpeg says a clip is. Width and height are as stored; rotation says how to show it."""

    container: str | None = None
    duration_ms: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    frame_rate: str | None = None  # a rational "30/1", "30000/1001": never a float
    rotation: int = 0  # clockwise degrees to display upright: 0, 90, 180, 270
    creation_time: dt.datetime | None = None  # timezone-aware
    gps: dict[str, str] | None = None  # {"lat", "lon"[, "alt"]}: decimal strings
    tags: dict[str, str] = field(default_factory=dict)  # the container's own tags
    playable: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe and float-free: these go into RFC 8785 ledger entries."""
        return {
            "container": self.container,
            "duration_ms": self.duration_ms,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "width": self.width,
            "height": self.height,
            "frame_rate": self.frame_rate,
            "rotation": self.rotation,
            "creation_time": _rfc3339(self.creation_time) if self.creation_time else None,
            "gps": dict(self.gps) if self.gps else None,
            "tags": dict(self.tags),
            "playable": self.playable,
            "error": self.error,
        }


@dataclass(frozen=True)
class Recipe:
    """How a derivative was made, precisely enough to make it again."""

    ffmpeg_version: str
    args: tuple[str, ...]  # argv with "ffmpeg", "{input}", "{output}" for the machine's paths
    input_sha256: str
    output_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "ffmpeg_version": self.ffmpeg_version,
            "args": list(self.args),
            "input_sha256": self.input_sha256,
            "output_sha256": self.output_sha256,
        }

    def argv(self, src: Path, dst: Path, binary: str | None = None) -> list[str]:
        """The recipe with real paths, ready to run."""
        return _bind(list(self.args), src, dst, binary or ffmpeg_binary())


def probe(path: Path, *, decode: bool = True) -> MediaFacts:
    """Facts about a clip. Never raises for bad media: it comes back playable=False with
    ffmpeg's own words in `error`. `decode=False` skips the full decode check (metadata only).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)  # a caller's mistake, not bad media
    size = path.stat().st_size
    raw, error = _read_metadata(path, size)
    if raw is None:
        return MediaFacts(playable=False, error=error or "ffmpeg could not read the file")
    facts = _facts_from_raw(raw)
    if facts.video_codec is None:
        return replace(facts, playable=False, error="no video stream in the file")
    if not decode:
        return replace(facts, playable=True, error=None)
    has_audio = facts.audio_codec is not None
    decode_error = _decode_check(path, size, facts.duration_ms, has_audio=has_audio)
    return replace(facts, playable=decode_error is None, error=decode_error)


# Metadata, from ffprobe's JSON or (no ffprobe) from the dump `ffmpeg -i` prints. Both are
# reduced to the same shape: {"format": {...}, "streams": [{...}, ...]} as ffprobe has it.


def _read_metadata(path: Path, size: int) -> tuple[dict[str, Any] | None, str | None]:
    limit = _limit(PROBE_LIMIT, size, None)
    ffprobe_bin = ffprobe_binary()
    if ffprobe_bin:
        argv = [
            ffprobe_bin, "-v", "error", "-hide_banner", "-print_format", "json",
            "-show_format", "-show_streams", "-i", _file_url(path),
        ]  # fmt: skip
        result = _run(argv, limit=limit, capture_stdout=True)
    else:
        argv = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", _file_url(path)]
        result = _run(argv, limit=limit)
    if result.timed_out:
        return None, f"reading the container timed out after {limit:.0f} s"
    if ffprobe_bin:
        raw = _parse_ffprobe_json(result.stdout) if result.returncode == 0 else None
    else:
        raw = _parse_ffmpeg_dump(result.stderr_lines)
    if raw is None:
        noise = "At least one output file must be specified"
        lines = [line for line in result.stderr_lines if noise not in line]
        return None, _clean_error(lines, path) or f"exit status {result.returncode}"
    return raw, None


def _parse_ffprobe_json(stdout: str) -> dict[str, Any] | None:
    try:
        raw = json.loads(stdout)
    except ValueError:
        return None
    return raw if isinstance(raw, dict) and "format" in raw else None


_INPUT_RE = re.compile(r"^Input #0, (.+), from '")
_DURATION_RE = re.compile(r"^\s+Duration: (?:(\d+):(\d\d):(\d\d)\.(\d\d)|N/A)")
_STREAM_RE = re.compile(r"^\s+Stream #0:\d+\S*: (Video|Audio|Subtitle|Data|Attachment): (\w+)")
_SIZE_RE = re.compile(r", (\d{2,5})x(\d{2,5})\b")
_FPS_RE = re.compile(r", ([\d.]+k?) (fps|tbr)\b")
_ROTATION_RE = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_TAG_RE = re.compile(r"^(\s+)(\S[^:]*?)\s*: ?(.*)$")


def _parse_ffmpeg_dump(lines: list[str]) -> dict[str, Any] | None:
    """ffprobe's shape from `ffmpeg -i`'s stream dump: the fallback when there is no ffprobe."""
    fmt: dict[str, Any] = {"tags": {}}
    streams: list[dict[str, Any]] = []
    seen_input = False
    tags: dict[str, str] | None = None  # the metadata block being read, if any
    tag_indent = 0
    last_key = ""
    for line in lines:
        if (m := _INPUT_RE.match(line)) is not None:
            seen_input, fmt["format_name"] = True, m.group(1)
            continue
        if not seen_input:
            continue
        if line.startswith("Output #"):
            break
        indent = len(line) - len(line.lstrip())
        if tags is not None and indent >= tag_indent and (m := _TAG_RE.match(line)):
            key, value = m.group(2), m.group(3)
            if key == "" or line.strip().startswith(":"):  # continuation of a long value
                tags[last_key] = tags.get(last_key, "") + "\n" + value
            else:
                tags[key], last_key = value, key
            continue
        tags = None
        stripped = line.strip()
        if stripped == "Metadata:":
            tags = streams[-1].setdefault("tags", {}) if streams and indent > 2 else fmt["tags"]
            tag_indent = indent + 1
        elif (m := _DURATION_RE.match(line)) is not None:
            if m.group(1):
                h, mi, s, cs = (int(g) for g in m.groups())
                fmt["duration"] = f"{(h * 60 + mi) * 60 + s}.{cs:02d}"
        elif (m := _STREAM_RE.match(line)) is not None:
            streams.append(_stream_from_dump(m.group(1).lower(), m.group(2), line))
        elif (m := _ROTATION_RE.search(line)) is not None and streams:
            streams[-1].setdefault("side_data_list", []).append({"rotation": m.group(1)})
    if not seen_input:
        return None
    return {"format": fmt, "streams": streams}


def _stream_from_dump(kind: str, codec: str, line: str) -> dict[str, Any]:
    stream: dict[str, Any] = {"codec_type": kind, "codec_name": codec}
    if kind == "video":
        if (size := _SIZE_RE.search(line)) is not None:
            stream["width"], stream["height"] = int(size.group(1)), int(size.group(2))
        rates = {unit: value for value, unit in _FPS_RE.findall(line)}
        rate = rates.get("fps") or rates.get("tbr")
        if rate:
            stream["avg_frame_rate"] = _rate_from_decimal(rate)
    return stream


def _rate_from_decimal(text: str) -> str:
    """ffmpeg prints rates rounded ("29.97", "30", "1k"); recover the rational they stand for."""
    value = Decimal(text[:-1]) * 1000 if text.endswith("k") else Decimal(text)
    if value == value.to_integral_value():
        return f"{int(value)}/1"
    # NTSC-family rates are N*1000/1001 and print with two decimals.
    n = int((value * 1001 / 1000).to_integral_value())
    if abs(Decimal(n * 1000) / 1001 - value) < Decimal("0.006"):
        return f"{n * 1000}/1001"
    rate = Fraction(value).limit_denominator(1000)
    return f"{rate.numerator}/{rate.denominator}"


def _facts_from_raw(raw: dict[str, Any]) -> MediaFacts:
    fmt = raw.get("format") or {}
    streams = [s for s in raw.get("streams") or [] if isinstance(s, dict)]
    video = _first(streams, "video")
    audio = _first(streams, "audio")
    tags = {str(k): str(v) for k, v in (fmt.get("tags") or {}).items()}
    video_tags = {str(k): str(v) for k, v in ((video or {}).get("tags") or {}).items()}
    duration = _duration_ms(fmt.get("duration")) or _duration_ms((video or {}).get("duration"))
    return MediaFacts(
        container=fmt.get("format_name"),
        duration_ms=duration,
        video_codec=(video or {}).get("codec_name"),
        audio_codec=(audio or {}).get("codec_name"),
        width=_int_or_none((video or {}).get("width")),
        height=_int_or_none((video or {}).get("height")),
        frame_rate=_frame_rate(video) if video else None,
        rotation=_rotation(video) if video else 0,
        creation_time=_creation_time(tags, video_tags),
        gps=_gps(tags, video_tags),
        tags=tags,
    )


def _first(streams: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    # Cover art is a "video" stream too; a clip's picture is the first real one.
    for stream in streams:
        if stream.get("codec_type") != kind:
            continue
        if (stream.get("disposition") or {}).get("attached_pic"):
            continue
        return stream
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _duration_ms(value: Any) -> int | None:
    try:
        seconds = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not seconds.is_finite() or seconds <= 0:
        return None
    return int((seconds * 1000).to_integral_value(rounding=ROUND_HALF_EVEN))


def _frame_rate(video: dict[str, Any]) -> str | None:
    # avg_frame_rate is the rate a viewer sees (also for variable-rate phone clips);
    # r_frame_rate is the fallback when the container gives no average.
    for key in ("avg_frame_rate", "r_frame_rate"):
        text = str(video.get(key) or "")
        try:
            rate = Fraction(text)
        except (ValueError, ZeroDivisionError):
            continue
        if rate > 0:
            return f"{rate.numerator}/{rate.denominator}"
    return None


def _rotation(video: dict[str, Any]) -> int:
    for side in video.get("side_data_list") or []:
        if isinstance(side, dict) and "rotation" in side:
            try:
                counter_clockwise = Decimal(str(side["rotation"]))
            except InvalidOperation:
                continue
            return int((-counter_clockwise).to_integral_value()) % 360
    rotate = (video.get("tags") or {}).get("rotate")  # the tag older muxers and ffmpegs use
    try:
        return int(Decimal(str(rotate)).to_integral_value()) % 360 if rotate else 0
    except InvalidOperation:
        return 0


_CREATION_KEYS = ("com.apple.quicktime.creationdate", "creation_time", "date")


def _creation_time(tags: dict[str, str], video_tags: dict[str, str]) -> dt.datetime | None:
    # Apple's creationdate carries the local offset, so it comes first; mvhd's creation_time
    # is UTC by the spec (seconds only).
    for source in (tags, video_tags):
        for key in _CREATION_KEYS:
            if key in source and (parsed := parse_datetime(source[key])) is not None:
                return parsed
    return None


def parse_datetime(text: str) -> dt.datetime | None:
    """An ISO 8601 / RFC 3339 (or EXIF "YYYY:MM:DD hh:mm:ss") time; naive means UTC."""
    text = text.strip()
    if re.match(r"^\d{4}:\d\d:\d\d[ T]", text):
        text = text[:4] + "-" + text[5:7] + "-" + text[8:]
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


_GPS_KEYS = ("com.apple.quicktime.location.ISO6709", "location", "location-eng")
_ISO6709_RE = re.compile(
    r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?(?:CRS[^/]*)?/?$"
)


def _gps(tags: dict[str, str], video_tags: dict[str, str]) -> dict[str, str] | None:
    for source in (tags, video_tags):
        for key in _GPS_KEYS:
            if key in source and (parsed := parse_iso6709(source[key])) is not None:
                return parsed
    return None


def parse_iso6709(text: str) -> dict[str, str] | None:
    """ISO 6709 point ("+51.5007-000.1246+011.000/") -> {"lat", "lon"[, "alt"]} as decimals.

    Degrees may be written D.D, DDMM.M or DDMMSS.S (the integer digits say which); values
    stay decimal strings so nothing is rounded on the way into the ledger.
    """
    match = _ISO6709_RE.match(text.strip())
    if not match:
        return None
    lat = _iso6709_degrees(match.group(1), degree_digits=2)
    lon = _iso6709_degrees(match.group(2), degree_digits=3)
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None
    point = {"lat": _decimal_text(lat), "lon": _decimal_text(lon)}
    if match.group(3):
        point["alt"] = _decimal_text(Decimal(match.group(3)))
    return point


def _iso6709_degrees(text: str, *, degree_digits: int) -> Decimal | None:
    sign = -1 if text[0] == "-" else 1
    whole, _, frac = text[1:].partition(".")
    extra = len(whole) - degree_digits  # 0: degrees, 2: +minutes, 4: +minutes+seconds
    value = Decimal(text[1:])
    if extra == 2:
        value = Decimal(whole[:-2]) + Decimal(whole[-2:] + ("." + frac if frac else "")) / 60
    elif extra == 4:
        minutes = Decimal(whole[-4:-2])
        seconds = Decimal(whole[-2:] + ("." + frac if frac else ""))
        value = Decimal(whole[:-4]) + minutes / 60 + seconds / 3600
    elif extra not in (0, -1):  # -1: a leading zero was left out ("+5.1-0.12/")
        return None
    if extra in (2, 4):
        value = value.quantize(Decimal("0.0000001"))
    return sign * value


def _decimal_text(value: Decimal) -> str:
    text = format(value, "f")
    return "0" if text in ("-0", "+0") else text


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# The decode check.


def _decode_check(path: Path, size: int, duration_ms: int | None, *, has_audio: bool) -> str | None:
    """Decode the first video (and audio) stream to nowhere; None when it decoded cleanly."""
    inp = ffmpeg.input(INPUT)
    streams = [inp["v:0"], inp["a:0"]] if has_audio else [inp["v:0"]]
    args = (
        ffmpeg.output(*streams, "-", f="null")
        .global_args("-hide_banner", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1")
        .compile(cmd="ffmpeg")
    )
    limit = _limit(DECODE_LIMIT, size, duration_ms)
    progress = _ProgressReader()
    result = _run(_bind(args, path, None, ffmpeg_binary()), limit=limit, on_line=progress.feed)
    if result.timed_out:
        return (
            f"the decode check timed out after {limit:.0f} s (probe again when the machine is idle)"
        )
    errors = _clean_error(result.stderr_lines, path)
    if result.returncode != 0 or errors:
        return errors or f"ffmpeg exited with status {result.returncode} while decoding"
    decoded_ms = progress.out_time_us // 1000
    if duration_ms and duration_ms - decoded_ms > max(1000, duration_ms // 100):
        return (
            f"decoded only {_seconds(decoded_ms)} s of the {_seconds(duration_ms)} s the "
            "container declares: the file ends early (truncated?)"
        )
    return None


def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


# --- derivatives -----------------------------------------------------------------------


def transcode_proxy(
    src: Path,
    dst: Path,
    *,
    input_sha256: str,
    progress: Callable[[float], None] | None = None,
) -> Recipe:
    """A browser proxy: H.264 (+AAC when there is audio) MP4, at most 720p, upright, +faststart.

    `progress` is called with fractions that only grow, the last being 1.0 once dst is in
    place. Raises MediaError when ffmpeg fails; dst is then untouched.
    """
    src, dst = Path(src), Path(dst)
    size = src.stat().st_size
    facts = probe(src, decode=False)
    if facts.video_codec is None:
        raise MediaError(
            f"Cannot make a proxy of {src.name}: {facts.error}",
            hint="the clip is kept as an original and flagged unplayable; no proxy is possible",
        )
    args = proxy_args(has_audio=facts.audio_codec is not None)
    reader = _ProgressReader(facts.duration_ms, progress)
    limit = _limit(TRANSCODE_LIMIT, size, facts.duration_ms)
    output_sha256 = _write_atomically(src, dst, args, limit, "proxy", on_line=reader.feed)
    if progress is not None:
        progress(1.0)
    return Recipe(ffmpeg_version(), tuple(args), input_sha256, output_sha256)


PROXY_THREADS = 2


def proxy_args(*, has_audio: bool) -> list[str]:
    """The proxy's ffmpeg argv with placeholders: the recipe, exactly as it is run."""
    inp = ffmpeg.input(INPUT)
    # Bound the box by orientation (after autorotate) and never upscale; even sizes for 4:2:0.
    video = inp["v:0"].filter(
        "scale",
        w="if(gte(iw,ih),min(1280,iw),min(720,iw))",
        h="if(gte(iw,ih),min(720,ih),min(1280,ih))",
        force_original_aspect_ratio="decrease",
        force_divisible_by=2,
    )
    streams = [video, inp["a:0"]] if has_audio else [video]
    out = ffmpeg.output(*streams, OUTPUT, **_mp4_options(has_audio)).global_args(
        "-hide_banner", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1"
    )
    return list(out.compile(cmd="ffmpeg", overwrite_output=True))


def _mp4_options(has_audio: bool) -> dict[str, Any]:
    """The pinned encoder settings every video derivative (proxy, redaction) is made with."""
    options: dict[str, Any] = {
        "c:v": "libx264",
        "preset": PROXY_PRESET,
        "crf": PROXY_CRF,
        "pix_fmt": "yuv420p",
        "profile:v": "high",
        # x264's output depends on its thread count, which defaults to the core count: pin
        # it, so the recipe reproduces the same bytes on any machine.
        "threads:v": PROXY_THREADS,
        "movflags": "+faststart",
        # A viewing copy carries no tags (GPS, officer names): the original keeps them.
        "map_metadata": -1,
        "map_chapters": -1,
        "f": "mp4",
    }
    if has_audio:
        options.update({"c:a": "aac", "b:a": PROXY_AUDIO_BITRATE})
    return options


def make_thumbnail(src: Path, dst: Path, *, input_sha256: str, at_ms: int | None = None) -> Recipe:
    """A JPEG THUMBNAIL_WIDTH px wide, upright, from at_ms (default: 10% in, or 1 s)."""
    src, dst = Path(src), Path(dst)
    size = src.stat().st_size
    if at_ms is None:
        facts = probe(src, decode=False)
        if facts.video_codec is None:
            raise MediaError(
                f"Cannot make a thumbnail of {src.name}: {facts.error}",
                hint="the clip is kept as an original and flagged unplayable",
            )
        at_ms = facts.duration_ms // 10 if facts.duration_ms else 1000
    args = thumbnail_args(at_ms)
    output_sha256 = _write_atomically(
        src, dst, args, _limit(THUMBNAIL_LIMIT, size, None), "thumbnail"
    )
    return Recipe(ffmpeg_version(), tuple(args), input_sha256, output_sha256)


def thumbnail_args(at_ms: int) -> list[str]:
    # -ss before -i seeks on the demuxer (fast); the frame is then the one at or after it.
    inp = ffmpeg.input(INPUT, ss=_seconds(max(0, at_ms)))
    out = ffmpeg.output(
        inp["v:0"].filter("scale", THUMBNAIL_WIDTH, -2),
        OUTPUT,
        **{"frames:v": 1, "q:v": 3, "map_metadata": -1, "f": "image2", "update": 1},
    ).global_args("-hide_banner", "-nostdin", "-v", "error", "-nostats")
    return list(out.compile(cmd="ffmpeg", overwrite_output=True))


# --- redactions ------------------------------------------------------------------------
# A redacted copy hides parts of the picture behind solid black boxes and silences parts
# of the sound. Black, not blur or pixelation: a blurred face can sometimes be recovered or
# recognised, and a court can see at a glance that a black box hides everything under it.

MAX_REDACTION_BOXES = 64
MAX_MUTE_RANGES = 64
REDACTION_LIMIT = (120.0, 10.0, 300.0)  # full resolution: slower per media second than a proxy
_BOX_KEYS = ("x", "y", "w", "h", "start_ms", "end_ms")
_SPAN_KEYS = ("start_ms", "end_ms")


@dataclass(frozen=True)
class Box:
    """A rectangle blacked out from start_ms to end_ms (both included), in pixels of the
    picture as shown (upright: after the display matrix is applied), origin top left."""

    x: int
    y: int
    w: int
    h: int
    start_ms: int
    end_ms: int

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in _BOX_KEYS}


@dataclass(frozen=True)
class Span:
    """A time range silenced, start_ms to end_ms (both included)."""

    start_ms: int
    end_ms: int

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in _SPAN_KEYS}


def display_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """(width, height) of the picture as a player shows it."""
    return (height, width) if rotation % 180 == 90 else (width, height)


def check_redaction(
    boxes: Iterable[Box | dict[str, Any]],
    mute: Iterable[Span | dict[str, Any]],
    *,
    width: int,
    height: int,
    duration_ms: int | None,
    has_audio: bool,
) -> tuple[tuple[Box, ...], tuple[Span, ...]]:
    """Boxes and mute ranges checked against the picture as shown (width x height) and the
    clip's duration. Raises InvalidInput naming the first bad item and what is wrong."""
    box_list = [_as_box(b, i) for i, b in enumerate(boxes)]
    span_list = [_as_span(m, i) for i, m in enumerate(mute)]
    if not box_list and not span_list:
        raise InvalidInput("a redaction needs at least one box (to black out) or mute range")
    if len(box_list) > MAX_REDACTION_BOXES or len(span_list) > MAX_MUTE_RANGES:
        raise InvalidInput(
            f"at most {MAX_REDACTION_BOXES} boxes and {MAX_MUTE_RANGES} mute ranges per "
            "redaction: request another redaction of this one's result if you need more"
        )
    frame = f"boxes are in pixels of the picture as shown, {width}x{height}, origin top left"
    for i, b in enumerate(box_list):
        what = f"boxes[{i}]"
        if b.x < 0 or b.y < 0:
            raise InvalidInput(f"{what}: x and y must be 0 or more ({frame})")
        if b.w < 1 or b.h < 1:
            raise InvalidInput(f"{what}: w and h must be at least 1 pixel")
        if b.x + b.w > width:
            raise InvalidInput(
                f"{what}: x + w = {b.x + b.w} is beyond the picture's width of {width} px ({frame})"
            )
        if b.y + b.h > height:
            raise InvalidInput(
                f"{what}: y + h = {b.y + b.h} is beyond the picture's height "
                f"of {height} px ({frame})"
            )
        _check_times(what, b.start_ms, b.end_ms, duration_ms)
    if span_list and not has_audio:
        raise InvalidInput("mute: the clip has no audio track to silence")
    for i, m in enumerate(span_list):
        _check_times(f"mute[{i}]", m.start_ms, m.end_ms, duration_ms)
    return tuple(box_list), tuple(span_list)


def _as_box(item: Box | dict[str, Any], i: int) -> Box:
    if isinstance(item, Box):
        return item
    return Box(**_ints(item, _BOX_KEYS, f"boxes[{i}]"))


def _as_span(item: Span | dict[str, Any], i: int) -> Span:
    if isinstance(item, Span):
        return item
    return Span(**_ints(item, _SPAN_KEYS, f"mute[{i}]"))


def _ints(item: Any, keys: tuple[str, ...], what: str) -> dict[str, int]:
    if not isinstance(item, dict) or set(item) != set(keys):
        raise InvalidInput(f"{what} must be an object with exactly {', '.join(keys)}")
    bad = [k for k in keys if not isinstance(item[k], int) or isinstance(item[k], bool)]
    if bad:
        raise InvalidInput(f"{what}: {', '.join(bad)} must be whole numbers")
    return {k: int(item[k]) for k in keys}


def _check_times(what: str, start_ms: int, end_ms: int, duration_ms: int | None) -> None:
    if start_ms < 0:
        raise InvalidInput(f"{what}: start_ms must be 0 or more")
    if end_ms <= start_ms:
        raise InvalidInput(f"{what}: end_ms ({end_ms}) must be after start_ms ({start_ms})")
    if duration_ms is not None and end_ms > duration_ms:
        raise InvalidInput(
            f"{what}: end_ms ({end_ms}) is beyond the end of the clip ({duration_ms} ms)"
        )


def redact(
    src: Path,
    out: Path,
    *,
    boxes: Iterable[Box | dict[str, Any]],
    mute: Iterable[Span | dict[str, Any]],
    input_sha256: str,
    progress: Callable[[float], None] | None = None,
) -> Recipe:
    """A redacted copy: H.264/AAC MP4 (+faststart), upright, at the picture's own size, with
    the proxy's pinned encoder settings (so the recipe reproduces the same bytes).

    Boxes and ranges are checked against the clip first (InvalidInput). Raises MediaError
    when ffmpeg fails; `out` is then untouched. The source is only read.
    """
    src, out = Path(src), Path(out)
    facts = probe(src, decode=False)
    if facts.video_codec is None or not facts.width or not facts.height:
        raise MediaError(
            f"Cannot redact {src.name}: {facts.error or 'no picture size'}",
            hint="the clip is kept as an original and flagged unplayable; no redaction is possible",
        )
    width, height = display_size(facts.width, facts.height, facts.rotation)
    has_audio = facts.audio_codec is not None
    checked_boxes, checked_mute = check_redaction(
        boxes,
        mute,
        width=width,
        height=height,
        duration_ms=facts.duration_ms,
        has_audio=has_audio,
    )
    args = redaction_args(
        checked_boxes, checked_mute, has_audio=has_audio, frame_rate=facts.frame_rate
    )
    reader = _ProgressReader(facts.duration_ms, progress)
    limit = _limit(REDACTION_LIMIT, src.stat().st_size, facts.duration_ms)
    output_sha256 = _write_atomically(src, out, args, limit, "redaction", on_line=reader.feed)
    if progress is not None:
        progress(1.0)
    return Recipe(ffmpeg_version(), tuple(args), input_sha256, output_sha256)


def redaction_args(
    boxes: Iterable[Box], mute: Iterable[Span], *, has_audio: bool, frame_rate: str | None
) -> list[str]:
    """The redaction's ffmpeg argv with placeholders: the recipe, exactly as it is run.

    ffmpeg's autorotate turns the picture upright before the filters, so boxes are in the
    frame people see. Each box covers every frame on screen at any moment of its range: it
    starts one frame early (a frame shown from just before start_ms is still showing then).
    Its edges are widened to even pixels, since 4:2:0 colour is stored per 2x2 block; the
    picture is padded to even dimensions with black. Muting is per audio sample (aeval's
    `t` is each sample's time), not per audio frame, so no sound leaks at a range's edges.
    """
    inp = ffmpeg.input(INPUT)
    video = inp["v:0"].filter("format", "yuv420p")
    lead = _frame_duration(frame_rate)
    for b in boxes:
        x0, y0 = b.x - b.x % 2, b.y - b.y % 2
        x1, y1 = b.x + b.w + (b.x + b.w) % 2, b.y + b.h + (b.y + b.h) % 2
        start = max(Fraction(b.start_ms, 1000) - lead, Fraction(0))
        video = video.filter(
            "drawbox",
            x=x0,
            y=y0,
            w=x1 - x0,
            h=y1 - y0,
            color="black",
            t="fill",
            enable=f"between(t,{_decimal_seconds(start)},{_decimal_seconds(Fraction(b.end_ms, 1000))})",
        )
    video = video.filter("pad", w="ceil(iw/2)*2", h="ceil(ih/2)*2", color="black")
    streams: list[Any] = [video]
    if has_audio:
        audio = inp["a:0"]
        spans = list(mute)
        if spans:
            silent = "+".join(
                f"between(t,{_decimal_seconds(Fraction(m.start_ms, 1000))},"
                f"{_decimal_seconds(Fraction(m.end_ms, 1000))})"
                for m in spans
            )
            audio = audio.filter("aeval", exprs=f"val(ch)*not({silent})", c="same")
        streams.append(audio)
    out = ffmpeg.output(*streams, OUTPUT, **_mp4_options(has_audio)).global_args(
        "-hide_banner", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1"
    )
    return list(out.compile(cmd="ffmpeg", overwrite_output=True))


def _frame_duration(frame_rate: str | None) -> Fraction:
    """One frame's duration in seconds from a rational frame rate; 0 when unknown."""
    try:
        rate = Fraction(frame_rate or "0")
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return 1 / rate if rate > 0 else Fraction(0)


def _decimal_seconds(value: Fraction) -> str:
    """Seconds as a decimal with microseconds, rounded down (so a range only ever grows
    at its start; ends are whole milliseconds and exact)."""
    us = int(value * 1_000_000)  # value >= 0: int() rounds down
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def _write_atomically(
    src: Path,
    dst: Path,
    args: list[str],
    limit: float,
    what: str,
    *,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run ffmpeg into a temporary file beside dst; rename it over dst only on success."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_partials(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        result = _run(_bind(args, src, tmp, ffmpeg_binary()), limit=limit, on_line=on_line)
        stderr = _clean_error(result.stderr_lines, src, tmp)
        if result.timed_out:
            raise MediaError(
                f"ffmpeg timed out after {limit:.0f} s making the {what} of {src.name}",
                stderr=stderr,
                hint="retry when the machine is less busy; if it times out again the clip "
                "may be pathological: keep the original and make the derivative by hand",
            )
        if result.returncode != 0 and says_disk_full("\n".join(result.stderr_lines)):
            # Not a codec or media problem: retried with backoff once space is freed.
            raise DiskFull(f"ffmpeg could not write the {what} of {src.name}")
        if result.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise MediaError(
                f"ffmpeg could not make the {what} of {src.name} (exit status {result.returncode})",
                stderr=stderr,
                hint="probe the clip: if it is unplayable the original is kept and flagged; "
                "otherwise check the ffmpeg build has libx264 and aac",
            )
        _fsync(tmp)
        os.replace(tmp, dst)
        _fsync(dst.parent)
        return sha256_file(dst)
    finally:
        tmp.unlink(missing_ok=True)


def _sweep_stale_partials(dst: Path) -> None:
    """Remove temporary files of dst left by processes that died (their pid is gone)."""
    for stale in dst.parent.glob(f".{glob_escape(dst.name)}.*.partial"):
        try:
            pid = int(stale.name[len(dst.name) + 2 :].split(".")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue  # not ours, or a live process of another user


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks so memory stays flat."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- running ffmpeg ------------------------------------------------------------------------


def _file_url(path: Path) -> str:
    # "file:" so a name with a colon or a leading dash is never taken for a protocol/option.
    return "file:" + str(Path(path).resolve())


def _bind(args: list[str], src: Path, dst: Path | None, binary: str) -> list[str]:
    """Placeholders -> real argv. Only whole arguments are replaced, never substrings."""
    real = {INPUT: _file_url(src)}
    if dst is not None:
        real[OUTPUT] = _file_url(dst)
    return [binary, *(real.get(arg, arg) for arg in args[1:])]


def _limit(rule: tuple[float, float, float], size: int, duration_ms: int | None) -> float:
    base, per_media_second, per_gib = rule
    media_seconds = (duration_ms or 0) / 1000
    return base + per_media_second * media_seconds + per_gib * size / 2**30


class _ProgressReader:
    """Reads `-progress pipe:1` key=value lines; reports growing fractions below 1.0."""

    def __init__(
        self, duration_ms: int | None = None, callback: Callable[[float], None] | None = None
    ):
        self.duration_us = (duration_ms or 0) * 1000
        self.callback = callback
        self.out_time_us = 0
        self.reported = 0.0

    def feed(self, line: str) -> None:
        key, _, value = line.strip().partition("=")
        if key == "out_time_us":
            try:
                self.out_time_us = max(self.out_time_us, int(value))
            except ValueError:
                pass  # "N/A" before the first frame
        elif key == "progress" and self.callback and self.duration_us:
            # 1.0 is kept for "done and in place", which only the caller knows.
            fraction = min(self.out_time_us / self.duration_us, 0.99)
            if fraction > self.reported:
                self.reported = fraction
                self.callback(fraction)


@dataclass
class _Result:
    returncode: int
    stdout: str
    stderr_lines: list[str]
    timed_out: bool


def _run(
    argv: list[str],
    *,
    limit: float,
    capture_stdout: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> _Result:
    """Run a command with a time limit; stdout to a callback or captured, stderr's tail kept."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Only prctl runs between fork and exec, resolved beforehand: no locks taken.
            preexec_fn=_die_with_parent(),  # noqa: PLW1509
        )
    except OSError as exc:
        raise MediaError(f"Could not run {argv[0]}: {exc}", hint=_install_hint()) from exc
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES * 5)
    # stderr is drained by a thread so a chatty ffmpeg never blocks on a full pipe.
    drain = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    drain.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(limit, kill)
    timer.start()
    captured: list[bytes] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if capture_stdout:
                captured.append(raw)
            if on_line is not None:
                on_line(raw.decode("utf-8", "replace"))
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # the callback raised: do not leave ffmpeg running
            proc.kill()
            proc.wait()
        drain.join(timeout=5)
    return _Result(
        returncode=proc.returncode,
        stdout=b"".join(captured).decode("utf-8", "replace"),
        stderr_lines=list(tail),
        timed_out=timed_out.is_set(),
    )


def _drain(stream: Any, tail: collections.deque[str]) -> None:
    for raw in stream:
        tail.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
    stream.close()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGKILL ffmpeg when its parent dies (a killed worker)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = _libc_prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


@lru_cache(maxsize=1)
def _libc_prctl() -> Any:
    # Resolved once, in the parent, so the forked child only makes the call.
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_ADDRESS_RE = re.compile(r"\[([^\]@]+?) @ 0x[0-9a-fA-F]+\]")


def _clean_error(lines: Iterable[str], *paths: Path) -> str:
    """ffmpeg's error text, trimmed, without pointer addresses or this machine's paths."""
    replacements: list[tuple[str, str]] = []
    for path, placeholder in zip(paths, (INPUT, OUTPUT), strict=False):
        resolved = str(Path(path).resolve())
        replacements += [("file:" + resolved, placeholder), (resolved, placeholder)]
    cleaned: list[str] = []
    for line in lines:
        line = _ADDRESS_RE.sub(r"[\1]", line.strip())
        for real, placeholder in replacements:
            line = line.replace(real, placeholder)
        if line and (not cleaned or cleaned[-1] != line):  # repeated lines say nothing new
            cleaned.append(line)
    text = "\n".join(cleaned[-STDERR_TAIL_LINES:])
    return text[-ERROR_MAX_CHARS:]
