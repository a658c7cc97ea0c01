"""`evidence-dock`: the docking agent's command line (argparse: standard library only).

    evidence-dock DIR --api URL                  dock one directory (a camera's storage) once
    evidence-dock --watch ROOT --api URL         dock every camera that appears under ROOT

The device key comes from --device-key or EVIDENCE_DEVICE_KEY (prefer the variable: arguments
show in process lists), the API from --api or EVIDENCE_API_URL. Exit codes: 0 all done (or a
watch stopped by SIGTERM/SIGINT), 1 a clip failed or the API could not be reached, 2 bad
arguments, 130 interrupted. Errors are one line with the server's own words, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from evidence_dock.agent import DockError, RetryPolicy, UsageError, check_args, run


def _bounded(
    kind: Callable[[str], float], low: float, high: float | None = None
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < low or (high is not None and value > high):
            limit = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {limit}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evidence-dock",
        description="Upload the clips of docked body-worn cameras to the evidence store: "
        "resumable, idempotent, never writing to the camera (docs/dock.md).",
    )
    p.add_argument(
        "directory",
        nargs="?",
        type=Path,
        help="a docked camera's storage, docked once (recursively)",
    )
    p.add_argument(
        "--watch",
        metavar="ROOT",
        type=Path,
        help="run until stopped, docking each camera mounted (or folder) under ROOT",
    )
    p.add_argument(
        "--api",
        default=os.environ.get("EVIDENCE_API_URL"),
        help="the evidence API's base URL, e.g. https://evidence.example "
        "(default: $EVIDENCE_API_URL)",
    )
    p.add_argument(
        "--device-key",
        default=os.environ.get("EVIDENCE_DEVICE_KEY", ""),
        help="this dock's key (default: $EVIDENCE_DEVICE_KEY; prefer the variable: "
        "arguments show in process lists)",
    )
    p.add_argument(
        "--jobs",
        type=_bounded(int, 1, 32),
        default=2,
        help="clips uploaded in parallel (default 2)",
    )
    p.add_argument(
        "--retries",
        type=_bounded(int, 1, 20),
        default=5,
        help="attempts per request before a clip fails (default 5)",
    )
    p.add_argument(
        "--wait",
        type=_bounded(float, 0),
        default=600.0,
        help="seconds to wait for the server to verify the clips sent (default 600; "
        "0: do not wait, the next run confirms them)",
    )
    p.add_argument(
        "--wait-for-api",
        type=_bounded(float, 0),
        default=120.0,
        help="seconds to wait out an API or object store that is down, restarting "
        "or out of storage before a clip fails (default 120)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the agent keeps its per-clip state, on this machine (default: "
        "$EVIDENCE_DOCK_STATE_DIR, else $XDG_STATE_HOME/evidence-dock, else "
        "~/.local/state/evidence-dock)",
    )
    p.add_argument(
        "--clear-after-verified",
        action="store_true",
        help="delete each clip from the camera once the server has verified its "
        "original (never on upload alone)",
    )
    p.add_argument(
        "--poll",
        type=_bounded(float, 0.05),
        default=2.0,
        help="--watch: seconds between looks for cameras (default 2)",
    )
    p.add_argument(
        "--settle",
        type=_bounded(float, 0),
        default=3.0,
        help="--watch: seconds a new camera's files must stay unchanged before it "
        "is docked (default 3)",
    )
    p.add_argument(
        "--retry-every",
        type=_bounded(float, 0),
        default=60.0,
        help="--watch: seconds between attempts at a camera that failed (default 60)",
    )
    return p


def check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Errors argparse cannot see by itself; each exits 2 with its message."""
    if (args.directory is None) == (args.watch is None):
        p.error("give either DIR (dock it once) or --watch ROOT (dock cameras as they come)")
    if not args.api:
        p.error("no API: give --api URL or set EVIDENCE_API_URL")
    if args.watch is not None and not args.watch.is_dir():
        p.error(f"--watch {args.watch}: not a directory")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    check(p, args)
    out = out if out is not None else sys.stderr
    retry = RetryPolicy(attempts=args.retries, verify_wait=args.wait, outage=args.wait_for_api)
    try:
        if args.watch is not None:
            return _watch(args, retry, out)
        summary = run(
            args.directory,
            args.api,
            args.device_key,
            jobs=args.jobs,
            retry=retry,
            out=out,
            state_dir=args.state_dir,
            clear_after_verified=args.clear_after_verified,
        )
    except UsageError as exc:
        print(f"evidence-dock: error: {exc}", file=out, flush=True)
        return 2
    except DockError as exc:
        print(f"evidence-dock: error: {exc}", file=out, flush=True)
        return 1
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1


def _watch(args: argparse.Namespace, retry: RetryPolicy, out: TextIO) -> int:
    from evidence_dock.watch import Watcher

    check_args(args.watch, args.api, args.device_key, args.jobs)  # UsageError: exit 2 now
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        # Only an event: the current file is abandoned at its next chunk (resumable), the
        # loop ends, and the exit is 0 because stopping a service is not a failure.
        print(
            f"{signal.Signals(signum).name}: stopping after the current file", file=out, flush=True
        )
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopping)
    watcher = Watcher(
        args.watch,
        args.api,
        args.device_key,
        out=out,
        stop=stop,
        jobs=args.jobs,
        retry=retry,
        state_dir=args.state_dir,
        clear_after_verified=args.clear_after_verified,
        poll=args.poll,
        settle=args.settle,
        retry_every=args.retry_every,
    )
    watcher.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
