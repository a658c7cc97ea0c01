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
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evidence import clock
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import InvalidInput, NotFound, TimestampInvalid, TimestampUnavailable
from evidence.ledger.models import CheckpointTimestamp, LedgerEntry, SignedCheckpoint
from evidence.ledger.rfc3161 import TimestampInfo, check_response, decode_response, verify_token

ENTRY_TYPE = "checkpoint.timestamped"
ACTOR = "system:timestamps"
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
_MAX_REPLY = 1 << 20  # a reply is a few KiB; refuse to buffer a runaway body


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
    check_response(decode_response(reply), data, ca_pem, nonce=request.nonce)
    return reply


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
