"""Proxy benchmark: the proxy of a 60 s 1080p H.264/AAC clip (a remux) against the old recipe
(a bare ffmpeg transcode) and against `cp`.

A benchmark, not a test: nothing here asserts a timing. Every figure is measured in the same
run as its baselines, rounds interleaved, so read the ratios, not the absolute numbers, on a
noisy machine.

The clip is what a body-worn camera writes: 1080p30 H.264 High 4:2:0 with AAC-LC, at about
a camera's bitrate (`--mbps`, default 8 Mbit/s; lavfi testsrc2 + sine, libx264 veryfast in
ABR mode so the bytes are camera-like, not testsrc2-small), moov at the end. Timed, each
round in turn:

- `cp + fsync`: `cp` of the clip, then fsync of the copy (the proxy is fsynced too); the
  floor for anything that writes the clip's bytes once;
- `make_proxy`: what ingest runs (evidence/media/derivatives.py): probe, the remux (stream
  copy, +faststart: the bytes written twice), fsync, rename, SHA-256 of the output;
- `bare remux`: the remux recipe's argv run directly (the wrapper's overhead is the gap);
- `bare transcode`: the transcode recipe's argv (`proxy_args`, what every proxy was before)
  run directly: 720p libx264 veryfast CRF 23, 2 x264 threads, AAC 128k.

The source stays in the page cache throughout (it was just written), for every method alike.

    .venv/bin/python bench/proxy.py --quick   # a 10 s clip, 2 rounds: smoke run
    .venv/bin/python bench/proxy.py           # a 60 s clip, 3 rounds (1 transcode): the figures

Prints a table, progress goes to stderr, and the raw figures go to
bench/results/proxy-<timestamp>.json (git-ignored). Temporary files are removed on exit.
MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `evidence` and `tests.fixtures` without an install

from evidence.media.derivatives import Recipe, make_proxy, proxy_args, remux_args
from evidence.media.probe import probe
from evidence.media.runner import ffmpeg_binary, ffmpeg_version, sha256_file
from tests.fixtures.media import lavfi_inputs

MB = 1_000_000
T0 = time.perf_counter()


class BenchError(Exception):
    """Something the benchmark needs failed; the message says what."""


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def make_camera_clip(path: Path, seconds: int, mbps: int) -> None:
    """1080p30 H.264 High 4:2:0 + AAC-LC at about `mbps` Mbit/s, moov at the end."""
    rate = f"{mbps}M"
    argv = [
        ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-y",
        *lavfi_inputs("1920x1080", "30", seconds),
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", rate,
        "-x264-params", "nal-hrd=cbr:force-cfr=1", "-g", "30",
        "-c:a", "aac", "-b:a", "128k", "-shortest", str(path),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"making the clip failed: {done.stderr[-2000:]}")


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run_argv(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    src = tmp / "CAM1_0001.mp4"
    log(f"encoding a {args.seconds} s 1080p30 H.264/AAC clip at {args.mbps} Mbit/s")
    make_camera_clip(src, args.seconds, args.mbps)
    facts = probe(src, decode=False)
    sha = sha256_file(src)
    version = ffmpeg_version()
    outputs = {name: tmp / f"{name}.mp4" for name in ("cp", "proxy", "remux", "transcode")}
    bare_remux = Recipe(version, tuple(remux_args(has_audio=True)), sha, "").argv(
        src, outputs["remux"]
    )
    bare_transcode = Recipe(version, tuple(proxy_args(has_audio=True)), sha, "").argv(
        src, outputs["transcode"]
    )
    recipe: Recipe | None = None

    def cp() -> None:
        run_argv(["cp", str(src), str(outputs["cp"])])
        fsync(outputs["cp"])

    def proxy() -> None:
        nonlocal recipe
        recipe = make_proxy(src, outputs["proxy"], input_sha256=sha)

    # name: (what runs, rounds, the file it writes)
    runs: dict[str, tuple[Callable[[], None], int, Path]] = {
        "cp + fsync": (cp, args.rounds, outputs["cp"]),
        "make_proxy (remux)": (proxy, args.rounds, outputs["proxy"]),
        "bare remux": (lambda: run_argv(bare_remux), args.rounds, outputs["remux"]),
        "bare transcode (old recipe)": (
            lambda: run_argv(bare_transcode),
            args.transcode_rounds,
            outputs["transcode"],
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        # Interleaved, each round in the other order, so drift on a shared machine falls on
        # every method alike.
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            fn, rounds, out = runs[name]
            if r >= rounds:
                continue
            out.unlink(missing_ok=True)
            seconds[name].append(timed(fn))
            log(f"round {r + 1}: {name} {seconds[name][-1]:.2f} s")
    assert recipe is not None
    if sha256_file(outputs["remux"]) != recipe.output_sha256:
        raise BenchError("the bare remux and make_proxy wrote different bytes")
    proxy_facts = probe(outputs["proxy"], decode=False)
    return {
        "clip_seconds": args.seconds,
        "clip_bytes": src.stat().st_size,
        "clip": facts.as_dict(),
        "ffmpeg_version": version,
        "recipe": recipe.as_dict(),
        "proxy_bytes": outputs["proxy"].stat().st_size,
        "proxy": {"width": proxy_facts.width, "height": proxy_facts.height},
        "seconds": seconds,
    }


def render(res: dict[str, Any]) -> str:
    med = {name: median(values) for name, values in res["seconds"].items() if values}
    cp, proxy = med["cp + fsync"], med["make_proxy (remux)"]
    transcode = med["bare transcode (old recipe)"]
    clip_s, clip_mb = res["clip_seconds"], res["clip_bytes"] / MB
    lines = [
        f"clip: {clip_s} s 1080p30 H.264 {res['clip']['video_profile']} "
        f"{res['clip']['pixel_format']} + AAC {res['clip']['audio_profile']}, "
        f"{clip_mb:.1f} MB ({res['clip_bytes'] * 8 / clip_s / MB:.1f} Mbit/s); "
        f"ffmpeg {res['ffmpeg_version']}",
        f"make_proxy chose: {res['recipe']['method']} ({res['recipe']['reason']}); "
        f"proxy {res['proxy']['width']}x{res['proxy']['height']}, "
        f"{res['proxy_bytes'] / MB:.1f} MB",
        "",
        f"{'method':30} {'median s':>9} {'runs':>5} {'x real time':>12} {'MB/s':>8} "
        f"{'/ cp':>7} {'/ make_proxy':>13}",
    ]
    for name, s in med.items():
        lines.append(
            f"{name:30} {s:9.2f} {len(res['seconds'][name]):5d} {clip_s / s:12.1f} "
            f"{clip_mb / s:8.1f} {s / cp:7.2f} {s / proxy:13.2f}"
        )
    lines += [
        "",
        f"ratio make_proxy (remux) / cp + fsync: {proxy / cp:.2f}",
        f"ratio bare transcode / make_proxy (remux): {transcode / proxy:.1f}",
        f"ratio make_proxy / bare remux (the wrapper: probe, fsync, hash): "
        f"{proxy / med['bare remux']:.2f}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="clip length (default 60)")
    parser.add_argument("--mbps", type=int, default=8, help="clip bitrate (default 8 Mbit/s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of cp and remux")
    parser.add_argument("--transcode-rounds", type=int, default=1, help="rounds of transcode")
    parser.add_argument("--quick", action="store_true", help="a 10 s clip, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.transcode_rounds = 10, 2, 1
    args.transcode_rounds = min(args.transcode_rounds, args.rounds)
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    try:
        res = bench(args, tmp)
    except BenchError as exc:
        print(f"bench/proxy.py: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["at"] = dt.datetime.now(dt.UTC).isoformat()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"proxy-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(res, indent=2))
    print(render(res))
    print(f"\nraw figures: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
