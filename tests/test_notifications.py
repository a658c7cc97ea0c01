"""E-mail notifications against a real SMTP server on loopback (aiosmtpd): a share and a
ready bundle each send exactly one message to the right address with the right link;
nothing is queued when no SMTP server is configured; a server that turns a message away for
now is tried again and then the failure is recorded; the event succeeds with the SMTP
server down. The messages go the whole way: the event's outbox row, relayed to the worker's
task (run in this process, its retries too), smtplib, the server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from evidence import clock, notifications, outbox, queue
from evidence.accounts.service import create_user, set_email
from evidence.cases.service import create_case
from evidence.cases.shares import share_case
from evidence.config import Settings
from evidence.context import Context
from evidence.errors import InvalidInput
from evidence.notifications import Notification
from tests.fixtures.databases import make_settings
from tests.fixtures.people import PASSWORD, principal
from tests.fixtures.services import free_port
from tests.fixtures.smtp import Inbox
from tests.fixtures.worlds import ledger_entries
from workers import tasks


def _smtp_settings(port: int) -> dict[str, object]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_from": "evidence@force.example",
        "smtp_max_retries": 2,
        "notify_public_url": "https://evidence.force.example/",
    }


def _context(tmp_path: Path, sqlite_url: str, **overrides: object) -> Context:
    return Context(make_settings(tmp_path, sqlite_url, **overrides))


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Relay the outbox to the worker's notification task, run in this process (eagerly:
    its retries run at once, one after the other); returns how many notifications ran."""

    def run(ctx: Context) -> int:
        monkeypatch.setattr(tasks, "_ctx", ctx)
        ran: list[str] = []

        def send(task: str, args: list[Any]) -> None:
            if task == queue.SEND_NOTIFICATION:  # other work (a bundle's build) is the test's
                tasks.send_notification.apply(args=args)
                ran.append(args[0])

        outbox.relay(ctx, send)
        return len(ran)

    return run


def _people(ctx: Context) -> None:
    create_user(ctx, "eo_brown", "evidence_officer", PASSWORD)
    create_user(ctx, "cps_green", "cps", PASSWORD)
    set_email(ctx, None, "cps_green", "priya.green@cps.example")
    set_email(ctx, None, "eo_brown", "sam.brown@force.example")


def _share(ctx: Context) -> tuple[str, dict[str, Any]]:
    eo = principal(ctx, "eo_brown")
    case = create_case(ctx, eo, "R v Doe", "URN 01")
    expires = clock.now() + dt.timedelta(days=7)
    return case["id"], share_case(
        ctx,
        eo,
        case["id"],
        username="cps_green",
        expires_at=expires,
        purpose="Charging decision",
        legal_basis="CPIA 1996 disclosure to the prosecutor",
    )


def _rows(ctx: Context) -> list[Notification]:
    with ctx.db.session() as s:
        return list(s.scalars(select(Notification)))


def _sent_entries(ctx: Context) -> list[dict[str, Any]]:
    return ledger_entries(ctx, "notification.sent")


def test_a_share_sends_one_message_to_the_recipient_with_a_link(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int], worker
) -> None:
    inbox, port = smtp
    ctx = _context(tmp_path, sqlite_url, **_smtp_settings(port))
    _people(ctx)
    case_id, _ = _share(ctx)
    assert worker(ctx) == 1
    assert worker(ctx) == 0  # nothing left in the outbox
    # The task delivered twice (a worker that died before acknowledging) sends nothing more.
    tasks.send_notification.apply(args=[_rows(ctx)[0].id])
    assert len(inbox.messages) == 1
    to, msg = inbox.messages[0]
    assert to == ["priya.green@cps.example"] and msg["To"] == "priya.green@cps.example"
    assert msg["From"] == "evidence@force.example"
    assert "URN 01" in msg["Subject"]  # the recipient may see the case: its reference is named
    body = msg.get_payload(decode=True).decode()
    assert f"https://evidence.force.example/ui/cases/{case_id}" in body.splitlines()
    assert "R v Doe" not in body  # the title stays behind the sign-in
    [row] = _rows(ctx)
    assert (row.state, row.attempts, row.kind) == ("sent", 1, notifications.SHARE_CREATED)
    [entry] = _sent_entries(ctx)
    assert entry["kind"] == "share.created" and entry["subject"]["user"] == row.user_id
    assert "priya.green@cps.example" not in str(entry)  # the user id, never the address


def test_nothing_is_queued_without_an_smtp_server(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int], worker
) -> None:
    inbox, _ = smtp
    ctx = _context(tmp_path, sqlite_url)  # no EVIDENCE_SMTP_HOST
    _people(ctx)
    _, share = _share(ctx)
    assert share["active"]
    assert _rows(ctx) == [] and outbox.pending(ctx) == 0
    assert worker(ctx) == 0 and inbox.messages == []


def test_no_address_no_message(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int], worker
) -> None:
    inbox, port = smtp
    ctx = _context(tmp_path, sqlite_url, **_smtp_settings(port))
    _people(ctx)
    set_email(ctx, None, "cps_green", "")
    _share(ctx)
    assert _rows(ctx) == [] and worker(ctx) == 0 and inbox.messages == []


def test_a_deferring_server_is_retried_then_the_failure_is_recorded(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int], worker
) -> None:
    inbox, port = smtp
    inbox.refuse = "451 4.3.0 try again later"
    ctx = _context(tmp_path, sqlite_url, **_smtp_settings(port))
    _people(ctx)
    _share(ctx)
    assert worker(ctx) == 1
    assert inbox.refused == 3 and inbox.messages == []  # the first try and two retries
    [row] = _rows(ctx)
    assert (row.state, row.attempts) == ("failed", 3)
    assert "451" in (row.last_error or "")
    assert notifications.failed_count(ctx) == 1 and _sent_entries(ctx) == []


def test_a_refusing_server_fails_at_once(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int], worker
) -> None:
    inbox, port = smtp
    inbox.refuse = "550 5.1.1 no such mailbox"
    ctx = _context(tmp_path, sqlite_url, **_smtp_settings(port))
    _people(ctx)
    _share(ctx)
    worker(ctx)
    [row] = _rows(ctx)
    assert (row.state, row.attempts, inbox.refused) == ("failed", 1, 1)
    assert "550" in (row.last_error or "")


def test_starttls_is_not_skipped_when_the_server_lacks_it(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int], worker
) -> None:
    inbox, port = smtp
    ctx = _context(tmp_path, sqlite_url, **{**_smtp_settings(port), "smtp_security": "starttls"})
    _people(ctx)
    _share(ctx)
    worker(ctx)
    [row] = _rows(ctx)
    assert row.state == "failed" and inbox.messages == []  # never sent in the clear


def test_the_share_succeeds_with_the_smtp_server_down(
    tmp_path: Path, sqlite_url: str, worker
) -> None:
    ctx = _context(tmp_path, sqlite_url, **_smtp_settings(free_port()))  # nothing listens
    _people(ctx)
    case_id, share = _share(ctx)
    assert share["active"] and share["case_id"] == case_id
    assert len(ledger_entries(ctx, "share.created")) == 1
    assert worker(ctx) == 1
    [row] = _rows(ctx)
    assert (row.state, row.attempts) == ("failed", 3)
    assert notifications.failed_count(ctx) == 1


def test_an_address_is_a_plain_address(tmp_path: Path, sqlite_url: str) -> None:
    ctx = _context(tmp_path, sqlite_url)
    _people(ctx)
    for bad in ("priya@cps.example\r\nBcc: all@example.org", "Priya <p@cps.example>", "x" * 260):
        with pytest.raises(InvalidInput):
            set_email(ctx, None, "cps_green", bad)
    entries = ledger_entries(ctx, "user.updated")
    assert [e["email_set"] for e in entries] == [True, True]
    assert all("@" not in str(e) for e in entries)


def test_a_ready_bundle_tells_who_asked_for_it(
    shared_world, smtp: tuple[Inbox, int], worker
) -> None:
    from evidence.bundles.service import build_bundle, request_bundle

    inbox, port = smtp
    _, world_ctx, case_id, clip_ids = shared_world
    ctx = Context(world_ctx.settings.model_copy(update=_smtp_settings(port)))
    set_email(ctx, None, "eo_brown", "sam.brown@force.example")
    set_email(ctx, None, "cps_green", "priya.green@cps.example")
    bundle = request_bundle(ctx, principal(ctx, "eo_brown"), case_id)
    assert worker(ctx) == 0  # requested: nobody is told yet
    assert build_bundle(ctx, bundle["id"]) == "ready"
    assert worker(ctx) == 1
    [(to, msg)] = inbox.messages
    assert to == ["sam.brown@force.example"] and "ready" in msg["Subject"]
    body = msg.get_payload(decode=True).decode()
    assert f"https://evidence.force.example/ui/cases/{case_id}" in body.splitlines()
    assert build_bundle(ctx, bundle["id"]) == "ready"  # a second run of the build tells nobody
    assert worker(ctx) == 0 and len(inbox.messages) == 1


def test_settings_read_the_smtp_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret\n")
    assert Settings(smtp_password_file=secret).resolved_smtp_password() == "s3cret"
    assert Settings(smtp_password="env-pw").resolved_smtp_password() == "env-pw"
    assert Settings().resolved_smtp_password() is None


def test_a_submission_notice_links_where_asked_and_names_no_case_its_reader_cannot_see(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int], worker
) -> None:
    """The call other features make: `notify_in` in the event's transaction. A case the
    recipient may not see is not named; the link goes to the page the caller gives."""
    inbox, port = smtp
    ctx = _context(tmp_path, sqlite_url, **_smtp_settings(port))
    _people(ctx)
    case = create_case(ctx, principal(ctx, "eo_brown"), "R v Roe", "URN 77")  # not shared
    cps = principal(ctx, "cps_green").user_id
    with ctx.db.write_session() as s:
        with pytest.raises(ValueError):
            notifications.notify_in(s, ctx.settings, "unknown.kind", cps)
        with pytest.raises(ValueError):
            notifications.notify_in(
                s, ctx.settings, notifications.SUBMISSION_RECEIVED, cps, path="https://x.example/"
            )
        queued = notifications.notify_in(
            s,
            ctx.settings,
            notifications.SUBMISSION_RECEIVED,
            cps,
            case_id=case["id"],
            path="/ui/submissions/s-1",
        )
    assert queued is not None and worker(ctx) == 1
    [(to, msg)] = inbox.messages
    body = msg.get_payload(decode=True).decode()
    assert to == ["priya.green@cps.example"]
    assert "https://evidence.force.example/ui/submissions/s-1" in body.splitlines()
    assert "URN 77" not in msg["Subject"] + body and "R v Roe" not in body


def test_a_finished_public_submission_tells_the_officer_who_sent_the_link(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int], worker
) -> None:
    """The member of the public presses Send: the evidence officer who created the invitation
    gets one message pointing at the review queue, and nothing of what was sent."""
    from evidence.submissions import service as submissions

    inbox, port = smtp
    ctx = _context(tmp_path, sqlite_url, **_smtp_settings(port))
    _people(ctx)
    eo = principal(ctx, "eo_brown")
    link = submissions.create_invitation(ctx, eo, reference="INC-2041")
    source = submissions.Source.of("192.0.2.7", "a phone")
    photo = b"\xff\xd8\xff\xe0" + bytes(2000)  # a JPEG's magic; the type is sniffed
    f = submissions.add_file(ctx, link.token, source, filename="porch.jpg", size=len(photo))
    submissions.put_chunk(ctx, link.token, source, f.id, 0, photo)
    submissions.complete_file(ctx, link.token, source, f.id)
    assert worker(ctx) == 0  # a file arriving is not yet a submission
    submissions.finish(ctx, link.token, source, description="The porch camera, 9pm")
    assert worker(ctx) == 1
    [(to, msg)] = inbox.messages
    body = msg.get_payload(decode=True).decode()
    assert to == ["sam.brown@force.example"]
    assert "https://evidence.force.example/ui/submissions" in body.splitlines()
    assert "porch" not in (msg["Subject"] + body).lower()


def test_a_share_with_an_organisation_tells_each_member_with_an_address(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Inbox, int], worker
) -> None:
    from evidence.accounts.organisations import create_organisation, set_member

    inbox, port = smtp
    ctx = _context(tmp_path, sqlite_url, **_smtp_settings(port))
    _people(ctx)
    firm = create_organisation(ctx, None, "Doe & Co", "defence_firm")
    for name, email in (("def_grey", "grey@doe.example"), ("def_kay", None)):
        create_user(ctx, name, "external", PASSWORD)
        set_member(ctx, None, name, firm["id"])
        if email:
            set_email(ctx, None, name, email)
    eo = principal(ctx, "eo_brown")
    case = create_case(ctx, eo, "R v Doe", "URN 02")
    share_case(
        ctx,
        eo,
        case["id"],
        organisation_id=firm["id"],
        expires_at=clock.now() + dt.timedelta(days=7),
        purpose="Initial disclosure",
        legal_basis="CPIA 1996 s.3",
    )
    assert worker(ctx) == 1  # def_kay has no address: nothing is queued for them
    assert [to for to, _ in inbox.messages] == [["grey@doe.example"]]
