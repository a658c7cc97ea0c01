"""Redaction rendering: a copy of a clip with solid black boxes over parts of the picture
and silence over parts of the sound, checked against the clip first.

The request, the worker and the ledger entries are in evidence/redactions.py; this module
only checks the boxes and ranges and runs ffmpeg.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from evidence.errors import InvalidInput, MediaError
from evidence.media.derivatives import Recipe, _mp4_options
from evidence.media.probe import probe
from evidence.media.runner import (
    INPUT,
    OUTPUT,
    _limit,
    _ProgressReader,
    _write_atomically,
    ffmpeg_version,
)

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
            enable=(
                f"between(t,{_decimal_seconds(start)},{_decimal_seconds(Fraction(b.end_ms, 1000))})"
            ),
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
