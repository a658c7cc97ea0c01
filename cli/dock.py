"""`evidence dock`: the docking agent (evidence_dock/) from the server's command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def dock(
    directory: Annotated[
        Optional[Path],
        typer.Argument(help="the docked camera's storage (recursively); or use --watch"),
    ] = None,
    api: Annotated[
        str,
        typer.Option(
            envvar="EVIDENCE_API_URL", help="the evidence API's base URL, e.g. http://host:8000"
        ),
    ] = "",
    device_key: Annotated[
        str,
        typer.Option(
            envvar="EVIDENCE_DEVICE_KEY",
            show_envvar=True,
            help="this dock's key (prefer the environment variable: arguments show in "
            "process lists)",
        ),
    ] = "",
    jobs: Annotated[int, typer.Option(min=1, max=32, help="clips uploaded in parallel")] = 2,
    retries: Annotated[
        int, typer.Option(min=1, max=20, help="attempts per request before a clip fails")
    ] = 5,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="seconds to wait for the server to verify the clips sent (0: do not "
            "wait; unverified clips are confirmed by the next run)",
        ),
    ] = 600.0,
    wait_for_api: Annotated[
        float,
        typer.Option(
            min=0,
            help="seconds to wait out an API or object store that is down, restarting "
            "or out of storage before a clip fails",
        ),
    ] = 120.0,
    state_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="where the agent keeps its state on this machine (never on the camera); default "
            "$EVIDENCE_DOCK_STATE_DIR, else $XDG_STATE_HOME/evidence-dock"
        ),
    ] = None,
    clear_after_verified: Annotated[
        bool,
        typer.Option(help="delete each clip from the camera once the server verified its original"),
    ] = False,
    watch: Annotated[
        Optional[Path],
        typer.Option(
            help="run until stopped, docking each camera mounted (or folder) under this root"
        ),
    ] = None,
    poll: Annotated[float, typer.Option(help="--watch: seconds between looks")] = 2.0,
    settle: Annotated[
        float, typer.Option(help="--watch: seconds a new camera must stay unchanged before docking")
    ] = 3.0,
    retry_every: Annotated[
        float, typer.Option(help="--watch: seconds between attempts at a camera that failed")
    ] = 60.0,
) -> None:
    """Upload every clip in DIRECTORY (or of each camera under --watch ROOT): resumable,
    idempotent; exit 1 if any clip failed. The same agent as the `evidence-dock` command."""
    from evidence_dock.cli import main as dock_main

    argv = [str(directory)] if directory is not None else []
    argv += [
        "--api",
        api,
        "--device-key",
        device_key,
        "--jobs",
        str(jobs),
        "--retries",
        str(retries),
        "--wait",
        str(wait),
        "--wait-for-api",
        str(wait_for_api),
        "--poll",
        str(poll),
        "--settle",
        str(settle),
        "--retry-every",
        str(retry_every),
    ]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    if clear_after_verified:
        argv.append("--clear-after-verified")
    if watch is not None:
        argv += ["--watch", str(watch)]
    try:
        code = dock_main(argv)
    except SystemExit as exc:  # argparse's exit 2, its message already printed
        code = exc.code if isinstance(exc.code, int) else 2
    if code:
        raise typer.Exit(code)
