"""What the commands share: the error exit, the store's context, key arguments."""

from __future__ import annotations

from pathlib import Path

import typer

from evidence.config import Settings, get_settings
from evidence.errors import EvidenceError


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def context(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    """The store's context, after checking the schema is current (a clear error if not)."""
    from evidence.context import Context
    from evidence.migrate import check_current

    settings = settings or get_settings()
    try:
        check_current(settings.resolved_database_url())
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    return Context(settings)


def read_key(key: str | None) -> str | None:
    if key and key.startswith("@"):
        return Path(key[1:]).read_text().strip()
    return key


def echo_bundle_key(ctx) -> None:  # type: ignore[no-untyped-def]
    from evidence.bundles import keys
    from evidence.bundles.service import signing_key_pem

    pem = signing_key_pem(ctx).encode()
    typer.echo(
        f"bundle signing key: {keys.key_id(pem)} "
        f"(PEM: {(ctx.settings.secrets_dir() / keys.PUBLIC_NAME).resolve()}; "
        "published at /api/v1/bundles/key, every key used at /api/v1/bundles/keys)"
    )
