"""E-mail notifications where people wait on the store: a case shared with them, a court
bundle they asked for is ready, a public submission received.

Off unless an SMTP server is configured (EVIDENCE_SMTP_HOST; docs/notifications.md). A
service that makes the event calls `notify_in` in the event's own transaction: the message
is written to the `notifications` table and an outbox row (evidence/outbox.py) hands its id
to the workers, so both commit with the event or not at all. The worker's task calls `send`,
which delivers it with smtplib and marks it sent; a message already sent is not sent again
when a task is delivered twice.

What a message says is decided here, once, when it is queued: plain text, no footage, no
case detail beyond what the recipient may see (a link that asks them to sign in, and the
case's reference only if the access policy shows them the case), never a viewing reason or
a note. The address is read when the message is sent, so it is not copied anywhere else.

A failure never touches the event, which committed long before: a server that turns the
message away for now (a 4xx reply, no connection) raises `TemporaryFailure`, which the task
retries with backoff; a permanent refusal (5xx), no address, or retries exhausted marks the
message failed, is logged and counted (`evidence_notifications_failed` on /metrics).

A sent message is recorded in the ledger as `notification.sent` (its kind and the
recipient's user id, never the address): one small entry per event that already has its own
entry, so the ledger grows by a bounded amount.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from evidence import clock, outbox, queue
from evidence.access import Principal, case_filter
from evidence.accounts.models import Role, User
from evidence.cases.models import Case
from evidence.config import Settings
from evidence.context import Context
from evidence.db import Base
from evidence.types import UTCDateTime, new_id

log = logging.getLogger(__name__)

# The kinds of notification; each is also the message's `kind` in the ledger entry.
SHARE_CREATED = "share.created"
BUNDLE_READY = "bundle.ready"
SUBMISSION_RECEIVED = "submission.received"
KINDS = (SHARE_CREATED, BUNDLE_READY, SUBMISSION_RECEIVED)

QUEUED, SENT, FAILED = "queued", "sent", "failed"
MAX_SUBJECT = 200
MAX_BODY = 2000
MAX_ERROR = 300
MAX_EMAIL = 254  # RFC 5321's limit on a forward path


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    subject: Mapped[str] = mapped_column(String(MAX_SUBJECT))
    body: Mapped[str] = mapped_column(String(MAX_BODY))
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class TemporaryFailure(Exception):
    """The server could not take the message now: worth trying again later."""


def enabled(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def _sees_case(s: Session, user: User, case_id: str) -> bool:
    who = Principal(user.id, user.username, Role(user.role), user.officer_id)
    return s.scalar(select(Case.id).where(Case.id == case_id, case_filter(who))) is not None


def _message(
    s: Session,
    settings: Settings,
    kind: str,
    user: User,
    case_id: str | None,
    detail: str | None,
    path: str | None,
) -> tuple[str, str]:
    base = settings.resolved_notify_public_url()
    link = base + (path or (f"/ui/cases/{case_id}" if case_id else "/ui/"))
    reference = None
    if case_id is not None and _sees_case(s, user, case_id):
        reference = s.scalar(select(Case.reference).where(Case.id == case_id))
    about = f" ({reference})" if reference else ""
    if kind == SHARE_CREATED:
        subject = f"A case has been shared with you{about}"
        what = f"A case{about} has been shared with you on the evidence store"
        what += f" until {detail}." if detail else "."
    elif kind == BUNDLE_READY:
        subject = f"Your court bundle is ready{about}"
        what = f"The court bundle you asked for{' of case ' + reference if reference else ''}"
        what += " is ready to download."
    else:  # SUBMISSION_RECEIVED
        subject = "A public submission has been received"
        what = "A member of the public has submitted footage to the evidence store."
    body = (
        f"{what}\n\n"
        f"Sign in to see it:\n{link}\n\n"
        "This message holds no footage or case detail: everything is behind the sign-in.\n"
        "It was sent automatically; replies are not read.\n"
    )
    return subject[:MAX_SUBJECT], body[:MAX_BODY]


def notify_in(
    s: Session,
    settings: Settings,
    kind: str,
    user_id: str,
    *,
    case_id: str | None = None,
    detail: str | None = None,
    path: str | None = None,
) -> str | None:
    """Queue a notification to `user_id` in the caller's transaction (it is sent only if that
    commits). `case_id` is the case it is about, if any (the link opens it; its reference is
    named only if the recipient may see the case); `detail` is a short fact the kind prints
    (a share's expiry); `path` is the page the link opens instead (under /ui/, e.g. a
    submission's). Returns the notification's id, or None when nothing is queued: no
    SMTP server configured, no such user, a disabled account or one without an address."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    if path is not None and (not path.startswith("/ui/") or any(c.isspace() for c in path)):
        raise ValueError(f"a notification links to a page under /ui/, not {path!r}")
    if not enabled(settings):
        return None
    user = s.get(User, user_id)
    if user is None or user.disabled or not user.email:
        return None
    subject, body = _message(s, settings, kind, user, case_id, detail, path)
    row = Notification(
        kind=kind,
        user_id=user.id,
        subject=subject,
        body=body,
        state=QUEUED,
        attempts=0,
        created_at=clock.now(),
    )
    s.add(row)
    s.flush()
    outbox.add(s, queue.SEND_NOTIFICATION, row.id)
    return row.id


def send(ctx: Context, notification_id: str) -> str:
    """Deliver one queued notification (the worker's task). Returns its state: "sent", or
    "failed" for a permanent refusal; raises TemporaryFailure for one worth retrying (the
    attempt is counted). A message no longer queued is left as it is."""
    settings = ctx.settings
    with ctx.db.write_session() as s:
        row = s.get(Notification, notification_id)
        if row is None or row.state != QUEUED:
            return row.state if row else FAILED
        row.attempts += 1
        user = s.get(User, row.user_id)
        address = user.email if user is not None and not user.disabled else None
        subject, body, kind, user_id = row.subject, row.body, row.kind, row.user_id
    if not enabled(settings):
        return _finish(ctx, notification_id, FAILED, "no SMTP server is configured")
    if not address:
        return _finish(ctx, notification_id, FAILED, "the recipient has no e-mail address")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.smtp_from, address, subject
    msg["Message-ID"] = make_msgid(idstring=notification_id)
    msg.set_content(body)
    try:
        _deliver(settings, msg)
    except TemporaryFailure as exc:
        _record_error(ctx, notification_id, str(exc))
        raise
    except (smtplib.SMTPException, ssl.SSLCertVerificationError, ValueError) as exc:
        return _finish(ctx, notification_id, FAILED, f"refused: {exc}")
    return _finish(ctx, notification_id, SENT, None, kind=kind, user_id=user_id)


def _deliver(settings: Settings, msg: EmailMessage) -> None:
    host, port, timeout = (
        settings.smtp_host or "",
        settings.smtp_port,
        settings.smtp_timeout_seconds,
    )
    try:
        if settings.smtp_security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if settings.smtp_security == "starttls":
                client.starttls(context=ssl.create_default_context())
            password = settings.resolved_smtp_password()
            if settings.smtp_username and password is not None:
                client.login(settings.smtp_username, password)
            refused = client.send_message(msg)
            if refused:  # one recipient, so this means it was refused
                raise smtplib.SMTPRecipientsRefused(refused)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if all(400 <= code < 500 for code in codes):
            raise TemporaryFailure(f"recipient deferred: {exc.recipients}") from exc
        raise
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise TemporaryFailure(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
        raise
    except ssl.SSLCertVerificationError:
        raise  # the server is not who it claims to be: trying again will not change that
    except (smtplib.SMTPServerDisconnected, OSError) as exc:  # no connection, a timeout
        raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc


def _record_error(ctx: Context, notification_id: str, error: str) -> None:
    with ctx.db.write_session() as s:
        row = s.get(Notification, notification_id)
        if row is not None:
            row.last_error = error[:MAX_ERROR]


def _finish(
    ctx: Context,
    notification_id: str,
    state: str,
    error: str | None,
    *,
    kind: str | None = None,
    user_id: str | None = None,
) -> str:
    with ctx.db.write_session() as s:
        row = s.get(Notification, notification_id)
        if row is None or row.state != QUEUED:
            return row.state if row else state
        row.state, row.finished_at = state, clock.now()
        if error:
            row.last_error = error[:MAX_ERROR]
        if state == SENT:
            ctx.ledger.append_in(
                s,
                "notification.sent",
                actor="system:notifications",
                subject={"user": user_id},
                kind=kind,
                notification=notification_id,
            )
    if state == FAILED:
        log.warning("notification %s not sent: %s", notification_id, error)
    return state


def give_up(ctx: Context, notification_id: str, error: str) -> str:
    """Mark a notification failed after its last retry (the task's call)."""
    return _finish(ctx, notification_id, FAILED, f"gave up after retries: {error}")


def failed_count(ctx: Context) -> int:
    """Notifications that were never delivered: for /metrics."""
    with ctx.db.session() as s:
        return int(
            s.scalar(
                select(func.count()).select_from(Notification).where(Notification.state == FAILED)
            )
            or 0
        )


def unsent_notifications(ctx: Context, older_than: dt.timedelta) -> list[str]:
    """Notifications still queued `older_than` after they were made: their task was lost.
    The scheduler's sweep (evidence/recovery.py) queues them again; sending skips a message
    that is no longer queued, so a slow one is not sent twice by this."""
    cutoff = clock.now() - older_than
    with ctx.db.session() as s:
        return list(
            s.scalars(
                select(Notification.id).where(
                    Notification.state == QUEUED, Notification.created_at < cutoff
                )
            )
        )
