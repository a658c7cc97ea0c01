"""RFC 3161 trusted time for ledger checkpoints.

A signed checkpoint proves what the log held; a timestamp token from an independent
time-stamping authority (TSA) proves *when*: the log held at least this much by the TSA's
`genTime`, so it cannot later be back-dated or rewritten without a second, later token.

What is timestamped is the exact bytes of the signed checkpoint note (UTF-8), i.e. the file
a court bundle ships as `ledger/checkpoint.txt`. What is stored is the TSA's whole DER
`TimeStampResp` (status + token), the file a bundle ships as `ledger/checkpoint.tsr`:
that is what `openssl ts -verify -in` reads by default, and what rfc3161-client parses.

Anyone can check one without our code:

    openssl ts -verify -data ledger/checkpoint.txt -in ledger/checkpoint.tsr -CAfile tsa-ca.pem

Tokens live in `checkpoint_timestamps`, append-only like the ledger itself (triggers in
migration 0006), and every token is also vouched for by a `checkpoint.timestamped` entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evidence import clock
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import InvalidInput, NotFound, TimestampInvalid, TimestampUnavailable
from evidence.ledger.models import CheckpointTimestamp, LedgerEntry, SignedCheckpoint

ENTRY_TYPE = "checkpoint.timestamped"
ACTOR = "system:timestamps"
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_MAX_REPLY = 1 << 20  # a reply is a few KiB; refuse to buffer a runaway body


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified token says."""

    gen_time: dt.datetime
    serial: int
    tsa_name: str  # the TSA's name from the token, else its certificate subject


@dataclass(frozen=True)
class Stamp:
    """A stored timestamp of the checkpoint of `tree_size`."""

    tree_size: int
    token: bytes
    gen_time: dt.datetime
    tsa: str
    token_sha256: str


# -- talking to a TSA --------------------------------------------------------------------


def request_timestamp(settings: Settings, data: bytes) -> bytes:
    """Ask the configured TSA to timestamp SHA-256(data); return its checked DER reply.

    The request carries a random nonce (so a replayed old reply is refused) and certReq
    (so the token embeds the TSA certificate and verifies offline with just the root).
    Raises TimestampUnavailable if the TSA cannot be reached, TimestampInvalid if it
    answers with anything but a granted, valid token over our hash and nonce.
    """
    url, ca_pem = _tsa_config(settings)
    request = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    reply = _post(url, request.as_bytes(), settings.tsa_timeout_seconds)
    response = _decode(reply)
    _check(response, data, ca_pem, nonce=request.nonce)
    return reply


def verify_token(token: bytes, data: bytes, ca_pem: bytes) -> TimestampInfo:
    """Check a stored DER TimeStampResp over `data` against the PEM root(s), offline.

    Checks (rfc3161-client's verifier, plus ours): status granted; the CMS signature, with
    the TSA certificate chaining to `ca_pem` and valid at genTime; exactly one signer, whose
    certificate's extendedKeyUsage is critical and exactly id-kp-timeStamping (RFC 3161
    §2.3); the message imprint is SHA-256 of `data`. Raises TimestampInvalid naming the failure.
    """
    return _check(_decode(token), data, ca_pem, nonce=None)


def _tsa_config(settings: Settings) -> tuple[str, bytes]:
    if not settings.tsa_url:
        raise InvalidInput("no time-stamping authority configured: set EVIDENCE_TSA_URL")
    if settings.tsa_ca_file is None:
        # An unverified token proves nothing, so there is no "trust whatever answers" mode.
        raise InvalidInput(
            "EVIDENCE_TSA_URL is set but EVIDENCE_TSA_CA_FILE is not: "
            "give the PEM root(s) the TSA's certificate chains to"
        )
    try:
        return settings.tsa_url, Path(settings.tsa_ca_file).read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read EVIDENCE_TSA_CA_FILE {settings.tsa_ca_file}: {e}") from e


def _post(url: str, query: bytes, timeout: float) -> bytes:
    try:
        r = httpx.post(
            url,
            content=query,
            headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
            timeout=timeout,
        )
    except httpx.HTTPError as e:
        raise TimestampUnavailable(f"time-stamping authority {url} unreachable: {e}") from e
    if r.status_code != 200:
        raise TimestampUnavailable(
            f"time-stamping authority {url} answered HTTP {r.status_code}: {r.text[:200]}"
        )
    kind = r.headers.get("content-type", "").split(";")[0].strip()
    if kind != REPLY_TYPE:
        raise TimestampInvalid(f"time-stamping authority {url} answered {kind!r}, not {REPLY_TYPE}")
    if len(r.content) > _MAX_REPLY:
        raise TimestampInvalid(f"time-stamping authority {url} sent a {len(r.content)}-byte reply")
    return r.content


def _decode(der: bytes) -> TimeStampResponse:
    try:
        return decode_timestamp_response(der)
    except ValueError as e:
        raise TimestampInvalid(f"not a DER RFC 3161 TimeStampResp: {e}") from e


def _roots(ca_pem: bytes) -> list[x509.Certificate]:
    try:
        roots = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as e:
        raise TimestampInvalid(f"TSA root file is not PEM certificates: {e}") from e
    if not roots:
        raise TimestampInvalid("TSA root file holds no certificate")
    return roots


def _check(
    response: TimeStampResponse, data: bytes, ca_pem: bytes, *, nonce: int | None
) -> TimestampInfo:
    # Status first: a rejection carries no token, and the parser's token accessors panic
    # (a BaseException) on a missing one.
    if PKIStatus(response.status) not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        said = "; ".join(response.status_string) or "no reason given"
        raise TimestampInvalid(f"TSA refused the request (status {response.status}): {said}")
    info = response.tst_info
    # We only ever ask for SHA-256; a reply over another hash answers some other request.
    if info.message_imprint.hash_algorithm != _SHA256_OID:
        raise TimestampInvalid("token's message imprint is not SHA-256")
    if info.message_imprint.message != hashlib.sha256(data).digest():
        raise TimestampInvalid("token is over different data (message imprint mismatch)")
    if nonce is not None and info.nonce != nonce:
        raise TimestampInvalid("token's nonce is not the one we sent (replayed reply?)")
    builder = VerifierBuilder()
    for root in _roots(ca_pem):
        builder = builder.add_root_certificate(root)
    if nonce is not None:
        builder = builder.nonce(nonce)
    try:
        # Verifies the CMS signature and chain at genTime (OpenSSL PKCS7_verify), exactly
        # one SignerInfo, the signer certificate's critical id-kp-timeStamping EKU, the
        # nonce if given, and the imprint again.
        builder.build().verify_message(response, data)
    except (VerificationError, ValueError) as e:
        raise TimestampInvalid(f"timestamp token does not verify: {e}") from e
    signer = _signer_certificate(response)
    _require_critical_timestamping_eku(signer)
    return TimestampInfo(
        info.gen_time.astimezone(dt.UTC), info.serial_number, _tsa_name(info, signer)
    )


def _signer_certificate(response: TimeStampResponse) -> x509.Certificate:
    """The certificate named by the (single, signed) SignerInfo's issuer and serial."""
    (si,) = response.signed_data.signer_infos  # the verifier insisted on exactly one
    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == si.issuer and cert.serial_number == si.serial_number:
            return cert
    raise TimestampInvalid("token does not carry its signer's certificate (request certReq)")


def _require_critical_timestamping_eku(cert: x509.Certificate) -> None:
    # RFC 3161 §2.3: the TSA certificate MUST have exactly this one critical EKU. The
    # library checks critical + present; we also refuse a multi-purpose certificate.
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampInvalid("TSA certificate has no extendedKeyUsage") from None
    if not eku.critical or list(eku.value) != [x509.ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampInvalid("TSA certificate's EKU is not exactly a critical timeStamping")


def _tsa_name(info: object, signer: x509.Certificate) -> str:
    try:
        name = info.name  # type: ignore[attr-defined]  # raises when the token names no TSA
    except Exception:  # noqa: BLE001 - the binding raises ValueError for "no name"
        return signer.subject.rfc4514_string()
    value = getattr(name, "value", name)
    return value.rfc4514_string() if isinstance(value, x509.Name) else str(value)


# -- timestamping checkpoints ------------------------------------------------------------


def timestamp_checkpoint(ctx: Context, tree_size: int | None = None) -> Stamp | None:
    """Timestamp the signed checkpoint of exactly `tree_size` (default: the latest).

    Returns None when no TSA is configured. Idempotent: a size already stamped returns
    the stored token without asking the TSA again. Nothing is stored unless the TSA's
    reply verified; the token and its ledger entry commit together.
    """
    settings = ctx.settings
    if not settings.tsa_url:
        return None
    size, note = _checkpoint_note(ctx, tree_size)
    existing = _stored(ctx, size)
    if existing is not None:
        return existing
    data = note.encode("utf-8")
    token = request_timestamp(settings, data)
    _, ca_pem = _tsa_config(settings)
    info = verify_token(token, data, ca_pem)
    stamp = Stamp(size, token, info.gen_time, settings.tsa_url, hashlib.sha256(token).hexdigest())
    try:
        with ctx.db.write_session() as s:
            _insert(ctx, s, stamp, info)
    except IntegrityError:
        # Another worker stamped this size between our read and our write: keep theirs.
        raced = _stored(ctx, size)
        if raced is None:
            raise
        return raced
    return stamp


def timestamp_if_grown(ctx: Context) -> Stamp | None:
    """The scheduler's job: stamp the latest checkpoint if anything but stamps was added.

    Each stamp appends its own `checkpoint.timestamped` entry, so "the tree grew" means
    an entry of another type arrived since the last stamped size; otherwise an idle store
    would ask the TSA every hour just to timestamp its own previous timestamp entry.
    """
    if not ctx.settings.tsa_url:
        return None
    with ctx.db.session() as s:
        last = s.scalar(select(func.max(CheckpointTimestamp.tree_size)))
        newer = select(func.count()).select_from(LedgerEntry).where(LedgerEntry.type != ENTRY_TYPE)
        if last is not None:
            newer = newer.where(LedgerEntry.idx >= last)
        if not s.scalar(newer):
            return None
    return timestamp_checkpoint(ctx)


def token_for(ctx: Context, tree_size: int) -> bytes | None:
    """The stored DER TimeStampResp over the checkpoint of exactly `tree_size`, if any."""
    stamp = _stored(ctx, tree_size)
    return None if stamp is None else stamp.token


def _checkpoint_note(ctx: Context, tree_size: int | None) -> tuple[int, str]:
    with ctx.db.session() as s:
        q = select(SignedCheckpoint.tree_size, SignedCheckpoint.note)
        q = (
            q.where(SignedCheckpoint.tree_size == tree_size)
            if tree_size is not None
            else q.order_by(SignedCheckpoint.tree_size.desc()).limit(1)
        )
        row = s.execute(q).first()
    if row is None:
        what = "the ledger is empty" if tree_size is None else f"no checkpoint of size {tree_size}"
        raise NotFound(f"nothing to timestamp: {what}")
    return row.tree_size, row.note


def _stored(ctx: Context, tree_size: int) -> Stamp | None:
    with ctx.db.session() as s:
        row = s.get(CheckpointTimestamp, tree_size)
    if row is None:
        return None
    return Stamp(
        row.tree_size, row.token, row.gen_time, row.tsa, hashlib.sha256(row.token).hexdigest()
    )


def _insert(ctx: Context, session: Session, stamp: Stamp, info: TimestampInfo) -> None:
    session.add(
        CheckpointTimestamp(
            tree_size=stamp.tree_size,
            token=stamp.token,
            gen_time=stamp.gen_time,
            tsa=stamp.tsa,
            created_at=clock.now(),
        )
    )
    session.flush()  # a duplicate size fails here, before the ledger entry is written
    ctx.ledger.append_in(
        session,
        ENTRY_TYPE,
        actor=ACTOR,
        subject={"checkpoint": str(stamp.tree_size)},
        tree_size=stamp.tree_size,
        tsa=stamp.tsa,
        tsa_name=info.tsa_name,
        # Strings: a TSA serial may exceed what canonical JSON numbers hold exactly.
        tsa_serial=str(info.serial),
        gen_time=clock.rfc3339(stamp.gen_time),
        token_sha256=stamp.token_sha256,
    )
