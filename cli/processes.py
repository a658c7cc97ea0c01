"""The long-running processes: `evidence serve` (the API), `evidence worker` (a Celery
worker, with --beat the scheduler) and `evidence up` (all three, the embedded profile). Each
is its process's composition root: it builds the API app or the Celery app from settings."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from cli.common import context, echo_bundle_key
from evidence.config import Settings, get_settings


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Run the API alone (production: run `evidence db upgrade` first)."""
    context()
    _run_api(host, port)


def worker(
    concurrency: Annotated[
        int, typer.Option(help="worker processes (a transcode takes a core)")
    ] = 0,
    beat: Annotated[bool, typer.Option(help="also run the scheduler in this process")] = False,
    hostname: Annotated[Optional[str], typer.Option(help="worker node name, e.g. w1@%h")] = None,
    queues: Annotated[
        str,
        typer.Option(help="queues to consume, comma-separated (ingest,media,bundles,maintenance)"),
    ] = "all",
) -> None:
    """Run a Celery worker alone (production: as many as you like, on many machines, each on
    the queues given; by default every queue)."""
    from evidence.queue import parse_queues

    try:
        consumed = parse_queues(queues)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queues") from None
    context()
    from workers.app import make_celery

    settings = get_settings()
    celery = make_celery(settings)  # this process's one app; it registers the tasks at start
    argv = [
        "worker",
        "--loglevel=INFO",
        f"--queues={','.join(consumed)}",
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    if beat:
        argv += ["--beat", f"--schedule={settings.data_dir.resolve()}/beat-schedule"]
    celery.worker_main(argv)


def ping_worker(
    hostname: Annotated[
        Optional[str], typer.Option(help="the worker's node name (default: celery@this host)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 5.0,
) -> None:
    """Ask a running worker, through the broker, whether it answers (a container's liveness
    probe: exit 0 if it did, 1 if not). The scheduler's worker answers too."""
    import socket

    from workers.app import make_celery

    node = hostname or f"celery@{socket.gethostname()}"
    celery = make_celery(get_settings())
    try:
        replies = celery.control.ping(destination=[node], timeout=timeout)
    except Exception as exc:  # a broker that does not answer is a failed probe, not a crash
        typer.echo(f"{node}: no answer: {exc}", err=True)
        raise typer.Exit(1) from None
    if not any(node in reply for reply in replies):
        typer.echo(f"{node}: no answer within {timeout:g} s", err=True)
        raise typer.Exit(1)
    typer.echo(f"{node}: pong")


def up(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """The embedded profile in one command: migrate, then run the API, a worker and the scheduler.

    SIGTERM or Ctrl-C stops everything it started, in order: the API stops taking requests
    and finishes those in flight, then the worker finishes its task (or, after a grace
    period, is stopped with it: the task is done again later), its scheduler with it."""
    from evidence.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url())
    ctx = context(settings)
    typer.echo(f"data directory: {settings.data_dir.resolve()}")
    typer.echo(f"ledger verifier key: {ctx.ledger.verifier_key}")
    echo_bundle_key(ctx)
    from evidence.outbox import resume_unfinished_uploads

    resumed = resume_unfinished_uploads(ctx)
    if resumed:
        typer.echo(f"resuming {resumed} upload(s) a stopped worker had not finished")
    stop = _StopRequest()
    stop.install()
    worker_proc = _start_worker_group()
    typer.echo(f"worker: pid {worker_proc.pid}")
    typer.echo(f"sign in: http://{host}:{port}/ui  (create users with: evidence admin create-user)")
    typer.echo(f"API: http://{host}:{port}/api/v1  (OpenAPI: http://{host}:{port}/openapi.json)")
    served = _served_settings(host, port).public_url
    if served != settings.public_url:
        # `evidence admin` runs in another process and cannot know this port: its enrolment
        # links would send people to the wrong address.
        typer.echo(
            f"note: `evidence admin` prints enrolment links for {settings.public_url}; "
            f"run it with EVIDENCE_PUBLIC_URL={served}",
            err=True,
        )
    try:
        if not stop.requested:
            _run_api(host, port)
    finally:
        _stop_worker_group(worker_proc, stop)
    typer.echo("stopped: API, worker and scheduler", err=True)


# How long `evidence up` lets its worker finish the task in hand once asked to stop; then
# the worker and everything under it (prefork children, ffmpeg) are killed. Tasks are
# acknowledged late and idempotent, so an aborted one is simply done again later.
WORKER_STOP_GRACE_SECONDS = 20.0


class _StopRequest:
    """SIGTERM and SIGINT while `up` runs: uvicorn takes them while it serves and hands them
    back when it has stopped; here they only ask for the ordered stop (a second one asks to
    hurry), instead of killing `up` and orphaning its worker."""

    def __init__(self) -> None:
        self.requested = 0

    def install(self) -> None:
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, _sig: int, _frame: object) -> None:
        self.requested += 1


def _start_worker_group():  # type: ignore[no-untyped-def]
    """The worker in a process group of its own, so that stopping it reaches every process
    under it, and so that the terminal's Ctrl-C reaches `up` alone (which stops it in order).
    If `up` itself is killed, the kernel sends the worker SIGTERM (PR_SET_PDEATHSIG)."""
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--concurrency=1", "--beat"],
        start_new_session=True,
        preexec_fn=_term_with_parent(),  # noqa: PLW1509
    )


def _term_with_parent():  # type: ignore[no-untyped-def]
    import signal

    from evidence.media.runner import _libc_prctl

    prctl = _libc_prctl()  # resolved here, in the parent: the child only makes the call
    if prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return hook


def _stop_worker_group(proc, stop: _StopRequest) -> None:  # type: ignore[no-untyped-def]
    """Warm shutdown of the worker, then, after the grace period or a second signal, SIGKILL
    to its whole process group: either way nothing it started outlives `up`."""
    import signal
    import subprocess
    import time

    asked = stop.requested
    if proc.poll() is None:
        typer.echo("stopping the worker (it finishes the task in hand)...", err=True)
        # The worker's main process alone: Celery's warm shutdown lets the task in hand
        # (and its ffmpeg) finish, and stops the scheduler.
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_GRACE_SECONDS
        while time.monotonic() < deadline and stop.requested == asked:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
    _signal_group(proc.pid, signal.SIGKILL)  # stragglers: prefork children, ffmpeg
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty: everything has stopped


def _run_api(host: str, port: int) -> None:
    import uvicorn

    from api.app import create_app

    # httptools (C) rather than h11 (pure Python): ingest parts are GiBs of request bodies,
    # and h11 spent ~20 CPU-seconds per GiB parsing them (bench/ingest.py).
    uvicorn.run(
        create_app(_served_settings(host, port)),
        host=host,
        port=port,
        log_level="info",
        http="httptools",
    )


def _served_settings(host: str, port: int) -> Settings:
    """Presigned URLs must point where this server listens, unless EVIDENCE_PUBLIC_URL says
    otherwise (a proxy or a DNS name in front of it)."""
    settings = get_settings()
    if "public_url" in settings.model_fields_set:
        return settings
    if host in ("0.0.0.0", "::"):
        typer.echo(
            "note: listening on all addresses; set EVIDENCE_PUBLIC_URL to the address "
            "docks use to reach this server",
            err=True,
        )
        host = "127.0.0.1"
    return settings.model_copy(update={"public_url": f"http://{host}:{port}"})
