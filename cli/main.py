"""The `evidence` command (Typer): its commands, one module per group. Commands are thin:
parse, call one service, print."""

from __future__ import annotations

import typer

from cli import admin, dock, processes, store, verify

app = typer.Typer(
    help="Open evidence store for body-worn video.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.app, name="admin")
app.add_typer(store.db_app, name="db")
app.add_typer(verify.app, name="verify")
app.add_typer(store.retention_app, name="retention")
app.add_typer(store.storage_app, name="storage")
app.command()(processes.serve)
app.command()(processes.worker)
app.command("ping-worker")(processes.ping_worker)
app.command()(processes.up)
app.command()(dock.dock)
app.command()(store.scrub)


def main() -> None:  # pragma: no cover - console entry point
    app()
