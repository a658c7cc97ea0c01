"""`evidence verify`: offline verification of the ledger and of court bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import fail, read_key
from evidence.config import get_settings
from evidence.errors import EvidenceError

app = typer.Typer(help="Offline verification anyone can run.", no_args_is_help=True)


@app.command("ledger")
def verify_ledger_cmd(
    api: Annotated[Optional[str], typer.Option(help="base URL of an evidence API")] = None,
    db: Annotated[Optional[str], typer.Option(help="database URL to read directly")] = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(help="a checkpoint saved earlier: prove the log only grew since"),
    ] = None,
    key: Annotated[Optional[str], typer.Option(help="the verifier key string, or @FILE")] = None,
    token: Annotated[
        Optional[str], typer.Option(envvar="EVIDENCE_TOKEN", help="bearer token for --api")
    ] = None,
) -> None:
    """Recompute every leaf, the chain and the root; check signatures and consistency."""
    import httpx

    from evidence.verify.ledger import ApiSource, verify_ledger
    from evidence.verify.ledger_db import DatabaseSource
    from evidence.verify.report import Report

    if (api is None) == (db is None):
        raise fail("give exactly one of --api URL or --db URL", 2)
    pinned = read_key(key)
    if db is not None and pinned is None:
        pub = get_settings().resolved_ledger_key_path().with_suffix(".pub")
        if pub.exists():
            pinned = pub.read_text().strip()
    source = ApiSource(api, token) if api else DatabaseSource(db, pinned)  # type: ignore[arg-type]
    saved = checkpoint.read_text() if checkpoint else None
    report = Report(echo=typer.echo)
    try:
        verify_ledger(source, report, key=pinned, saved_checkpoint=saved)
    except EvidenceError as exc:
        report.add("ledger readable", False, str(exc))
    except (OSError, httpx.HTTPError) as exc:
        report.add("ledger readable", False, f"{exc}; check the URL and that the server is up")
    if report.ok:
        typer.echo("OK: the ledger verifies")
        return
    first = report.failures[0] if report.failures else None
    raise fail(
        f"ledger verification FAILED: {first.name}: {first.detail}" if first else "nothing checked"
    )


@app.command("bundle")
def verify_bundle_cmd(
    file: Annotated[Path, typer.Argument(help="the bundle ZIP")],
    key: Annotated[
        Optional[str], typer.Option(help="the force's ledger verifier key, or @FILE")
    ] = None,
    bundle_key: Annotated[
        Optional[Path], typer.Option(help="the force's published bundle-signing key (PEM)")
    ] = None,
    tsa_ca: Annotated[
        Optional[Path],
        typer.Option(help="the TSA's root certificate (PEM), to check ledger/checkpoint.tsr"),
    ] = None,
) -> None:
    """Check a court bundle offline: hashes, signatures, inclusion proofs, exhibits."""
    from evidence.verify.bundle import verify_bundle
    from evidence.verify.report import Report

    report = Report(echo=typer.echo)
    verify_bundle(
        file,
        report,
        ledger_key=read_key(key),
        bundle_key_pem=bundle_key.read_bytes() if bundle_key else None,
        tsa_ca_pem=tsa_ca.read_bytes() if tsa_ca else None,
    )
    if report.ok:
        typer.echo("OK: the bundle verifies")
        return
    first = report.failures[0] if report.failures else None
    raise fail(
        f"bundle verification FAILED: {first.name}: {first.detail}" if first else "nothing checked"
    )
