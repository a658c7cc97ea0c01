"""The scheduler's sweep for lost work (evidence/recovery.py), on both databases: a bundle
whose task was lost after the relay sent it, a bundle whose worker died mid-build, and a
redaction, an accepted public submission and an e-mail whose task was lost are each queued
again through the outbox once they are old
enough, and the second delivery finishes the work; work done, or still waiting in the
outbox, is left alone."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from sqlalchemy import update

from evidence import clock, notifications, outbox, queue
from evidence.accounts.models import User
from evidence.accounts.service import create_user
from evidence.bundles.models import Bundle, BundleState
from evidence.bundles.service import build_bundle, request_bundle
from evidence.cases.service import add_items, create_case
from evidence.context import Context
from evidence.outbox import OutboxMessage, relay
from evidence.recovery import requeue_lost_work
from evidence.redactions import make_redaction, request_redaction
from evidence.submissions import service as submissions
from evidence.submissions.service import Source
from tests.fixtures.ingest import ingest_file
from tests.fixtures.people import PASSWORD, principal

AN_HOUR = dt.timedelta(hours=1)
REASON = "face of a bystander, not relevant to the charge"


class Killed(BaseException):
    """A worker killed mid-job: not an Exception, so nothing in the job records a failure."""


def lose(task: str, args: list[Any]) -> None:
    """A relay whose broker accepted the message and then lost it."""


def later(hours: float) -> None:
    at = clock.now() + dt.timedelta(hours=hours)
    clock.set_clock(lambda: at)  # conftest restores the system clock afterwards


def waiting(ctx: Context) -> list[tuple[str, list[str]]]:
    with ctx.db.session() as s:
        return [(m.task, list(m.args)) for m in s.query(OutboxMessage).order_by(OutboxMessage.id)]


@pytest.fixture
def officer(ctx: Context):  # type: ignore[no-untyped-def]
    create_user(ctx, "eo_brown", "evidence_officer", PASSWORD)
    return principal(ctx, "eo_brown")


@pytest.fixture
def clip_id(ctx: Context, clip_mov) -> str:  # type: ignore[no-untyped-def]
    made = ingest_file(ctx, clip_mov, metadata={"officer_id": "PC1234"})
    relay(ctx, lose)  # its processing ran in-process: the hand-over's row is done with
    return made


def a_bundle(ctx: Context, officer, clip_id: str) -> str:  # type: ignore[no-untyped-def]
    case = create_case(ctx, officer, "Assault, High Street", "INC-7")
    add_items(ctx, officer, case["id"], [clip_id])
    return request_bundle(ctx, officer, case["id"])["id"]


def bundle_state(ctx: Context, bundle_id: str) -> str:
    with ctx.db.session() as s:
        b = s.get(Bundle, bundle_id)
        assert b is not None
        return b.state


def test_a_bundle_whose_task_was_lost_is_queued_again(ctx: Context, officer, clip_id: str) -> None:  # type: ignore[no-untyped-def]
    bundle_id = a_bundle(ctx, officer, clip_id)
    assert waiting(ctx) == [(queue.BUILD_BUNDLE, [bundle_id])], "written with the request"
    assert relay(ctx, lose).sent == 1  # sent, and lost
    assert requeue_lost_work(ctx, AN_HOUR).bundles == [], "not old enough to count as lost"
    later(2)
    assert requeue_lost_work(ctx, AN_HOUR).bundles == [bundle_id]
    assert waiting(ctx) == [(queue.BUILD_BUNDLE, [bundle_id])]
    assert requeue_lost_work(ctx, AN_HOUR).bundles == [], "already waiting in the outbox"
    assert relay(ctx, lambda task, args: build_bundle(ctx, *args)).sent == 1
    assert bundle_state(ctx, bundle_id) == BundleState.ready
    assert requeue_lost_work(ctx, AN_HOUR).bundles == []


def test_a_bundle_whose_worker_died_mid_build_is_queued_again(
    ctx: Context,
    officer,  # type: ignore[no-untyped-def]
    clip_id: str,
) -> None:
    bundle_id = a_bundle(ctx, officer, clip_id)

    def dies(pct: int) -> None:
        raise Killed

    def worker(task: str, args: list[Any]) -> None:
        with pytest.raises(Killed):
            build_bundle(ctx, *args, progress=dies)

    assert relay(ctx, worker).sent == 1
    assert bundle_state(ctx, bundle_id) == BundleState.building, "left as the worker died"
    later(2)
    assert requeue_lost_work(ctx, AN_HOUR).bundles == [bundle_id]
    assert relay(ctx, lambda task, args: build_bundle(ctx, *args)).sent == 1
    assert bundle_state(ctx, bundle_id) == BundleState.ready


def test_a_redaction_whose_task_was_lost_is_queued_again(
    ctx: Context,
    officer,  # type: ignore[no-untyped-def]
    clip_id: str,
) -> None:
    box = {"x": 10, "y": 10, "w": 100, "h": 80, "start_ms": 0, "end_ms": 1000}
    asked = request_redaction(ctx, officer, clip_id, [box], [], REASON)
    kind = asked["kind"]
    assert waiting(ctx) == [(queue.MAKE_REDACTION, [clip_id, kind])]
    assert relay(ctx, lose).sent == 1
    assert requeue_lost_work(ctx, AN_HOUR).redactions == []
    later(2)
    assert requeue_lost_work(ctx, AN_HOUR).redactions == [(clip_id, kind)]
    assert relay(ctx, lambda task, args: make_redaction(ctx, *args)).sent == 1
    assert requeue_lost_work(ctx, AN_HOUR).redactions == [], "made: nothing owed"
    assert outbox.pending(ctx) == 0


def test_an_accepted_submission_whose_processing_was_lost_is_queued_again(
    ctx: Context,
    officer,  # type: ignore[no-untyped-def]
) -> None:
    source = Source.of("198.51.100.4", "test")
    link = submissions.create_invitation(ctx, officer, reference="INC-7")
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)
    f = submissions.add_file(ctx, link.token, source, filename="door.png", size=len(png))
    submissions.put_chunk(ctx, link.token, source, f.id, 0, png)
    submissions.complete_file(ctx, link.token, source, f.id)
    submissions.finish(ctx, link.token, source, description="the front door")
    relay(ctx, lose)  # whatever finishing handed over (an e-mail) is not this test's
    clip = submissions.accept(ctx, officer, f.id, reason="shows the door at the time")["clip_id"]
    assert waiting(ctx) == [(queue.PROCESS_SUBMISSION, [clip])]
    assert relay(ctx, lose).sent == 1
    assert requeue_lost_work(ctx, AN_HOUR).submissions == []
    later(2)
    assert requeue_lost_work(ctx, AN_HOUR).submissions == [clip]
    assert relay(ctx, lambda task, args: submissions.process_accepted(ctx, *args)).sent == 1
    assert requeue_lost_work(ctx, AN_HOUR).submissions == [], "processed: nothing owed"


def test_a_notification_whose_task_was_lost_is_queued_again(
    ctx: Context,
    officer,  # type: ignore[no-untyped-def]
) -> None:
    ctx.settings = ctx.settings.model_copy(update={"smtp_host": "127.0.0.1"})
    with ctx.db.write_session() as s:
        s.execute(update(User).where(User.id == officer.user_id).values(email="eo@force.example"))
    with ctx.db.write_session() as s:
        sent = notifications.notify_in(
            s, ctx.settings, notifications.SUBMISSION_RECEIVED, officer.user_id
        )
    assert sent is not None and waiting(ctx) == [(queue.SEND_NOTIFICATION, [sent])]
    assert relay(ctx, lose).sent == 1
    assert requeue_lost_work(ctx, AN_HOUR).notifications == []
    later(2)
    assert requeue_lost_work(ctx, AN_HOUR).notifications == [sent]
    assert requeue_lost_work(ctx, AN_HOUR).notifications == [], "already waiting in the outbox"
    relay(ctx, lambda task, args: notifications.give_up(ctx, args[0], "no mail server here"))
    later(4)
    assert len(requeue_lost_work(ctx, AN_HOUR)) == 0, "failed for good: not sent again"
