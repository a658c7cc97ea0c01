"""What auditors read: every access to footage and every sign-in, straight from the ledger;
and the explicit grants that let an auditor play footage."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, false, select, update
from sqlalchemy.orm import aliased

from evidence import clock
from evidence.access import Principal, client_address, ledger_reason, require
from evidence.accounts.models import AccountRequest, Role, User
from evidence.cases.models import AccessGrant, Case
from evidence.clips.models import Clip
from evidence.context import Context
from evidence.errors import Conflict, InvalidInput, NotFound
from evidence.ledger import catalogue
from evidence.ledger.models import LedgerEntry, LedgerRef

ACCESS_TYPES = catalogue.AUDITED
"""The access log: every access to footage, sign-in, administrative action and retention
decision, and each reading of the log itself (evidence/ledger/catalogue.py)."""


ACCESS_WINDOW = dt.timedelta(minutes=30)
"""One sitting: a person who plays (or downloads) the same thing for the same reason again
within this window, e.g. the browser's Range requests or a resumed download, is the same
access, recorded once."""


def recently_recorded(
    ctx: Context,
    user_id: str,
    entry_type: str,
    subject: tuple[str, str],
    reason: str,
    object_key: str | None = None,
) -> bool:
    """Whether `user_id` already has an `entry_type` entry about `subject` (("clip", id) or
    ("bundle", id)) with this reason (and object, when given) within ACCESS_WINDOW."""
    since = clock.now() - ACCESS_WINDOW
    kind, ident = subject
    with ctx.db.session() as s:
        rows = s.scalars(
            select(LedgerEntry.entry)
            .join(LedgerRef, LedgerRef.idx == LedgerEntry.idx)
            .where(
                LedgerRef.ref == f"user:{user_id}",
                LedgerEntry.type == entry_type,
                LedgerEntry.at >= since,
            )
            .order_by(LedgerEntry.idx.desc())
            .limit(50)
        ).all()
    for raw in rows:
        e = json.loads(raw)
        if (
            e.get("subject", {}).get(kind) == ident
            and e.get("reason") == reason
            and (object_key is None or e.get("object", object_key) == object_key)
        ):
            return True
    return False


@dataclass(frozen=True)
class LogFilter:
    """What an auditor narrows the access log to. Every field is optional."""

    person: str | None = None  # a user name: entries about or by that person
    clip_id: str | None = None
    case_id: str | None = None
    entry_type: str | None = None  # one of ACCESS_TYPES
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive

    def recorded(self) -> dict[str, str]:
        """The filter as the `audit.log_read` entry keeps it: set fields only, bounded."""
        out = {
            "person": self.person,
            "clip": self.clip_id,
            "case": self.case_id,
            "type": self.entry_type,
            "from": clock.rfc3339(self.since) if self.since else None,
            "to": clock.rfc3339(self.until) if self.until else None,
        }
        return {k: v[:120] for k, v in out.items() if v}


LOG_PAGE_MAX = 500
CSV_MAX_ROWS = 100_000
"""One export holds at most this many entries (newest first); narrow the filter for more."""


def access_log(
    ctx: Context,
    principal: Principal,
    f: LogFilter = LogFilter(),
    *,
    limit: int = 100,
    before: int | None = None,
    source_ip: str | None = None,
) -> list[dict[str, Any]]:
    """Access-log entries matching `f`, newest first; page with `before` (a ledger index).
    Reading the log is itself recorded (`audit.log_read`, with the filter)."""
    require(principal, "audit.read")
    if not 1 <= limit <= LOG_PAGE_MAX:
        raise InvalidInput(f"limit is 1 to {LOG_PAGE_MAX}")
    q = _log_query(ctx, f)
    if before is not None:
        q = q.where(LedgerEntry.idx < before)
    with ctx.db.session() as s:
        rows = s.execute(q.order_by(LedgerEntry.idx.desc()).limit(limit)).all()
    _record_read(ctx, principal, f, source_ip, export=False)
    return [{"index": i, **json.loads(e)} for i, e in rows]


def access_log_csv(
    ctx: Context, principal: Principal, f: LogFilter = LogFilter(), *, source_ip: str | None = None
) -> Iterator[str]:
    """The access log as CSV lines (header first), newest first, read in pages so memory
    stays flat. Recorded as a read with `export: true` before any line is produced."""
    require(principal, "audit.read")
    q = _log_query(ctx, f)  # validates the filter before anything is recorded
    _record_read(ctx, principal, f, source_ip, export=True)
    return _csv_lines(ctx, q)


CSV_COLUMNS = (
    "index",
    "time_utc",
    "type",
    "event",
    "actor",
    "role",
    "clip",
    "case",
    "bundle",
    "reason_or_detail",
    "source_ip",
)


def _csv_lines(ctx: Context, q: Select[Any]) -> Iterator[str]:
    yield _csv_row(CSV_COLUMNS)
    before, sent = None, 0
    while sent < CSV_MAX_ROWS:
        page = q if before is None else q.where(LedgerEntry.idx < before)
        with ctx.db.session() as s:
            rows = s.execute(page.order_by(LedgerEntry.idx.desc()).limit(500)).all()
        if not rows:
            return
        for idx, raw in rows:
            e = json.loads(raw)
            subject = e.get("subject") or {}
            yield _csv_row(
                (
                    str(idx),
                    e.get("at", ""),
                    e.get("type", ""),
                    catalogue.label(e.get("type", "")),
                    e.get("actor", ""),
                    e.get("role", ""),
                    _one(subject.get("clip")),
                    _one(subject.get("case")),
                    _one(subject.get("bundle")),
                    _detail(e),
                    e.get("source_ip", ""),
                )
            )
        sent += len(rows)
        before = rows[-1][0]


def _one(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _detail(e: dict[str, Any]) -> str:
    for key in ("reason", "method", "grantee", "rule", "locked_until"):
        if isinstance(e.get(key), str) and e[key]:
            return e[key]
    return ""


def _csv_row(values: tuple[Any, ...]) -> str:
    values = tuple("" if v is None else str(v) for v in values)  # fields may be null
    out = io.StringIO()
    # A value a spreadsheet would run as a formula (=, +, -, @) is quoted as text: reasons
    # and names come from people.
    csv.writer(out, lineterminator="\r\n").writerow(
        ["'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v for v in values]
    )
    return out.getvalue()


def _log_query(ctx: Context, f: LogFilter) -> Select[Any]:
    types = ACCESS_TYPES
    if f.entry_type:
        if f.entry_type not in ACCESS_TYPES:
            raise InvalidInput(
                f"no access-log entry type {f.entry_type[:64]!r}; one of: "
                + ", ".join(ACCESS_TYPES)
            )
        types = (f.entry_type,)
    q = select(LedgerEntry.idx, LedgerEntry.entry).where(LedgerEntry.type.in_(types))
    refs: list[str] = []
    if f.person:
        with ctx.db.session() as s:
            user_id = s.scalar(select(User.id).where(User.username == f.person.strip()))
        if user_id is None:
            raise NotFound(f"no user {f.person[:100]!r}")
        refs.append(f"user:{user_id}")
    if f.clip_id:
        refs.append(f"clip:{f.clip_id.strip()}")
    if f.case_id:
        refs.append(f"case:{f.case_id.strip()}")
    for ref in refs:
        q = q.where(
            exists(
                select(LedgerRef.idx).where(
                    LedgerRef.idx == LedgerEntry.idx, LedgerRef.ref == ref[:120]
                )
            )
        )
    if f.since and f.until and f.since >= f.until:
        raise InvalidInput("the time range is empty: 'from' must be before 'to'")
    if f.since:
        q = q.where(LedgerEntry.at >= f.since)
    if f.until:
        q = q.where(LedgerEntry.at < f.until)
    return q


def _record_read(
    ctx: Context, principal: Principal, f: LogFilter, source_ip: str | None, *, export: bool
) -> None:
    ctx.ledger.append(
        "audit.log_read",
        actor=principal.actor,
        subject={"user": principal.user_id},
        role=principal.role.value,
        filter=f.recorded(),
        export=export,
        source_ip=client_address(source_ip),
    )


def newest_entries(
    ctx: Context,
    principal: Principal,
    types: tuple[str, ...],
    *,
    limit: int = 100,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Ledger entries of `types`, newest first, for an auditor; page with `before` (a ledger
    index). The access log and the alerts are both views of this."""
    require(principal, "audit.read")
    if not 1 <= limit <= 500:
        raise InvalidInput("limit is 1 to 500")
    q = select(LedgerEntry.idx, LedgerEntry.entry).where(LedgerEntry.type.in_(types))
    if before is not None:
        q = q.where(LedgerEntry.idx < before)
    with ctx.db.session() as s:
        rows = s.execute(q.order_by(LedgerEntry.idx.desc()).limit(limit)).all()
    return [{"index": i, **json.loads(e)} for i, e in rows]


def grant_footage(
    ctx: Context,
    principal: Principal,
    *,
    username: str,
    reason: str,
    expires_at: dt.datetime,
    clip_id: str | None = None,
    case_id: str | None = None,
) -> dict[str, Any]:
    """An admin asks for an auditor to play one clip or one case's clips, for a while, for a
    reason. The grant opens nothing until a second admin approves it
    (evidence/accounts/approvals.py); `pending` in the answer says so."""
    from evidence.accounts import approvals

    require(principal, "grants.manage")
    # An empty or blank id is no id (it used to reach the database as '' and fail there).
    clip_id = clip_id.strip() or None if clip_id is not None else None
    case_id = case_id.strip() or None if case_id is not None else None
    if (clip_id is None) == (case_id is None):
        raise InvalidInput("grant access to exactly one of clip_id or case_id (not empty)")
    if expires_at <= clock.now() or expires_at > clock.now() + dt.timedelta(days=90):
        raise InvalidInput("a grant expires in the future, within 90 days")
    reason = ledger_reason(reason, "a grant (say why the footage is needed)", minimum=5)
    with ctx.db.write_session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None or user.role != Role.auditor:
            raise NotFound(f"no auditor {username!r}: grants are for auditors")
        if clip_id and s.get(Clip, clip_id) is None:
            raise NotFound(f"no clip {clip_id}")
        if case_id and s.get(Case, case_id) is None:
            raise NotFound(f"no case {case_id}")
        grant = AccessGrant(
            user_id=user.id,
            clip_id=clip_id,
            case_id=case_id,
            reason=reason,
            granted_by=principal.user_id,
            created_at=clock.now(),
            expires_at=expires_at,
        )
        s.add(grant)
        s.flush()
        ctx.ledger.append_in(
            s,
            "grant.created",
            actor=principal.actor,
            subject=_grant_subject(grant, principal),
            grantee=username,
            reason=grant.reason,
            expires_at=clock.rfc3339(expires_at),
            pending_approval=True,
        )
        req = approvals.request_in(
            s, ctx.ledger, kind="grant", user=user, by=principal, grant=grant
        )
        return {
            "id": grant.id,
            "username": username,
            "clip_id": clip_id,
            "case_id": case_id,
            "expires_at": clock.rfc3339(expires_at),
            "pending": True,
            "request_id": req.id,
        }


def revoke_grant(ctx: Context, principal: Principal, grant_id: str) -> None:
    """End a grant before it expires; the auditor can no longer play that footage."""
    require(principal, "grants.manage")
    with ctx.db.write_session() as s:
        grant = s.get(AccessGrant, grant_id)
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        if grant.revoked_at is not None or grant.expires_at <= clock.now():
            raise Conflict(f"grant {grant_id} has already ended")
        grant.revoked_at = clock.now()
        # A grant ended before its approval leaves nothing for the second person to decide.
        s.execute(
            update(AccountRequest)
            .where(
                AccountRequest.grant_id == grant.id,
                AccountRequest.state == "pending",
            )
            .values(state="withdrawn", decided_at=clock.now())
        )
        ctx.ledger.append_in(
            s, "grant.revoked", actor=principal.actor, subject=_grant_subject(grant, principal)
        )


def _grant_subject(grant: AccessGrant, by: Principal) -> dict[str, str | list[str]]:
    """Who and what a grant entry is about: the grant, the auditor and the admin, the footage."""
    subject: dict[str, str | list[str]] = {"grant": grant.id, "user": [grant.user_id, by.user_id]}
    if grant.clip_id:
        subject["clip"] = grant.clip_id
    if grant.case_id:
        subject["case"] = grant.case_id
    return subject


def list_grants(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    """The grants not revoked and not expired, soonest to expire first; `pending` ones wait
    for a second admin and open nothing yet."""
    require(principal, "grants.manage")
    grantee, granter = aliased(User), aliased(User)
    q = (
        select(AccessGrant, grantee.username, granter.username)
        .join(grantee, grantee.id == AccessGrant.user_id)
        .join(granter, granter.id == AccessGrant.granted_by)
        .where(AccessGrant.revoked_at.is_(None), AccessGrant.expires_at > clock.now())
        .order_by(AccessGrant.expires_at, AccessGrant.created_at)
    )
    with ctx.db.session() as s:
        rows = s.execute(q).all()
    return [
        {
            "id": g.id,
            "username": to,
            "clip_id": g.clip_id,
            "case_id": g.case_id,
            "reason": g.reason,
            "granted_by": by,
            "created_at": clock.rfc3339(g.created_at),
            "expires_at": clock.rfc3339(g.expires_at),
            "pending": g.approved_at is None,
        }
        for g, to, by in rows
    ]


def grantees(ctx: Context, principal: Principal) -> list[str]:
    """Who a grant can be for: the enabled auditors, by user name."""
    require(principal, "grants.manage")
    with ctx.db.session() as s:
        return list(
            s.scalars(
                select(User.username)
                .where(User.role == Role.auditor.value, User.disabled == false())
                .order_by(User.username)
            )
        )
