"""Media facts: what ffprobe (or, without it, `ffmpeg -i`) says a clip is, and whether it
plays.

* Playable means: the container opens, there is a video stream, and a full decode of the
  first video and audio streams (`-f null`) ends with no error-level message and covers the
  declared duration. A truncated or corrupted clip often probes fine (moov at the start,
  mdat cut or damaged) and only a decode shows it. Measured on this project's 2-core
  machine, a 20 s 1080p30 H.264/AAC clip: metadata 0.08 s, decode check 1.7 s (about 12x
  real time), proxy 6.5 s: the check costs a quarter of the transcode that follows it.
  `probe(path, decode=False)` skips it (metadata only) where that cost is not wanted.
* Without an ffprobe, the stream dump of `ffmpeg -i` is parsed instead: the same facts,
  duration to 10 ms.
* Rotation is the clockwise angle a player turns the stored picture to show it upright (the
  old `rotate` tag's meaning; a phone held upright records 90). ffprobe prints the display
  matrix as a counter-clockwise angle, so rotation = -that, modulo 360.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from evidence.media.runner import (
    INPUT,
    _bind,
    _clean_error,
    _file_url,
    _limit,
    _ProgressReader,
    _run,
    ffmpeg_binary,
    ffprobe_binary,
)

# Time limits: a fixed allowance plus a share of the clip's length and size. Generous
# against what this machine does (decode about 8x real time, proxy about 2x at 1080p30),
# so only a hung or pathological run trips them.
PROBE_LIMIT = (30.0, 0.0, 60.0)  # (base s, s per media s, s per GiB)
DECODE_LIMIT = (60.0, 1.0, 120.0)


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
    # What decides whether a browser plays the original as it is (a remuxed proxy) or needs
    # a transcode (evidence/media/derivatives.py, proxy_plan): ffprobe's own names.
    video_profile: str | None = None  # "High", "Main", "Constrained Baseline", "High 4:2:2"
    pixel_format: str | None = None  # "yuv420p", "yuvj420p", "yuv422p", "yuv420p10le"
    field_order: str | None = None  # "progressive", or interlaced: "tt", "bb", "tb", "bt"
    audio_profile: str | None = None  # "LC", "HE-AAC", ...
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
            "video_profile": self.video_profile,
            "pixel_format": self.pixel_format,
            "field_order": self.field_order,
            "audio_profile": self.audio_profile,
            "playable": self.playable,
            "error": self.error,
        }


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
# After the codec: "(High)" is the profile, "(avc1 / 0x31637661)" the tag (it has a slash).
_PROFILE_RE = re.compile(r"(?:Video|Audio): \w+ \(([^/()]+)\)")
# The video's pixel format and its details: "..., yuv420p(tv, bt709, progressive), 1920x1080".
_PIXEL_RE = re.compile(r"Video: [^,]*, (\w+)(?:\((.*?)\))?")
# How `ffmpeg -i` prints a field order, and ffprobe's name for it.
_FIELD_ORDERS = {
    "top coded first": "tb",
    "bottom coded first": "bt",
    "top first": "tt",
    "bottom first": "bb",
    "progressive": "progressive",
}
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
    if (profile := _PROFILE_RE.search(line)) is not None:
        stream["profile"] = profile.group(1)
    if kind == "video":
        if (pixel := _PIXEL_RE.search(line)) is not None:
            stream["pix_fmt"], details = pixel.group(1), pixel.group(2) or ""
            for printed, name in _FIELD_ORDERS.items():  # the longer names first
                if printed in details:
                    stream["field_order"] = name
                    break
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
        video_profile=_text_or_none((video or {}).get("profile")),
        pixel_format=_text_or_none((video or {}).get("pix_fmt")),
        field_order=_text_or_none((video or {}).get("field_order")),
        audio_profile=_text_or_none((audio or {}).get("profile")),
    )


def _text_or_none(value: Any) -> str | None:
    # ffprobe says "unknown" where a stream does not say; that is no fact.
    return str(value) if value not in (None, "", "unknown") else None


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
