"""The scheduler's sweep for lost work (evidence/recovery.py), on both databases: a bundle
whose task was lost after the relay sent it, a bundle whose worker died mid-build and a
redaction whose task was lost are each queued again through the outbox once they are old
enough, and the second delivery finishes the work; work done, or still waiting in the
outbox, is left alone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from evidence import clock, outbox, queue
from evidence.accounts.service import create_user
from evidence.bundles.models import Bundle, BundleState
from evidence.bundles.service import build_bundle, request_bundle
from evidence.cases.service import add_items, create_case
from evidence.context import Context
from evidence.outbox import OutboxMessage, relay
from evidence.recovery import requeue_lost_work
from evidence.redactions import make_redaction, request_redaction
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
