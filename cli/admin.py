"""`evidence admin`: users, devices, organisations, the bundle key and the camera register."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cli.common import context, echo_bundle_key, fail
from evidence.config import get_settings
from evidence.errors import EvidenceError

app = typer.Typer(help="Users, devices and the camera register.", no_args_is_help=True)


@app.command("create-user")
def create_user(
    name: str,
    role: Annotated[str, typer.Option(help="officer, evidence_officer, cps, auditor or admin")],
    officer_id: Annotated[
        Optional[str], typer.Option(help="collar number linking an officer to their clips")
    ] = None,
    full_name: Annotated[
        Optional[str],
        typer.Option(
            "--name", help="the person's name as documents print it, e.g. 'PC Jane Brown'"
        ),
    ] = None,
) -> None:
    """Create a user; the one-time enrolment link they choose their password with is
    printed alone on the last line. Only the very first account of an empty store, an
    admin, is given a password here (read from stdin, or prompted for on a terminal)."""
    from evidence.accounts.service import bootstrap_allowed, invite_user
    from evidence.accounts.service import create_user as create

    ctx = context()
    try:
        if role == "admin" and bootstrap_allowed(ctx):
            if sys.stdin.isatty():
                password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
            else:
                password = sys.stdin.readline().rstrip("\n")
            user = create(ctx, name, role, password, officer_id=officer_id, full_name=full_name)
            typer.echo(f"created the first administrator {user.username} id {user.id}")
            return
        new = invite_user(ctx, None, name, role, officer_id=officer_id, full_name=full_name)
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created user {name} ({new.user['role']}) id {new.user['id']}")
    typer.echo(
        f"enrolment link (shown once, valid until {new.expires_at}; give it to {name}, "
        "who opens it to choose their password):",
        err=True,
    )
    typer.echo(new.enrolment_url)


@app.command("set-email")
def set_email(
    name: str,
    address: Annotated[
        Optional[str], typer.Argument(help="the address; leave out to remove it")
    ] = None,
) -> None:
    """Set where a user's e-mail notifications go (docs/notifications.md), or remove it."""
    from evidence.accounts.service import set_email as set_address

    try:
        user = set_address(context(), None, name, address)
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"{name}: notifications go to {user['email']}"
        if user["email"]
        else f"{name}: no e-mail address, no notifications"
    )


@app.command("rotate-key")
def rotate_key(
    which: Annotated[str, typer.Argument(help="which key: bundle (the bundle-signing key)")],
) -> None:
    """Start signing bundles with a new key. The old key's validity ends now; its public half
    stays published (GET /api/v1/bundles/keys) so older bundles still verify, its private
    half is moved to keys/retired/ (docs/bundles.md says what to do with it)."""
    from evidence.bundles.service import rotate_signing_key

    if which != "bundle":
        raise fail(
            f"cannot rotate {which!r}: only the bundle key rotates this way "
            "(the ledger key is the log's identity: every checkpoint a court holds names it)"
        )
    ctx = context()
    rotation = rotate_signing_key(ctx, actor="system:cli")
    typer.echo(
        f"bundle key rotated at {rotation.at}: {rotation.old_key_id} -> {rotation.new_key_id}"
    )
    typer.echo(
        f"the old private key is at {rotation.retired_private_key}: it signs nothing more; "
        "keep it offline or destroy it under the force's key policy (docs/bundles.md)"
    )
    echo_bundle_key(ctx)


@app.command("create-device")
def create_device(
    name: str,
    kind: Annotated[str, typer.Option(help="dock or camera")] = "dock",
) -> None:
    """Create a device; its key is printed once, alone on the last line."""
    from evidence.accounts.service import create_device as create

    try:
        new = create(context(), None, name, kind=kind)
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {new.device.kind} {new.device.name} id {new.device.id}")
    typer.echo("device key (shown once, store it on the dock now):", err=True)
    typer.echo(new.key)


@app.command("create-organisation")
def create_organisation(
    name: str,
    kind: Annotated[
        str,
        typer.Option(help="cps, police_force, local_authority, other_agency or defence_firm"),
    ],
) -> None:
    """Add an organisation evidence may be disclosed to (docs/disclosure.md)."""
    from evidence.accounts import organisations

    try:
        org = organisations.create_organisation(context(), None, name, kind)
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created organisation {org['name']} ({org['kind']}) id {org['id']}")


@app.command("set-organisation")
def set_organisation(
    username: str,
    organisation_id: Annotated[
        Optional[str], typer.Argument(help="the organisation's id; leave out for none")
    ] = None,
) -> None:
    """Put a person in an organisation: every share with it reaches them from now on."""
    from evidence.accounts import organisations

    try:
        organisations.set_member(context(), None, username, organisation_id)
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{username}: organisation {organisation_id or 'none'}")


@app.command("register-camera")
def register_camera(
    serial: str,
    make: Annotated[Optional[str], typer.Option(help="e.g. Axon")] = None,
    model: Annotated[Optional[str], typer.Option(help="e.g. Body 3")] = None,
) -> None:
    """Add a camera to the register (docs/cameras.md)."""
    from evidence.cameras import service

    try:
        camera = service.register_camera(context(), None, serial, make=make, model=model)
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"registered camera {camera['serial']}")


@app.command("assign-camera")
def assign_camera(
    serial: str,
    officer_id: Annotated[str, typer.Option(help="the officer's collar number")],
    from_: Annotated[
        Optional[str],
        typer.Option("--from", help="start, ISO 8601 (default: now; no zone means UTC)"),
    ] = None,
    to: Annotated[
        Optional[str],
        typer.Option(
            help="end, ISO 8601: a pool checkout for a shift; without it, a personal issue"
        ),
    ] = None,
) -> None:
    """Issue a camera to an officer: personal (no --to) or a pool checkout (--to)."""
    from evidence.cameras import service

    kind = "pool" if to is not None else "personal"
    try:
        a = service.assign(
            context(),
            None,
            serial,
            officer_id=officer_id,
            kind=kind,
            starts_at=_iso_time(from_, "--from"),
            ends_at=_iso_time(to, "--to"),
        )
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"assigned camera {a['camera_serial']} to officer {a['officer_id']}: "
        f"{a['describe']} (assignment {a['id']})"
    )


def _iso_time(text: str | None, option: str):  # type: ignore[no-untyped-def]
    """ISO 8601 text as an aware datetime; without a zone it is UTC, as the register keeps."""
    import datetime as dt

    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"{option} must be an ISO 8601 time, e.g. 2026-12-01T07:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@app.command("cameras")
def cameras() -> None:
    """The register: every camera, its state and who holds it now."""
    from evidence.cameras import service

    try:
        items = service.list_cameras(context(), None)
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    if not items:
        typer.echo("no cameras in the register (evidence admin register-camera SERIAL)")
    for c in items:
        what = " ".join(x for x in (c["make"], c["model"]) if x) or "unknown make"
        holder = c["holder"]
        held = (
            f"held by {holder['officer_id']} ({holder['describe']})" if holder else "not assigned"
        )
        typer.echo(f"{c['serial']}\t{what}\t{c['state']}\t{held}")


@app.command("enable-totp")
def enable_totp(name: str) -> None:
    """Give a user a new TOTP secret (two-factor sign-in); the secret is printed once."""
    from evidence.identity.totp import set_totp

    try:
        enrolment = set_totp(context(), name)
    except EvidenceError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"two-factor sign-in enabled for {name}; from now on sign-in needs a code")
    typer.echo(
        "add this to the user's authenticator app (shown once; a QR code of the "
        "otpauth:// line works too):",
        err=True,
    )
    typer.echo(f"secret: {enrolment.secret}")
    typer.echo(enrolment.uri)


@app.command("init-keys")
def init_keys(
    namespace: Annotated[str, typer.Option(help="the Kubernetes namespace of the command")] = (
        "evidence"
    ),
) -> None:
    """Make every signing key the store needs (ledger, sign-in tokens, viewing links, bundles)
    in EVIDENCE_DATA_DIR/keys, keeping any that exist, and print the `kubectl create secret`
    command that loads them into the cluster (docs/deploy.md, "Secrets"). Needs no database.
    Run it once, on a trusted machine; back the directory up, encrypted (docs/backup.md)."""
    import shlex

    from evidence.bundles.keys import load_or_create_bundle_key
    from evidence.identity.state import jwt_key_path, load_or_create_jwt_key
    from evidence.ledger.keys import load_or_create_signer
    from evidence.viewings import load_or_create_key

    settings = get_settings()
    keys = settings.secrets_dir()
    load_or_create_signer(settings.resolved_ledger_key_path(), settings.ledger_origin)
    load_or_create_jwt_key(jwt_key_path(settings))
    load_or_create_key(keys)
    load_or_create_bundle_key(keys)
    files = sorted(p for p in keys.iterdir() if p.is_file() and not p.name.startswith("."))
    typer.echo(f"keys in {keys}: {', '.join(p.name for p in files)}", err=True)
    typer.echo("load them into the cluster (once; never apply a Secret file over them):", err=True)
    words = ["kubectl", "-n", namespace, "create", "secret", "generic", "evidence-keys"]
    words += [f"--from-file={p.name}={p}" for p in files]
    typer.echo(" ".join(shlex.quote(w) for w in words))
