"""Footage from the public, with the integrity of an officer's camera (docs/public-submissions.md).

An evidence officer invites a member of the public: a one-time link (256 random bits; only
the token's SHA-256 is kept) with an expiry and limits on files and bytes. Through it the
person sends files in chunks (resumable: they ask which chunks arrived and send the rest),
each file joined and hashed here as it is stored, in quarantine. Finishing returns a receipt
and uses the link up. Nothing they sent is a clip, so nothing reaches search, a list or a
case, until an evidence officer accepts it; rejected files are kept for
`submission_rejected_keep_days`, then disposed of. Every step is a ledger entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence import clock, notifications, outbox, queue, workfiles
from evidence.access import Principal, ledger_reason, require
from evidence.cases.models import Case
from evidence.clips.derivatives import WORKER, record_derivative
from evidence.clips.models import PUBLIC_SUBMISSION, Clip, ClipState, Derivative
from evidence.context import Context
from evidence.errors import (
    Conflict,
    HashMismatch,
    InvalidInput,
    LinkGone,
    MediaError,
    NotFound,
    TooLarge,
    TooManyAttempts,
    UnsupportedFile,
)
from evidence.ingest.service import DERIVATIVES, derive, ledger_text
from evidence.media.derivatives import make_thumbnail
from evidence.media.probe import MediaFacts, probe
from evidence.ratelimit import AttemptWindow, window_for
from evidence.retention import service as retention
from evidence.storage import original_key
from evidence.submissions.models import FileState, Invitation, SubmissionFile
from evidence.submissions.sniff import ALLOWED, SNIFF_BYTES, sniff

SUBMIT_PATH = "/submit/"
PUBLIC_CATEGORY = PUBLIC_SUBMISSION
CONTACT_LIMITS = {"name": 120, "phone": 40, "email": 254}
REFERENCE_MAX = 64
DESCRIPTION_MAX = 2000
USER_AGENT_MAX = 256
FILENAME_MAX = 255
_TOKEN_BYTES = 32  # 256 bits


# -- the public side's identity: the link and where a request comes from ---------------------


@dataclass(frozen=True)
class Source:
    """Where a public request came from, as the ledger keeps it (both bounded)."""

    address: str
    user_agent: str

    @classmethod
    def of(cls, address: str, user_agent: str | None) -> Source:
        return cls(address[:64], ledger_text(user_agent or "", USER_AGENT_MAX))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _actor(invitation: Invitation) -> str:
    return f"public:invitation/{invitation.id}"


@dataclass
class _Limits:
    links: AttemptWindow
    addresses: AttemptWindow
    bad_tokens: AttemptWindow


def _limits(ctx: Context) -> _Limits:
    if ctx.submission_limits is None:
        s = ctx.settings
        window = s.submission_rate_window_seconds
        ctx.submission_limits = _Limits(
            window_for(s, "submission-link", s.submission_rate_per_link, window),
            window_for(s, "submission-address", s.submission_rate_per_address, window),
            window_for(s, "submission-bad-token", s.submission_bad_tokens_per_address, window),
        )
    return ctx.submission_limits


def _slow_down(window: AttemptWindow, key: str, what: str) -> None:
    wait = window.hit(key, clock.now())  # counted and checked in one step, on every replica
    if wait:
        raise TooManyAttempts(f"too many requests {what}: try again in {wait} s", retry_after=wait)


def _open(
    s: Session, ctx: Context, token: str, source: Source, *, used_ok: bool = False
) -> Invitation:
    """The invitation `token` opens, counting the request against the link's and the
    address's rate limits; an unknown token counts towards the address's guessing limit."""
    limits = _limits(ctx)
    if limits.bad_tokens.retry_after(source.address, clock.now()):
        _slow_down(limits.bad_tokens, source.address, "with links that do not exist")
    invitation = None
    if 20 <= len(token) <= 100:
        invitation = s.scalar(select(Invitation).where(Invitation.token_hash == token_hash(token)))
    if invitation is None:
        limits.bad_tokens.record(source.address, clock.now())
        raise NotFound("no such link: check that it was copied completely")
    _slow_down(limits.addresses, source.address, "from your address")
    _slow_down(limits.links, invitation.id, "through this link")
    if invitation.revoked_at is not None:
        raise LinkGone("this link was withdrawn by the police: please contact them for a new one")
    if invitation.used_at is not None and not used_ok:
        raise LinkGone(
            "these files were already sent through this link, which works once. "
            "If you have more, please ask the officer for a new link"
        )
    if invitation.used_at is None and invitation.expires_at <= clock.now():
        raise LinkGone(
            f"this link expired on {clock.rfc3339(invitation.expires_at)}: "
            "please contact the police for a new one"
        )
    return invitation


# -- invitations (the evidence officer's side) ------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    id: str
    url: str
    token: str  # in the URL; shown once, only its hash is kept
    expires_at: dt.datetime
    max_files: int
    max_bytes: int


def _contact(contact: dict[str, Any] | None) -> dict[str, str] | None:
    if not contact:
        return None
    unknown = set(contact) - CONTACT_LIMITS.keys()
    if unknown:
        raise InvalidInput(f"contact has unknown keys {sorted(unknown)}: only name, phone, email")
    kept = {}
    for key, limit in CONTACT_LIMITS.items():
        value = contact.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidInput(f"contact.{key} must be text of at most {limit} characters")
        if text := ledger_text(value.strip(), limit):
            kept[key] = text
    return kept or None


def create_invitation(
    ctx: Context,
    principal: Principal,
    *,
    case_id: str | None = None,
    reference: str | None = None,
    expires_days: int | None = None,
    max_files: int | None = None,
    max_bytes: int | None = None,
    contact: dict[str, Any] | None = None,
) -> IssuedInvitation:
    """A one-time link for a member of the public to send files about a case or an incident."""
    require(principal, "submissions.invite")
    settings = ctx.settings
    reference = ledger_text((reference or "").strip(), REFERENCE_MAX) or None
    if case_id is None and reference is None:
        raise InvalidInput("an invitation needs a case or an incident reference")
    days = expires_days or settings.submission_expiry_days
    if not 1 <= days <= 30:
        raise InvalidInput("an invitation expires after 1 to 30 days")
    files = max_files or settings.submission_max_files
    if not 1 <= files <= 100:
        raise InvalidInput("an invitation allows 1 to 100 files")
    size = max_bytes or settings.submission_max_bytes
    if not 1 <= size <= settings.submission_max_bytes:
        raise InvalidInput(f"an invitation allows at most {settings.submission_max_bytes} bytes")
    kept_contact = _contact(contact)
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    now = clock.now()
    with ctx.db.write_session() as s:
        if case_id is not None and s.get(Case, case_id) is None:
            raise NotFound(f"no case {case_id}")
        invitation = Invitation(
            token_hash=token_hash(token),
            case_id=case_id,
            reference=reference,
            created_by=principal.user_id,
            created_at=now,
            expires_at=now + dt.timedelta(days=days),
            max_files=files,
            max_bytes=size,
            contact=kept_contact,
        )
        s.add(invitation)
        s.flush()
        subject: dict[str, str] = {"invitation": invitation.id}
        if case_id:
            subject["case"] = case_id
        ctx.ledger.append_in(
            s,
            "submission.invited",
            actor=principal.actor,
            subject=subject,
            reference=reference,
            expires_at=clock.rfc3339(invitation.expires_at),
            max_files=files,
            max_bytes=size,
            contact_given=kept_contact is not None,  # the details stay out of the ledger
        )
        issued = IssuedInvitation(
            invitation.id,
            settings.public_url.rstrip("/") + SUBMIT_PATH + token,
            token,
            invitation.expires_at,
            files,
            size,
        )
    return issued


def list_invitations(ctx: Context, principal: Principal, limit: int = 100) -> list[dict[str, Any]]:
    require(principal, "submissions.invite")
    with ctx.db.session() as s:
        rows = s.scalars(select(Invitation).order_by(Invitation.created_at.desc()).limit(limit))
        return [_invitation_view(i) for i in rows]


def withdraw_invitation(
    ctx: Context, principal: Principal, invitation_id: str, *, reason: str
) -> dict[str, Any]:
    """End a link before its time (handed to the wrong person, no longer needed): it answers
    410 from now on. Files that arrived through it stay, for review."""
    require(principal, "submissions.invite")
    why = ledger_reason(reason, "withdrawing an invitation")
    with ctx.db.write_session() as s:
        invitation = s.get(Invitation, invitation_id)
        if invitation is None:
            raise NotFound(f"no invitation {invitation_id}")
        if invitation.revoked_at is None and invitation.used_at is None:
            invitation.revoked_at = clock.now()
            ctx.ledger.append_in(
                s,
                "submission.withdrawn",
                actor=principal.actor,
                subject={"invitation": invitation.id},
                reason=why,
            )
        return _invitation_view(invitation)


def _invitation_view(i: Invitation) -> dict[str, Any]:
    now = clock.now()
    state = (
        "withdrawn"
        if i.revoked_at
        else "used"
        if i.used_at
        else "expired"
        if i.expires_at <= now
        else "open"
    )
    return {
        "id": i.id,
        "case_id": i.case_id,
        "reference": i.reference,
        "created_at": clock.rfc3339(i.created_at),
        "expires_at": clock.rfc3339(i.expires_at),
        "max_files": i.max_files,
        "max_bytes": i.max_bytes,
        "contact": i.contact,
        "state": state,
        "used_at": clock.rfc3339(i.used_at) if i.used_at else None,
    }


# -- the member of the public's side -----------------------------------------------------------


@dataclass(frozen=True)
class FileView:
    id: str
    filename: str
    size: int
    state: str
    chunk_size: int
    chunks: int
    received_chunks: list[int] = field(default_factory=list)
    sha256: str | None = None
    received_at: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Link:
    """What the public page shows about its invitation (nothing about the case)."""

    reference: str | None
    expires_at: str
    max_files: int
    max_bytes: int
    chunk_size: int
    used: bool
    files: list[FileView]


def _held_chunks(ctx: Context, f: SubmissionFile) -> list[int]:
    if f.state != FileState.receiving:
        return []
    prefix = f"incoming/public/{f.id}/"
    return sorted(int(o.key.rsplit("/", 1)[1]) for o in ctx.store.list(prefix))


def _file_view(ctx: Context, f: SubmissionFile) -> FileView:
    return FileView(
        f.id,
        f.filename,
        f.size,
        f.state,
        f.chunk_size,
        f.chunks,
        _held_chunks(ctx, f),
        f.sha256,
        clock.rfc3339(f.received_at) if f.received_at else None,
        f.error,
    )


def _files(s: Session, invitation: Invitation) -> list[SubmissionFile]:
    return list(
        s.scalars(
            select(SubmissionFile)
            .where(SubmissionFile.invitation_id == invitation.id)
            .order_by(SubmissionFile.created_at, SubmissionFile.id)
        )
    )


def describe_link(ctx: Context, token: str, source: Source) -> Link:
    """The link's limits and the files sent so far (how a reopened page resumes)."""
    with ctx.db.session() as s:
        invitation = _open(s, ctx, token, source)
        files = [_file_view(ctx, f) for f in _files(s, invitation)]
    return Link(
        invitation.reference,
        clock.rfc3339(invitation.expires_at),
        invitation.max_files,
        invitation.max_bytes,
        ctx.settings.submission_chunk_bytes,
        invitation.used_at is not None,
        files,
    )


def _filename(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = ledger_text(name, FILENAME_MAX)
    if not name:
        raise InvalidInput("a file needs a name of 1 to 255 characters")
    return name


def add_file(ctx: Context, token: str, source: Source, *, filename: str, size: int) -> FileView:
    """Announce a file: where its chunks go. Refused beyond the invitation's limits."""
    name = _filename(filename)
    if size <= 0:
        raise InvalidInput("a file must have at least one byte")
    with ctx.db.write_session() as s:
        invitation = _open(s, ctx, token, source)
        live = [f for f in _files(s, invitation) if f.state != FileState.refused]
        if len(live) >= invitation.max_files:
            raise Conflict(f"this link takes at most {invitation.max_files} files")
        if sum(f.size for f in live) + size > invitation.max_bytes:
            raise TooLarge(
                f"this link takes at most {invitation.max_bytes} bytes in all; "
                f"{sum(f.size for f in live)} are already sent or on their way"
            )
        f = SubmissionFile(
            invitation_id=invitation.id,
            filename=name,
            size=size,
            chunk_size=ctx.settings.submission_chunk_bytes,
            state=FileState.receiving.value,
            created_at=clock.now(),
        )
        s.add(f)
        s.flush()
        view = _file_view(ctx, f)
    return view


def _receiving(s: Session, invitation: Invitation, file_id: str) -> SubmissionFile:
    f = s.get(SubmissionFile, file_id)
    if f is None or f.invitation_id != invitation.id:
        raise NotFound("no such file on this link")
    return f


def put_chunk(
    ctx: Context, token: str, source: Source, file_id: str, number: int, data: bytes
) -> FileView:
    """Keep chunk `number` of a file (again: replaced). The first chunk is sniffed: a file
    that is not of a kind we take is refused there, before anything of it is kept."""
    with ctx.db.session() as s:
        invitation = _open(s, ctx, token, source)
        f = _receiving(s, invitation, file_id)
        if f.state != FileState.receiving:
            raise Conflict(f"this file is {f.state}: no more chunks are needed")
        if not 0 <= number < f.chunks:
            raise InvalidInput(f"chunk numbers of this file run from 0 to {f.chunks - 1}")
        expected = min(f.chunk_size, f.size - number * f.chunk_size)
        if len(data) != expected:
            raise InvalidInput(f"chunk {number} must be {expected} bytes, not {len(data)}")
        key = f.chunk_key(number)
    if number == 0:
        found = sniff(data[:SNIFF_BYTES])
        if found is None:
            _refuse(ctx, invitation, file_id, source, f"not a kind of file we take ({ALLOWED})")
            raise UnsupportedFile(
                f"{f.filename} is not a kind of file we take: {ALLOWED}. "
                "Your other files are not affected"
            )
        with ctx.db.write_session() as s:
            row = s.get(SubmissionFile, file_id)
            assert row is not None
            row.kind, row.media_type = found.kind, found.media_type
    ctx.store.put(key, io.BytesIO(data))
    with ctx.db.session() as s:
        row = s.get(SubmissionFile, file_id)
        assert row is not None
        return _file_view(ctx, row)


def _refuse(ctx: Context, invitation: Invitation, file_id: str, source: Source, why: str) -> None:
    _drop_chunks(ctx, file_id)
    with ctx.db.write_session() as s:
        f = s.get(SubmissionFile, file_id)
        assert f is not None
        if f.state != FileState.receiving:
            return
        f.state, f.error = FileState.refused.value, why
        ctx.ledger.append_in(
            s,
            "submission.file_refused",
            actor=_actor(invitation),
            subject={"invitation": invitation.id, "submission_file": f.id},
            filename=f.filename,
            size=f.size,
            reason=why,
            source_ip=source.address,
            user_agent=source.user_agent,
        )


def _drop_chunks(ctx: Context, file_id: str) -> None:
    for o in list(ctx.store.list(f"incoming/public/{file_id}/")):
        ctx.store.delete(o.key)


class _Joined(io.RawIOBase):
    """The chunks of a file read as one stream, one chunk in memory at a time."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._left = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._left = nxt
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def _read_all(ctx: Context, keys: list[str]) -> Iterator[bytes]:
    for key in keys:
        yield from ctx.store.open(key)


def complete_file(ctx: Context, token: str, source: Source, file_id: str) -> FileView:
    """Join the chunks into the quarantined file, hashing it as it is stored."""
    with ctx.db.session() as s:
        invitation = _open(s, ctx, token, source)
        f = _receiving(s, invitation, file_id)
        if f.state != FileState.receiving:
            return _file_view(ctx, f)  # completed already: the same answer
        held = _held_chunks(ctx, f)
        missing = sorted(set(range(f.chunks)) - set(held))
        if missing:
            raise Conflict(f"chunks still missing: {missing[:20]}; send them, then complete")
        keys = [f.chunk_key(n) for n in range(f.chunks)]
        quarantine = f.quarantine_key
    stored = ctx.store.put(quarantine, io.BufferedReader(_Joined(_read_all(ctx, keys))))
    if stored.size != f.size:
        ctx.store.delete(quarantine)
        _refuse(ctx, invitation, file_id, source, "the chunks did not add up to the file's size")
        raise InvalidInput("the file's chunks did not add up to its size: please add it again")
    with ctx.db.write_session() as s:
        row = s.get(SubmissionFile, file_id)
        assert row is not None
        if row.state == FileState.receiving:
            row.state, row.sha256, row.received_at = (
                FileState.received.value,
                stored.sha256,
                clock.now(),
            )
            ctx.ledger.append_in(
                s,
                "submission.file_received",
                actor=_actor(invitation),
                subject={"invitation": invitation.id, "submission_file": row.id},
                filename=row.filename,
                size=stored.size,
                sha256=stored.sha256,
                kind=row.kind,
                media_type=row.media_type,
                kept_as=quarantine,
                source_ip=source.address,
                user_agent=source.user_agent,
            )
        view = _file_view(ctx, row)
    _drop_chunks(ctx, file_id)
    return view


@dataclass(frozen=True)
class Receipt:
    invitation_id: str
    reference: str | None
    submitted_at: str
    description: str
    files: list[FileView]
    ledger_index: int | None  # the submission's entry in the ledger


def finish(ctx: Context, token: str, source: Source, *, description: str) -> Receipt:
    """The person is done: the link is used up and the submission is in the ledger."""
    text = ledger_text((description or "").strip(), DESCRIPTION_MAX)
    if len(description or "") > DESCRIPTION_MAX:
        raise InvalidInput(f"a description is at most {DESCRIPTION_MAX} characters")
    with ctx.db.session() as s:
        invitation = _open(s, ctx, token, source)
        files = _files(s, invitation)
        if not any(f.state == FileState.received for f in files):
            raise Conflict("no file has arrived yet: add at least one")
    # A file left half-sent (not chosen again after a dropped connection) does not hold the
    # others back: it is refused, its chunks dropped, and the submission goes without it.
    for f in files:
        if f.state == FileState.receiving:
            _refuse(ctx, invitation, f.id, source, "not completed before the files were sent")
    with ctx.db.write_session() as s:
        invitation = _open(s, ctx, token, source)
        received = [f for f in _files(s, invitation) if f.state == FileState.received]
        invitation.used_at = clock.now()
        invitation.description = text
        invitation.user_agent = source.user_agent
        invitation.source_ip = source.address
        ctx.ledger.append_in(
            s,
            "submission.submitted",
            actor=_actor(invitation),
            subject={"invitation": invitation.id, "submission_file": [f.id for f in received]},
            description=text,
            files=[
                {"id": f.id, "filename": f.filename, "size": f.size, "sha256": f.sha256}
                for f in received
            ],
            source_ip=source.address,
            user_agent=source.user_agent,
        )
        # The evidence officer who sent the link is waiting on it (off without SMTP).
        notifications.notify_in(
            s,
            ctx.settings,
            notifications.SUBMISSION_RECEIVED,
            invitation.created_by,
            case_id=invitation.case_id,
            path="/ui/submissions",
        )
    return receipt(ctx, token, source)


def receipt(ctx: Context, token: str, source: Source) -> Receipt:
    """What the person keeps: each file's name, size, SHA-256 and when it arrived."""
    with ctx.db.session() as s:
        invitation = _open(s, ctx, token, source, used_ok=True)
        if invitation.used_at is None:
            raise Conflict("nothing has been sent through this link yet")
        files = [
            _file_view(ctx, f)
            for f in _files(s, invitation)
            if f.state not in (FileState.refused, FileState.receiving)
        ]
        index = _entry_index(ctx, invitation.id)
    return Receipt(
        invitation.id,
        invitation.reference,
        clock.rfc3339(invitation.used_at),
        invitation.description or "",
        files,
        index,
    )


def _entry_index(ctx: Context, invitation_id: str) -> int | None:
    for index, raw in ctx.ledger.entries_about(f"invitation:{invitation_id}"):
        if json.loads(raw).get("type") == "submission.submitted":
            return index
    return None


# -- review (the evidence officer's side) -----------------------------------------------------


def review_queue(ctx: Context, principal: Principal, limit: int = 200) -> list[dict[str, Any]]:
    """Files received and awaiting a decision, oldest first, with their submission."""
    require(principal, "submissions.review")
    with ctx.db.session() as s:
        rows = s.execute(
            select(SubmissionFile, Invitation)
            .join(Invitation, Invitation.id == SubmissionFile.invitation_id)
            .where(SubmissionFile.state == FileState.received, Invitation.used_at.is_not(None))
            .order_by(SubmissionFile.received_at)
            .limit(limit)
        ).all()
        return [_queued(f, i) for f, i in rows]


def _queued(f: SubmissionFile, i: Invitation) -> dict[str, Any]:
    return {
        "id": f.id,
        "invitation_id": i.id,
        "case_id": i.case_id,
        "reference": i.reference,
        "filename": f.filename,
        "size": f.size,
        "kind": f.kind,
        "media_type": f.media_type,
        "sha256": f.sha256,
        "received_at": clock.rfc3339(f.received_at) if f.received_at else None,
        "description": i.description,
        "source_ip": i.source_ip,
        "user_agent": i.user_agent,
        "state": f.state,
        "clip_id": f.clip_id,
    }


def _decidable(s: Session, file_id: str) -> tuple[SubmissionFile, Invitation]:
    f = s.get(SubmissionFile, file_id)
    if f is None:
        raise NotFound(f"no submitted file {file_id}")
    if f.state != FileState.received:
        raise Conflict(f"this file is {f.state}: it was decided already or never arrived")
    invitation = s.get(Invitation, f.invitation_id)
    assert invitation is not None
    if invitation.used_at is None:
        raise Conflict("its sender has not finished sending yet")
    return f, invitation


def accept(ctx: Context, principal: Principal, file_id: str, *, reason: str) -> dict[str, Any]:
    """Take a quarantined file in: its bytes become a write-once original (checked against
    the hash taken when they arrived) and a clip in the "public submission" category."""
    require(principal, "submissions.review")
    why = ledger_reason(reason, "accepting a public submission")
    with ctx.db.session() as s:
        f, _ = _decidable(s, file_id)
        sha256, key = f.sha256, f.quarantine_key
    assert sha256 is not None
    joined = io.BufferedReader(_Joined(iter(ctx.store.open(key))))
    stored = ctx.store.put_original(joined, sha256)  # refuses bytes that changed since
    with ctx.db.write_session() as s:
        f, invitation = _decidable(s, file_id)
        clip = s.scalar(select(Clip).where(Clip.sha256 == sha256))
        new = clip is None
        if clip is None:
            clip = Clip(
                sha256=sha256,
                size=stored.size,
                state="verifying",
                filename=f.filename,
                ingested_at=clock.now(),
                category=PUBLIC_CATEGORY,
                sidecar={"public_submission": {"invitation": invitation.id, "file": f.id}},
            )
            s.add(clip)
            s.flush()
        f.state, f.clip_id = FileState.accepted.value, clip.id
        f.decided_by, f.decided_at, f.decision_reason = principal.user_id, clock.now(), why
        ctx.ledger.append_in(
            s,
            "submission.accepted",
            actor=principal.actor,
            subject={"submission_file": f.id, "invitation": invitation.id, "clip": clip.id},
            reason=why,
            sha256=sha256,
            size=stored.size,
            original=original_key(sha256),
            new_clip=new,
        )
        clip_id = clip.id
        if new:  # probe, proxy and thumbnail, as for a docked clip: a worker's job
            outbox.add(s, queue.PROCESS_SUBMISSION, clip_id)
    ctx.store.delete(key)
    return {"id": file_id, "state": FileState.accepted.value, "clip_id": clip_id}


def reject(ctx: Context, principal: Principal, file_id: str, *, reason: str) -> dict[str, Any]:
    """Turn a quarantined file down: it is kept, as it arrived, until the rejected
    submissions' retention runs out (docs/retention.md), then disposed of."""
    require(principal, "submissions.review")
    why = ledger_reason(reason, "rejecting a public submission")
    until = clock.now() + dt.timedelta(days=ctx.settings.submission_rejected_keep_days)
    with ctx.db.write_session() as s:
        f, invitation = _decidable(s, file_id)
        f.state, f.retain_until = FileState.rejected.value, until
        f.decided_by, f.decided_at, f.decision_reason = principal.user_id, clock.now(), why
        ctx.ledger.append_in(
            s,
            "submission.rejected",
            actor=principal.actor,
            subject={"submission_file": f.id, "invitation": invitation.id},
            reason=why,
            sha256=f.sha256,
            kept_as=f.quarantine_key,
            retain_until=clock.rfc3339(until),
            rule=rejected_rule(ctx),
        )
    return {"id": file_id, "state": FileState.rejected.value, "clip_id": None}


def rejected_rule(ctx: Context) -> str:
    return f"rejected public submission: {ctx.settings.submission_rejected_keep_days} days"


def dispose_rejected(ctx: Context) -> list[str]:
    """Delete the bytes of rejected files whose retention ran out (the scheduler's
    retention sweep), each with a ledger entry; the record stays."""
    now = clock.now()
    with ctx.db.session() as s:
        due = list(
            s.scalars(
                select(SubmissionFile.id).where(
                    SubmissionFile.state == FileState.rejected, SubmissionFile.retain_until <= now
                )
            )
        )
    done = []
    for file_id in due:
        with ctx.db.write_session() as s:
            f = s.get(SubmissionFile, file_id)
            if f is None or f.state != FileState.rejected:
                continue
            ctx.store.delete(f.quarantine_key)
            f.state = FileState.disposed.value
            ctx.ledger.append_in(
                s,
                "submission.disposed",
                actor="system:scheduler",
                subject={"submission_file": f.id, "invitation": f.invitation_id},
                sha256=f.sha256,
                rule=rejected_rule(ctx),
                retain_until=clock.rfc3339(f.retain_until) if f.retain_until else None,
            )
        done.append(file_id)
    return done


def process_accepted(ctx: Context, clip_id: str) -> str:
    """What a docked clip gets once verified, for an accepted submission (a worker's task):
    probe, the clip's facts and its `clip.ingested` entry, retention, the original's lock,
    proxy and thumbnail. Idempotent: a clip past verifying is left as it is."""
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
        if clip is None:
            raise NotFound(f"no clip {clip_id}")
        if clip.state != "verifying":
            return clip.state
        sha256, name = clip.sha256, clip.filename
    with workfiles.work_dir(ctx.settings.data_dir / "work") as work:
        key = original_key(sha256)
        path = ctx.store.local_file(key)
        if path is None:
            path = work / f"original{Path(name or '').suffix[:10]}"
            if ctx.store.fetch(key, path).sha256 != sha256:
                raise HashMismatch(f"the original of clip {clip_id} does not hash to {sha256}")
        kind = _kind_of(ctx, clip_id)
        facts = probe(path)
        if kind != "video" and facts.playable:  # a photo decodes as one frame: no video
            facts = replace(facts, playable=False, error=f"a {kind} submission: nothing to play")
        _record_probe(ctx, clip_id, facts)
        retention.lock_original(ctx, clip_id)
        derive(ctx, clip_id, path, work, sha256)
        if kind == "image":
            _photo_thumbnail(ctx, clip_id, path, work, sha256)
    with ctx.db.write_session() as s:
        clip = s.get(Clip, clip_id)
        assert clip is not None
        kinds = {d.kind for d in clip.derivatives}
        if clip.state == ClipState.stored and kinds >= set(DERIVATIVES):
            clip.state = ClipState.ready.value
        return clip.state


def _kind_of(ctx: Context, clip_id: str) -> str:
    with ctx.db.session() as s:
        kind = s.scalar(select(SubmissionFile.kind).where(SubmissionFile.clip_id == clip_id))
    return kind or "video"


def _photo_thumbnail(ctx: Context, clip_id: str, src: Path, work: Path, sha256: str) -> None:
    """A photo's thumbnail, where ffmpeg reads the format (JPEG, PNG; not every HEIC): the
    clip list and the review show it as they show a video's. Without one, nothing is lost."""
    with ctx.db.session() as s:
        if s.scalar(
            select(Derivative.id).where(
                Derivative.clip_id == clip_id, Derivative.kind == "thumbnail"
            )
        ):
            return
    out = work / "thumbnail.jpg"
    try:
        recipe = make_thumbnail(src, out, input_sha256=sha256, at_ms=0)
    except MediaError:
        return
    key = f"derived/{clip_id}/thumbnail.jpg"
    with out.open("rb") as f:
        stored = ctx.store.put(key, f, expected_sha256=recipe.output_sha256, write_once=True)
    record_derivative(ctx, clip_id, "thumbnail", key, stored.sha256, stored.size, recipe)


def _record_probe(ctx: Context, clip_id: str, facts: MediaFacts) -> None:
    with ctx.db.write_session() as s:
        clip = s.get(Clip, clip_id)
        assert clip is not None
        if clip.state != ClipState.verifying:
            return
        clip.state = (ClipState.stored if facts.playable else ClipState.unplayable).value
        clip.duration_ms, clip.container = facts.duration_ms, facts.container
        clip.video_codec, clip.audio_codec = facts.video_codec, facts.audio_codec
        clip.width, clip.height = facts.width, facts.height
        clip.frame_rate, clip.rotation = facts.frame_rate, facts.rotation
        clip.media_error = facts.error
        clip.recorded_at = facts.creation_time
        f = s.scalar(select(SubmissionFile).where(SubmissionFile.clip_id == clip_id))
        subject = {"clip": clip.id}
        if f is not None:
            subject |= {"submission_file": f.id, "invitation": f.invitation_id}
        ctx.ledger.append_in(
            s,
            "clip.ingested",
            actor=WORKER,
            subject=subject,
            sha256=clip.sha256,
            size=clip.size,
            original=original_key(clip.sha256),
            source="public submission",
            recorded_at=clock.rfc3339(clip.recorded_at) if clip.recorded_at else None,
            media=facts.as_dict(),
        )
        retention.schedule_in(ctx, s, clip, actor=WORKER)


def unprocessed_submissions(ctx: Context, older_than: dt.timedelta) -> list[str]:
    """Clips of public submissions accepted `older_than` ago and still verifying: their
    processing task was lost. The scheduler's sweep (evidence/recovery.py) queues them
    again; `process_accepted` leaves a clip past verifying as it is."""
    cutoff = clock.now() - older_than
    with ctx.db.session() as s:
        return list(
            s.scalars(
                select(Clip.id)
                .join(SubmissionFile, SubmissionFile.clip_id == Clip.id)
                .where(
                    Clip.state == "verifying",
                    SubmissionFile.state == FileState.accepted,
                    SubmissionFile.decided_at < cutoff,
                )
                .distinct()
            )
        )
