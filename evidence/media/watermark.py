"""Watermarked copies: a clip (or its redacted copy) with the recipient and the share drawn
across the picture, so a copy that leaks says whose it was.

The share, the worker and the ledger entries are in evidence/cases/watermarks.py; this
module only builds the ffmpeg command and runs it. The text is drawn with DejaVu Sans Bold
(Debian's fonts-dejavu-core); the font's SHA-256 goes into the ledger with the recipe, so the
copy can be made again byte for byte with the same ffmpeg and font.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import ffmpeg

from evidence.errors import MediaError
from evidence.media.derivatives import Recipe, _mp4_options
from evidence.media.probe import probe
from evidence.media.runner import INPUT, OUTPUT, _limit, _write_atomically, ffmpeg_version

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
WATERMARK_LIMIT = (120.0, 10.0, 300.0)  # full resolution, as a redaction
_UNSAFE = re.compile(r"[^A-Za-z0-9 .,@_&()/-]+")
MAX_TEXT = 120


def watermark_text(text: str) -> str:
    """The text as drawn: one line of letters, digits and plain punctuation (no character
    drawtext or the filter graph would read as syntax), at most 120 characters."""
    return " ".join(_UNSAFE.sub(" ", text).split())[:MAX_TEXT]


def font_sha256(font: Path = FONT) -> str:
    if not font.is_file():
        raise MediaError(
            f"no font at {font}",
            hint="install Debian's fonts-dejavu-core (scripts/system-deps.sh)",
        )
    return hashlib.sha256(font.read_bytes()).hexdigest()


def watermark_args(text: str, *, has_audio: bool, font: Path = FONT) -> list[str]:
    """The watermark's ffmpeg argv with placeholders: the recipe, exactly as it is run. The
    text is drawn twice, large and half-transparent across the middle and small at the foot,
    white with a black border so it shows on any picture; the sound is copied as it is."""
    inp = ffmpeg.input(INPUT)
    video = inp["v:0"].filter("format", "yuv420p")
    common: dict[str, Any] = {
        "fontfile": str(font),
        "text": watermark_text(text),
        "fontcolor": "white@0.6",
        "borderw": 2,
        "bordercolor": "black@0.6",
    }
    video = video.filter("drawtext", x="(w-text_w)/2", y="(h-text_h)/2", fontsize="h/18", **common)
    video = video.filter("drawtext", x="10", y="h-th-10", fontsize="h/36", **common)
    video = video.filter("pad", w="ceil(iw/2)*2", h="ceil(ih/2)*2", color="black")
    streams: list[Any] = [video]
    if has_audio:
        streams.append(inp["a:0"])
    out = ffmpeg.output(*streams, OUTPUT, **_mp4_options(has_audio)).global_args(
        "-hide_banner", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1"
    )
    return list(out.compile(cmd="ffmpeg", overwrite_output=True))


def watermark(src: Path, out: Path, text: str, *, input_sha256: str) -> Recipe:
    """A watermarked copy of `src` (H.264/AAC MP4, the proxy's pinned encoder settings, so the
    recipe reproduces the same bytes). Raises MediaError when ffmpeg fails."""
    src, out = Path(src), Path(out)
    font_sha256()  # the font must be there before anything runs
    facts = probe(src, decode=False)
    if facts.video_codec is None or not facts.width or not facts.height:
        raise MediaError(
            f"Cannot watermark {src.name}: {facts.error or 'no picture size'}",
            hint="the clip has no picture to draw on",
        )
    args = watermark_args(text, has_audio=facts.audio_codec is not None)
    limit = _limit(WATERMARK_LIMIT, src.stat().st_size, facts.duration_ms)
    output_sha256 = _write_atomically(src, out, args, limit, "watermark")
    return Recipe(ffmpeg_version(), tuple(args), input_sha256, output_sha256)
