"""Requesting, building and downloading court bundles.

A request pins the ledger size (right after its own `bundle.requested` entry); the worker
builds from that pinned state, so a retried or repeated build writes the same manifest.json.
The build time goes into the `bundle.exported` ledger entry, never into the bundle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evidence import audit, clock, notifications, outbox, queue
from evidence.access import (
    RECIPIENT_ROLES,
    Principal,
    active_shares_of,
    check_reason,
    client_address,
    recipient_context,
    require,
    require_case_footage,
    visible_case,
)
from evidence.bundles import keys, layout
from evidence.bundles import manifest as mf
from evidence.bundles.keys import load_or_create_bundle_key, public_pem
from evidence.bundles.models import Bundle, BundleState
from evidence.bundles.statement import render_statement, render_verify_txt
from evidence.bundles.zipwriter import add_bytes, add_stream
from evidence.cases.models import Case, CaseItem, Share
from evidence.clips.derivatives import WORKER
from evidence.clips.models import Clip, Derivative
from evidence.context import Context
from evidence.errors import AccessDenied, Disposed, InvalidInput, NotFound
from evidence.storage import ObjectInfo, ObjectStore, requested_range

ProgressFn = Callable[[int], None] | None


def bundle_dict(b: Bundle) -> dict[str, Any]:
    return {
        "id": b.id,
        "case_id": b.case_id,
        "state": b.state,
        "progress": b.progress,
        "sha256": b.sha256,
        "size": b.size,
        "options": b.options,
        "error": b.error,
        "created_at": clock.rfc3339(b.created_at),
        "finished_at": clock.rfc3339(b.finished_at) if b.finished_at else None,
    }


# A bundle that is queued, being built or ready can stand for a new request; a failed or
# withdrawn one cannot.
REUSABLE = (BundleState.queued.value, BundleState.building.value, BundleState.ready.value)


def request_bundle(
    ctx: Context,
    principal: Principal,
    case_id: str,
    include_proxies: bool = False,
    include_redactions: bool = False,
    share_id: str | None = None,
) -> dict[str, Any]:
    """Queue a bundle of the case, or hand back the one already made of the same inputs
    (`"reused": true`): ten requests for an unchanged case store one copy of its footage.
    Either way the request is a `bundle.requested` entry naming the bundle it got.
    `share_id`: a bundle for that share's recipient (its exhibits; redacted copies in place
    of the originals it withholds; docs/disclosure.md)."""
    require(principal, "bundles.request")
    options: dict[str, Any] = {
        "include_proxies": include_proxies,
        "include_redactions": include_redactions,
    }
    with ctx.db.write_session() as s:
        case = visible_case(s, principal, case_id)
        if share_id is not None:
            share = s.get(Share, share_id)
            if share is None or share.case_id != case.id:
                raise NotFound(f"no share {share_id} of this case")
            if share.revoked_at is not None or share.expires_at <= clock.now():
                raise InvalidInput(f"share {share_id} has ended: a bundle is for a live share")
            options["share"] = share_id
        if not s.scalar(select(CaseItem.id).where(CaseItem.case_id == case.id).limit(1)):
            raise InvalidInput("the case has no exhibits to bundle")
        # One request per case at a time decides between reuse and a new bundle (PostgreSQL:
        # a row lock; SQLite's writers are serial already).
        s.execute(select(Case.id).where(Case.id == case.id).with_for_update())
        inputs = bundle_inputs(s, case, options)
        bundle = s.scalar(
            select(Bundle)
            .where(
                Bundle.case_id == case.id,
                Bundle.inputs_sha256 == inputs,
                Bundle.state.in_(REUSABLE),
            )
            .order_by(Bundle.created_at.desc(), Bundle.id)
            .limit(1)
        )
        reused = bundle is not None
        if bundle is None:
            bundle = Bundle(
                case_id=case.id,
                requested_by=principal.user_id,
                state=BundleState.queued.value,
                progress=0,
                key="",
                tree_size=0,
                options=options,
                inputs_sha256=inputs,
                created_at=clock.now(),
            )
            s.add(bundle)
            s.flush()
            bundle.key = f"bundles/{bundle.id}.zip"
        appended = ctx.ledger.append_in(
            s,
            "bundle.requested",
            actor=principal.actor,
            subject={
                "bundle": bundle.id,
                "case": case.id,
                "user": principal.user_id,
                **({"share": share_id} if share_id else {}),
            },
            include_proxies=include_proxies,
            include_redactions=include_redactions,
            **({"share": share_id} if share_id else {}),
            **({"reused": True} if reused else {}),
        )
        if not reused:
            bundle.tree_size = appended.index + 1  # pinned: the log as it stands with this request
            outbox.add(s, queue.BUILD_BUNDLE, bundle.id)
        return {**bundle_dict(bundle), "reused": reused}


def bundle_inputs(s: Session, case: Case, options: dict[str, bool]) -> str:
    """SHA-256 of everything a bundle's evidence is made of: the case, the options, and each
    exhibit's reference, original, state and derivatives. Not the ledger's later entries about
    viewings and downloads: those are the record of access, not new evidence, so they do not
    call for another copy of the footage (a new exhibit, reference, derivative or disposal does)."""
    exhibits = s.execute(
        select(CaseItem.clip_id, CaseItem.exhibit_ref, Clip.sha256, Clip.state)
        .join(Clip, Clip.id == CaseItem.clip_id)
        .where(CaseItem.case_id == case.id)
        .order_by(CaseItem.clip_id)
    ).all()
    derivatives = s.execute(
        select(Derivative.clip_id, Derivative.kind, Derivative.sha256)
        .where(Derivative.clip_id.in_([e.clip_id for e in exhibits]))
        .order_by(Derivative.clip_id, Derivative.kind)
    ).all()
    inputs = {
        "case": [case.id, case.title, case.reference],
        "options": options,
        "exhibits": [list(e) for e in exhibits],
        "derivatives": [list(d) for d in derivatives],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def build_bundle(ctx: Context, bundle_id: str, progress: ProgressFn = None) -> str:
    """The worker's job; idempotent: a ready bundle is left alone, a half-built one redone."""
    with ctx.db.write_session() as s:
        b = s.get(Bundle, bundle_id)
        if b is None:
            raise NotFound(f"no bundle {bundle_id}")
        if b.state in (BundleState.ready, BundleState.disposed):
            return b.state
        b.state, b.started_at, b.error = BundleState.building.value, clock.now(), None
        case_id, tree_size, key = b.case_id, b.tree_size, b.key
        include_proxies = bool((b.options or {}).get("include_proxies"))
        include_redactions = bool((b.options or {}).get("include_redactions"))
        share_id = (b.options or {}).get("share")
    try:
        plan = mf.plan_bundle(
            ctx, case_id, tree_size, include_proxies, include_redactions, share_id=share_id
        )
        sha256, size = _write_and_store(ctx, bundle_id, key, plan, progress)
    except Exception as exc:
        _fail(ctx, bundle_id, f"{type(exc).__name__}: {exc}")
        raise
    with ctx.db.write_session() as s:
        b = s.get(Bundle, bundle_id)
        assert b is not None
        if b.state == BundleState.ready:
            return b.state  # a concurrent run finished first: one bundle.exported entry
        if b.state == BundleState.disposed:
            # An exhibit was disposed of while this was being built: the copy may not stay.
            ctx.store.delete(key)
            return b.state
        b.state, b.progress, b.sha256, b.size = BundleState.ready.value, 100, sha256, size
        b.finished_at = clock.now()
        ctx.ledger.append_in(
            s,
            "bundle.exported",
            actor=WORKER,
            subject={
                "bundle": b.id,
                "case": case_id,
                "clip": [e["clip_id"] for e in plan.manifest["exhibits"]],
            },
            sha256=sha256,
            size=size,
            key=key,
            tree_size=tree_size,
            manifest_sha256=plan.manifest_sha256,
            built_at=clock.rfc3339(b.finished_at),
        )
        if b.requested_by:  # whoever asked for it is told by e-mail, if the store sends any
            notifications.notify_in(
                s, ctx.settings, notifications.BUNDLE_READY, b.requested_by, case_id=case_id
            )
    if progress:
        progress(100)
    return BundleState.ready.value


def _fail(ctx: Context, bundle_id: str, error: str) -> None:
    """Record a failed build, unless the bundle was withdrawn meanwhile (that says more)."""
    with ctx.db.write_session() as s:
        b = s.get(Bundle, bundle_id)
        if b is not None and b.state != BundleState.disposed:
            b.state, b.error = BundleState.failed.value, error


def _set(ctx: Context, bundle_id: str, **values: Any) -> None:
    with ctx.db.write_session() as s:
        b = s.get(Bundle, bundle_id)
        if b is not None:
            for k, v in values.items():
                setattr(b, k, v)


def _write_and_store(
    ctx: Context, bundle_id: str, key: str, plan: mf.Plan, progress: ProgressFn
) -> tuple[str, int]:
    """Write the ZIP straight into its place in the store (`store.writing`): each original
    and proxy read once and hashed as it is copied, the ZIP's own SHA-256 computed as it is
    written, no temporary copy to hash or upload again. Nothing appears at `key` unless the
    whole ZIP was written; a rebuild replaces it with the same bytes."""
    token = _checkpoint_token(ctx, plan)
    tsa_ca = _tsa_ca(ctx) if token is not None else None
    signing_key = load_or_create_bundle_key(ctx.settings.secrets_dir())
    with ctx.store.writing(key) as out:
        write_zip(
            out,
            plan,
            signing_key,
            ctx.store,
            token=token,
            tsa_ca=tsa_ca,
            on_progress=lambda pct: _report(ctx, bundle_id, pct, progress),
        )
    return out.sha256, out.size


def _report(ctx: Context, bundle_id: str, pct: int, progress: ProgressFn) -> None:
    _set(ctx, bundle_id, progress=pct)
    if progress:
        progress(pct)


def _checkpoint_token(ctx: Context, plan: mf.Plan) -> bytes | None:
    """The RFC 3161 reply over ledger/checkpoint.txt (evidence.timestamps), when a TSA exists.

    A token already stored for the pinned size is used as is (so a rebuild is identical);
    otherwise, with a TSA configured, the pinned checkpoint is stamped now. A TSA that cannot
    be reached fails the build (the task retries): a bundle made while the TSA is down must
    not silently lack the token that a rebuild would then have.
    """
    from evidence import timestamps

    size = plan.manifest["ledger"]["tree_size"]
    token = timestamps.token_for(ctx, size)
    if token is None and ctx.settings.tsa_url:
        stamp = timestamps.timestamp_checkpoint(ctx, size)
        token = stamp.token if stamp else None
    return token


def _tsa_ca(ctx: Context) -> bytes | None:
    """The configured TSA's CA chain (EVIDENCE_TSA_CA_FILE), shipped as ledger/tsa-ca.pem for
    convenience; VERIFY.txt tells the court to check it against the TSA's published root."""
    path = ctx.settings.tsa_ca_file
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read EVIDENCE_TSA_CA_FILE {path}: {exc}") from exc


def proof_script() -> bytes:
    """verify_proofs.py as shipped in every bundle: this package's copy, byte for byte, so a
    rebuild carries the same file (and the project's tests run the same code a court runs)."""
    return (Path(__file__).parent / "verify_proofs.py").read_bytes()


def write_zip(
    f: Any,
    plan: mf.Plan,
    key: Ed25519PrivateKey,
    store: ObjectStore,
    *,
    token: bytes | None = None,
    tsa_ca: bytes | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Every member in a fixed order with fixed timestamps; media streamed, hashes checked."""
    statement_html, statement_pdf = render_statement(plan)
    small: dict[str, bytes] = {
        layout.SIGNING_KEY: public_pem(key.public_key()),
        layout.CHECKPOINT: plan.checkpoint.encode(),
        layout.LEDGER_KEY: (plan.ledger_key + "\n").encode(),
        layout.ENTRIES: mf.entries_jsonl(plan.entry_lines),
        layout.STATEMENT_HTML: statement_html,
        layout.STATEMENT_PDF: statement_pdf,
        layout.VERIFY_TXT: render_verify_txt(plan, token is not None, tsa_ca is not None),
        layout.PROOF_SCRIPT: proof_script(),
    }
    if token is not None:
        small[layout.TOKEN] = token
        if tsa_ca is not None:
            small[layout.TSA_CA] = tsa_ca
    files = [mf.file_entry(p, d) for p, d in small.items()]
    files += [{"path": m.path, "sha256": m.sha256, "size": m.size} for m in plan.media]
    plan.manifest["files"] = sorted(files, key=lambda e: e["path"])
    manifest = mf.render_manifest(plan.manifest)
    plan.manifest_sha256 = mf.file_entry(layout.MANIFEST, manifest)["sha256"]
    small[layout.MANIFEST] = manifest
    small[layout.SIGNATURE] = key.sign(manifest)
    hashes = {p: mf.file_entry(p, d)["sha256"] for p, d in small.items()}
    hashes.update({m.path: m.sha256 for m in plan.media})
    small[layout.SUMS] = mf.sha256sums(hashes)

    store_total = sum(m.size for m in plan.media) or 1
    done = [0, -1]

    def tick(n: int) -> None:
        done[0] += n
        pct = min(99, done[0] * 100 // store_total)
        if on_progress and pct // 5 != done[1] // 5:  # a database write per 5%, not per chunk
            done[1] = pct
            on_progress(pct)

    with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
        for name in (
            layout.MANIFEST,
            layout.SIGNATURE,
            layout.SIGNING_KEY,
            layout.SUMS,
            layout.VERIFY_TXT,
        ):
            add_bytes(zf, name, small.pop(name))
        for name in sorted(small):
            add_bytes(zf, name, small[name])
        for m in plan.media:
            add_stream(zf, m.path, store.open(m.key), m.size, m.sha256, tick)


# -- the published keys ---------------------------------------------------------------------


def signing_key_pem(ctx: Context) -> str:
    """The bundle-signing public key in force now (PEM): what the next bundle carries."""
    return keys.current_public_pem(ctx.settings.secrets_dir()).decode()


def published_keys(ctx: Context) -> list[dict[str, Any]]:
    """Every bundle key the force has used, with its validity period, oldest first."""
    return keys.published_keys(ctx.settings.secrets_dir())


def rotate_signing_key(ctx: Context, actor: str) -> keys.Rotation:
    """A new bundle key from now on; the old one's validity ends and the rotation is a
    `key.rotated` ledger entry, so the key history is in the tamper-evident log too."""
    rotation = keys.rotate_bundle_key(ctx.settings.secrets_dir())
    ctx.ledger.append(
        "key.rotated",
        actor=actor,
        subject={"key": "bundle"},
        key="bundle",
        old_key_id=rotation.old_key_id,
        new_key_id=rotation.new_key_id,
        valid_from=rotation.at,
    )
    return rotation


# -- reading and downloading ---------------------------------------------------------------


def _readable(ctx: Context, principal: Principal, bundle_id: str) -> Bundle:
    """The bundle if its case is visible to `principal` (CPS: an active share)."""
    require(principal, "bundles.read")
    with ctx.db.session() as s:
        b = s.get(Bundle, bundle_id)
        if b is None:
            raise NotFound(f"no bundle {bundle_id} that you can see")
        try:
            visible_case(s, principal, b.case_id)
        except NotFound:
            raise NotFound(f"no bundle {bundle_id} that you can see") from None
        s.expunge(b)
        return b


def get_bundle(ctx: Context, principal: Principal, bundle_id: str) -> dict[str, Any]:
    return bundle_dict(_readable(ctx, principal, bundle_id))


def bundles_of(ctx: Context, principal: Principal, case_id: str) -> list[dict[str, Any]]:
    """A case's bundles, newest first, for whoever may read its bundles (CPS: an active share);
    `may_download`: whether `principal` may take them (footage access to every exhibit)."""
    require(principal, "bundles.read")
    with ctx.db.session() as s:
        visible_case(s, principal, case_id)
        rows = s.scalars(
            select(Bundle)
            .where(Bundle.case_id == case_id)
            .order_by(Bundle.created_at.desc(), Bundle.id)
        ).all()
        return [{**bundle_dict(b), "may_download": _may_take(s, principal, b)} for b in rows]


def _may_take(s: Session, principal: Principal, b: Bundle) -> bool:
    try:
        require_bundle_footage(s, principal, b)
    except AccessDenied:
        return False
    return True


def require_bundle_footage(s: Session, principal: Principal, b: Bundle) -> None:
    """A bundle made for a share is its recipient's (it carries only what they were given);
    any other bundle, like any other taking of footage, needs every exhibit's original."""
    share_id = (b.options or {}).get("share")
    if share_id and principal.role in RECIPIENT_ROLES:
        if s.scalar(
            select(Share.id)
            .where(Share.id == share_id)
            .where(Share.id.in_(active_shares_of(principal)))
        ):
            return
        raise AccessDenied("this bundle was made for another recipient's share")
    require_case_footage(s, principal, b.case_id)


def open_download(
    ctx: Context,
    principal: Principal,
    bundle_id: str,
    range_header: str | None = None,
    if_range: str | None = None,
    *,
    reason: str | None = None,
    source_ip: str | None = None,
) -> tuple[ObjectInfo, tuple[int, int] | None]:
    """Record the download in the ledger (before any byte leaves), then describe the object
    and the byte range to send (None: all of it).

    A bundle is footage, so taking it needs a reason, as playing a clip does, and the entry
    names the person, their role, the reason and the source address. The Range requests of
    one download (a resumed or parallel download) are one entry: a repeat by the same person
    for the same reason within audit.ACCESS_WINDOW is not written again. A malformed or
    unsatisfiable range is refused (416) before any entry.
    """
    b = _readable(ctx, principal, bundle_id)
    with ctx.db.session() as s:
        require_bundle_footage(s, principal, b)
        via = recipient_context(s, principal, case_id=b.case_id)
    if b.state == BundleState.disposed:
        raise Disposed(
            f"bundle {bundle_id} was deleted when an exhibit in it was disposed of "
            "under the retention policy; request a new bundle"
        )
    if b.state != BundleState.ready:
        raise InvalidInput(f"bundle {bundle_id} is {b.state}, not ready yet")
    why = check_reason(reason, ctx.settings.access_reasons)  # after access: a 403 says more
    info = ctx.store.stat(b.key)
    span = requested_range(range_header, if_range, info.sha256, info.size)
    if not audit.recently_recorded(
        ctx, principal.user_id, "bundle.downloaded", ("bundle", b.id), why
    ):
        ctx.ledger.append(
            "bundle.downloaded",
            actor=principal.actor,
            subject={
                "bundle": b.id,
                "case": b.case_id,
                "user": principal.user_id,
                **({"share": via["share"]} if via else {}),
            },
            sha256=b.sha256,
            size=b.size,
            role=principal.role.value,
            reason=why,
            source_ip=client_address(source_ip),
            **({"organisation": via["organisation"], "purpose": via["purpose"]} if via else {}),
        )
    return info, span


def stalled_bundles(ctx: Context, older_than: dt.timedelta) -> list[str]:
    """Bundles queued or building for longer than `older_than`: their task was lost (the
    outbox row gone without a delivery, or a worker that died mid-build on a broker that
    does not redeliver). The scheduler's sweep (evidence/recovery.py) queues them again;
    building is idempotent, so a bundle that was merely slow is only built twice."""
    cutoff = clock.now() - older_than
    last_sign = func.coalesce(Bundle.started_at, Bundle.created_at)
    with ctx.db.session() as s:
        return list(
            s.scalars(
                select(Bundle.id).where(
                    Bundle.state.in_((BundleState.queued, BundleState.building)),
                    last_sign < cutoff,
                )
            )
        )
