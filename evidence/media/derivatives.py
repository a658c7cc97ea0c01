"""Browser derivatives of a clip: the proxy every browser plays and the thumbnail, each
with the `Recipe` that made it.

* The proxy is a remux of the original (its H.264 and AAC streams copied into an MP4 with
  moov first) when a browser already plays them, else a transcode (`proxy_plan` decides from
  the probe; docs/media.md says why). bench/proxy.py, 60 s of 1080p on two cores: the remux
  0.63 s, the transcode 52 s.

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
from typing import Any, Literal

import ffmpeg

from evidence.errors import MediaError
from evidence.media.probe import MediaFacts, _seconds, probe
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
# A remux reads the clip once and writes it twice (+faststart moves moov to the front).
REMUX_LIMIT = (60.0, 0.0, 300.0)
THUMBNAIL_LIMIT = (30.0, 0.0, 60.0)


@dataclass(frozen=True)
class Recipe:
    """How a derivative was made, precisely enough to make it again."""

    ffmpeg_version: str
    args: tuple[str, ...]  # argv with "ffmpeg", "{input}", "{output}" for the machine's paths
    input_sha256: str
    output_sha256: str
    # A proxy's: "remux" or "transcode", and why (ProxyPlan). None for other derivatives,
    # whose recipes say only how, as before.
    method: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        recorded: dict[str, Any] = {
            "ffmpeg_version": self.ffmpeg_version,
            "args": list(self.args),
            "input_sha256": self.input_sha256,
            "output_sha256": self.output_sha256,
        }
        if self.method is not None:
            recorded["method"] = self.method
            recorded["reason"] = self.reason
        return recorded

    def argv(self, src: Path, dst: Path, binary: str | None = None) -> list[str]:
        """The recipe with real paths, ready to run."""
        return _bind(list(self.args), src, dst, binary or ffmpeg_binary())


# --- remux or transcode ---------------------------------------------------------------

# What every browser that plays MP4 decodes (Chrome, Firefox, Safari, Edge): H.264 in these
# profiles, 8-bit 4:2:0 (yuvj420p is the same with full-range levels), progressive, at most
# 1080p; AAC-LC or HE-AAC audio. 10-bit, 4:2:2, 4:4:4 and interlaced H.264 are not, or not
# everywhere.
REMUX_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})
REMUX_VIDEO_PROFILES = frozenset({"Constrained Baseline", "Baseline", "Main", "High"})
REMUX_PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p"})
REMUX_AUDIO_PROFILES = frozenset({"LC", "HE-AAC", "HE-AACv2"})
REMUX_MAX_SIZE = (1920, 1080)  # long side, short side


@dataclass(frozen=True)
class ProxyPlan:
    """How the proxy of a clip is made, and why: recorded in its recipe."""

    method: Literal["remux", "transcode"]
    reason: str


def proxy_plan(facts: MediaFacts) -> ProxyPlan:
    """Remux when a browser plays the original's streams as they are, else transcode."""
    not_remuxable = _why_not_remux(facts)
    if not_remuxable is None:
        audio = f"AAC {facts.audio_profile}" if facts.audio_codec else "no audio"
        return ProxyPlan(
            "remux",
            f"H.264 {facts.video_profile} {facts.pixel_format} progressive "
            f"{facts.width}x{facts.height} with {audio}: browsers play it as it is",
        )
    return ProxyPlan("transcode", not_remuxable)


def _why_not_remux(f: MediaFacts) -> str | None:
    """The first reason the original's streams cannot be copied into the proxy, or None."""
    if f.container not in REMUX_CONTAINERS:
        return f"container {f.container}: only MP4/QuickTime originals are remuxed"
    if f.video_codec != "h264":
        return f"video codec {f.video_codec}: browsers play only H.264 everywhere"
    if f.video_profile not in REMUX_VIDEO_PROFILES:
        return f"H.264 profile {f.video_profile}: not one every browser decodes"
    if f.pixel_format not in REMUX_PIXEL_FORMATS:
        return f"pixel format {f.pixel_format}: browsers decode only 8-bit 4:2:0"
    if f.field_order != "progressive":
        return f"field order {f.field_order}: interlaced (or unstated) video is transcoded"
    long_side, short_side = max(f.width or 0, f.height or 0), min(f.width or 0, f.height or 0)
    if long_side > REMUX_MAX_SIZE[0] or short_side > REMUX_MAX_SIZE[1] or not short_side:
        return f"picture {f.width}x{f.height}: larger than 1080p (or unknown)"
    if f.rotation:
        # Made upright, so every player and the redaction tool see the same picture.
        return f"rotation {f.rotation}: the proxy is turned upright"
    if f.audio_codec is not None and f.audio_codec != "aac":
        return f"audio codec {f.audio_codec}: browsers play only AAC everywhere"
    if f.audio_codec is not None and f.audio_profile not in REMUX_AUDIO_PROFILES:
        return f"AAC profile {f.audio_profile}: not one every browser decodes"
    return None


# --- derivatives -----------------------------------------------------------------------


def make_proxy(
    src: Path,
    dst: Path,
    *,
    input_sha256: str,
    progress: Callable[[float], None] | None = None,
) -> Recipe:
    """The browser proxy: a remux of the original when browsers play it (`proxy_plan`),
    else a transcode. Always an MP4 with moov first and no tags; the recipe records which
    method ran and why.

    `progress` is called with fractions that only grow, the last being 1.0 once dst is in
    place. Raises MediaError when ffmpeg fails; dst is then untouched.
    """
    facts = _proxy_facts(src)
    return _make_proxy(src, dst, facts, proxy_plan(facts), input_sha256, progress)


def transcode_proxy(
    src: Path,
    dst: Path,
    *,
    input_sha256: str,
    progress: Callable[[float], None] | None = None,
) -> Recipe:
    """The transcoded proxy whatever the clip is: H.264 (+AAC when there is audio) MP4, at
    most 720p, upright, +faststart. `make_proxy` chooses this only when a remux will not
    play; benchmarks and tests that need a transcode ask for it here.
    """
    facts = _proxy_facts(src)
    plan = proxy_plan(facts)
    if plan.method != "transcode":
        plan = ProxyPlan("transcode", "a transcode was asked for (a remux would play)")
    return _make_proxy(src, dst, facts, plan, input_sha256, progress)


def _proxy_facts(src: Path) -> MediaFacts:
    facts = probe(Path(src), decode=False)
    if facts.video_codec is None:
        raise MediaError(
            f"Cannot make a proxy of {Path(src).name}: {facts.error}",
            hint="the clip is kept as an original and flagged unplayable; no proxy is possible",
        )
    return facts


def _make_proxy(
    src: Path,
    dst: Path,
    facts: MediaFacts,
    plan: ProxyPlan,
    input_sha256: str,
    progress: Callable[[float], None] | None,
) -> Recipe:
    src, dst = Path(src), Path(dst)
    has_audio = facts.audio_codec is not None
    if plan.method == "remux":
        args, rule = remux_args(has_audio=has_audio), REMUX_LIMIT
    else:
        args, rule = proxy_args(has_audio=has_audio), TRANSCODE_LIMIT
    reader = _ProgressReader(facts.duration_ms, progress)
    limit = _limit(rule, src.stat().st_size, facts.duration_ms)
    output_sha256 = _write_atomically(src, dst, args, limit, "proxy", on_line=reader.feed)
    if progress is not None:
        progress(1.0)
    return Recipe(
        ffmpeg_version(), tuple(args), input_sha256, output_sha256, plan.method, plan.reason
    )


def remux_args(*, has_audio: bool) -> list[str]:
    """The remuxed proxy's ffmpeg argv with placeholders: the first video (and audio) stream
    copied as they are into an MP4 with moov first, without tags or chapters."""
    inp = ffmpeg.input(INPUT)
    streams = [inp["v:0"], inp["a:0"]] if has_audio else [inp["v:0"]]
    options: dict[str, Any] = {
        "c": "copy",
        "movflags": "+faststart",
        # A viewing copy carries no tags (GPS, officer names): the original keeps them.
        "map_metadata": -1,
        "map_chapters": -1,
        "f": "mp4",
    }
    out = ffmpeg.output(*streams, OUTPUT, **options).global_args(
        "-hide_banner", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1"
    )
    return list(out.compile(cmd="ffmpeg", overwrite_output=True))


PROXY_THREADS = 2


def proxy_args(*, has_audio: bool) -> list[str]:
    """The transcoded proxy's ffmpeg argv with placeholders: the recipe, exactly as run."""
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
