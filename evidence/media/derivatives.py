"""Browser derivatives of a clip: the proxy every browser plays and the thumbnail, each
with the `Recipe` that made it.

* A Recipe records the argv with `ffmpeg` for the binary and `{input}` / `{output}` for the
  paths, so anyone with the same ffmpeg can re-run it; the output is deterministic for the
  same ffmpeg build (libx264 is deterministic by default, metadata is stripped).
* The pinned encoder settings (`_mp4_options`) are shared with redacted copies
  (evidence/media/redaction.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from evidence.errors import MediaError
from evidence.media.probe import _seconds, probe
from evidence.media.runner import (
    INPUT,
    OUTPUT,
    _bind,
    _limit,
    _ProgressReader,
    _write_atomically,
    ffmpeg_binary,
    ffmpeg_version,
)

# Proxy: what every browser plays. Short side at most 720, long side at most 1280, never
# upscaled; applied after ffmpeg's autorotate, so a portrait clip becomes a 720x1280 proxy.
PROXY_CRF = 23
PROXY_PRESET = "veryfast"
PROXY_AUDIO_BITRATE = "128k"
THUMBNAIL_WIDTH = 320


# Time limits: a fixed allowance plus a share of the clip's length and size
# (evidence/media/probe.py says how they were chosen).
TRANSCODE_LIMIT = (120.0, 6.0, 300.0)
THUMBNAIL_LIMIT = (30.0, 0.0, 60.0)


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
