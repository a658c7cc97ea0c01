"""Retention: non-evidential footage goes on day 32 with a tombstone; holds keep clips; the
evidence officer decides the rest; locked originals refuse deletion. Time is injected
(evidence.clock), never waited for."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import pytest
from minio import Minio
from minio.error import S3Error

from evidence import clock
from evidence.access import Principal
from evidence.accounts.models import Role
from evidence.accounts.service import create_user
from evidence.cases.service import add_items, close_case, create_case
from evidence.clips.models import Clip, Derivative
from evidence.clips.service import open_footage, set_category
from evidence.config import RetentionRule
from evidence.context import Context
from evidence.errors import (
    AccessDenied,
    Conflict,
    Disposed,
    InvalidInput,
    ObjectLocked,
    WriteOnceViolation,
)
from evidence.retention import service as retention
from evidence.retention.models import Disposal
from evidence.storage import original_key
from evidence.verify.ledger import verify_ledger
from evidence.verify.ledger_db import DatabaseSource
from evidence.verify.report import Report
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.ingest import distinct_copy, ingest_file
from tests.fixtures.people import make_force

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

DAY = dt.timedelta(days=1)


@pytest.fixture
def lite(tmp_path: Path, sqlite_url: str) -> Context:
    """SQLite only: for behaviour the engine does not change (the SQL the policy runs is
    covered on both engines by the day-32 and hold tests)."""
    return Context(make_settings(tmp_path, sqlite_url))


def person(ctx: Context, name: str, role: str) -> Principal:
    user = create_user(ctx, name, role, "correct horse battery staple")
    return Principal(user.id, user.username, Role(user.role), user.officer_id)


def at(moment: dt.datetime) -> None:
    clock.set_clock(lambda: moment)


def entries(ctx: Context, type_: str, clip_id: str | None = None) -> list[dict]:
    found = [json.loads(e) for _, e in ctx.ledger.entries(0, ctx.ledger.size())]
    return [
        e
        for e in found
        if e["type"] == type_ and (clip_id is None or e["subject"].get("clip") == clip_id)
    ]


def clip_row(ctx: Context, clip_id: str) -> Clip:
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
        assert clip is not None
        return clip


def stored_keys(ctx: Context, clip_id: str) -> list[str]:
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
        derived = [d.key for d in s.query(Derivative).filter(Derivative.clip_id == clip_id)]
    return [original_key(clip.sha256), *derived]  # type: ignore[union-attr]


def test_non_evidential_clip_is_disposed_of_on_day_32_with_its_tombstone(
    ctx: Context,
    clip_1080p,
) -> None:
    day0 = clock.now().replace(microsecond=0)
    at(day0)
    clip_id = ingest_file(ctx, clip_1080p)  # no category: non-evidential, clock from recording
    keys = stored_keys(ctx, clip_id)
    assert len(keys) == 3, "original, proxy and thumbnail"
    clip = clip_row(ctx, clip_id)
    assert clip.retain_until == day0 + 31 * DAY and clip.locked_until == clip.retain_until
    assert clip.retention_rule == "non-evidential: 31 days, disposed automatically"
    officer = person(ctx, "eo_brown", "evidence_officer")
    preview = retention.schedule(ctx, officer, within_days=31)
    assert [(p["clip_id"], p["outcome"]) for p in preview] == [(clip_id, "disposed automatically")]

    at(day0 + 20 * DAY)  # the local store enforces the lock as S3 would
    with pytest.raises(ObjectLocked):
        ctx.store.delete(keys[0])
    at(day0 + 31 * DAY - dt.timedelta(minutes=1))
    assert retention.sweep(ctx).disposed == 0
    assert all(ctx.store.exists(k) for k in keys)

    at(day0 + 32 * DAY)
    report = retention.sweep(ctx)
    assert (report.queued, report.auto_approved, report.disposed) == (1, 1, 1)
    assert not any(ctx.store.exists(k) for k in keys), "original and derivatives are gone"
    clip = clip_row(ctx, clip_id)
    assert clip.state == "disposed" and clip.disposed_at == day0 + 32 * DAY
    [tomb] = entries(ctx, "clip.disposed", clip_id)
    assert tomb["sha256"] == clip_1080p.sha256 and tomb["size"] == clip_1080p.size
    assert (
        tomb["approved_by"] == "policy:non-evidential" and tomb["actor"] == "policy:non-evidential"
    )
    assert tomb["rule"] == clip.retention_rule and "31-day" in tomb["reason"]
    assert {d["kind"] for d in tomb["derivatives"]} == {"proxy", "thumbnail"}
    # The ledger still proves the clip existed and when it went, and it verifies whole.
    assert entries(ctx, "clip.ingested", clip_id)[0]["sha256"] == tomb["sha256"]
    source = DatabaseSource(ctx.settings.resolved_database_url(), ctx.ledger.verifier_key)
    assert verify_ledger(source, Report(), key=ctx.ledger.verifier_key).ok
    with pytest.raises(Disposed, match="disposed of"):
        open_footage(ctx, officer, clip_id, "proxy", reason="investigation", source_ip=None)
    assert retention.sweep(ctx).disposed == 0, "a repeated sweep has nothing left to do"
    assert len(entries(ctx, "clip.disposed", clip_id)) == 1


def test_a_held_clip_survives_until_the_hold_is_released(
    ctx: Context, clip_1080p, tmp_path: Path
) -> None:
    day0 = clock.now().replace(microsecond=0)
    at(day0)
    held_id = ingest_file(ctx, clip_1080p)
    free_id = ingest_file(ctx, distinct_copy(clip_1080p, tmp_path, "free"))
    officer = person(ctx, "eo_brown", "evidence_officer")
    case = create_case(ctx, officer, "R v Doe", "URN 42")
    add_items(ctx, officer, case["id"], [held_id])
    hold = retention.place_hold(
        ctx, officer, case_id=case["id"], reason="Crown Court order 17/2026"
    )
    # Closed, so the exhibit rule no longer keeps it: here the hold alone does.
    close_case(ctx, officer, case["id"], reason="verdict given")
    assert ctx.store.stat(original_key(clip_row(ctx, held_id).sha256)).legal_hold
    assert not ctx.store.stat(original_key(clip_row(ctx, free_id).sha256)).legal_hold
    scheduled = retention.schedule(ctx, officer, within_days=40)
    assert {p["clip_id"]: p["held"] for p in scheduled} == {held_id: True, free_id: False}

    at(day0 + 32 * DAY)
    assert retention.sweep(ctx).disposed == 1
    assert clip_row(ctx, free_id).state == "disposed"
    assert clip_row(ctx, held_id).state != "disposed", "the hold keeps it"
    with pytest.raises(ObjectLocked):  # and storage refuses too, retention date or not
        ctx.store.delete(original_key(clip_row(ctx, held_id).sha256))
    assert retention.sweep(ctx).disposed == 0

    at(day0 + 40 * DAY)
    retention.release_hold(ctx, officer, hold["id"], reason="case concluded, no appeal")
    assert not ctx.store.stat(original_key(clip_row(ctx, held_id).sha256)).legal_hold
    with pytest.raises(Conflict):
        retention.release_hold(ctx, officer, hold["id"], reason="again")
    assert clip_row(ctx, held_id).state != "disposed", "a release never disposes by itself"
    report = retention.sweep(ctx)
    assert (report.queued, report.auto_approved, report.disposed) == (1, 0, 0), (
        "a former exhibit is reviewed by a person, never disposed of automatically"
    )
    [pending] = retention.queue(ctx, officer)
    retention.approve(ctx, officer, pending["id"], reason="case concluded, no appeal")
    assert clip_row(ctx, held_id).state == "disposed"
    kinds = [e["type"] for e in entries(ctx, "hold.placed") + entries(ctx, "hold.released")]
    assert kinds == ["hold.placed", "hold.released"]


def test_a_clip_added_to_a_held_case_is_held_in_storage_too(lite: Context, clip_1080p) -> None:
    ctx = lite
    clip_id = ingest_file(ctx, clip_1080p)
    officer = person(ctx, "eo_brown", "evidence_officer")
    case = create_case(ctx, officer, "R v Roe", "URN 43")
    retention.place_hold(ctx, officer, case_id=case["id"], reason="preservation notice")
    key = original_key(clip_row(ctx, clip_id).sha256)
    assert not ctx.store.stat(key).legal_hold
    add_items(ctx, officer, case["id"], [clip_id])
    assert ctx.store.stat(key).legal_hold
    with ctx.db.session() as s:
        assert retention.is_held(s, clip_id)


def test_a_hold_placed_after_approval_stops_the_disposal(lite: Context, clip_1080p) -> None:
    ctx = lite
    day0 = clock.now().replace(microsecond=0)
    at(day0)
    clip_id = ingest_file(ctx, clip_1080p)
    officer = person(ctx, "eo_brown", "evidence_officer")
    set_category(ctx, officer, clip_id, "evidential")
    at(day0 + (6 * 365 + 10) * DAY)
    assert retention.sweep(ctx).queued == 1
    [pending] = retention.queue(ctx, officer)
    retention.place_hold(ctx, officer, clip_id=clip_id, reason="complaint lodged with IOPC")
    assert retention.queue(ctx, officer) == [], "the hold cancels the pending disposal"
    assert retention.queue(ctx, officer, state="cancelled")[0]["id"] == pending["id"]
    assert retention.sweep(ctx).queued == 0 and clip_row(ctx, clip_id).state != "disposed"


def test_evidential_footage_waits_for_an_evidence_officer(
    ctx: Context, clip_1080p, tmp_path: Path
) -> None:
    day0 = clock.now().replace(microsecond=0)
    at(day0)
    kept_id = ingest_file(ctx, clip_1080p)
    gone_id = ingest_file(ctx, distinct_copy(clip_1080p, tmp_path, "second"))
    officer = person(ctx, "eo_brown", "evidence_officer")
    pc = person(ctx, "pc_smith", "officer")
    for clip_id in (kept_id, gone_id):
        set_category(ctx, officer, clip_id, "evidential")
    clip = clip_row(ctx, kept_id)
    six_years = day0 + 2192 * DAY
    assert clip.retain_until == six_years and clip.locked_until == six_years, "the lock is extended"
    assert ctx.store.stat(original_key(clip.sha256)).retain_until == six_years
    assert entries(ctx, "retention.scheduled", kept_id)[-1]["retain_until"] == clock.rfc3339(
        six_years
    )

    at(six_years + DAY)
    report = retention.sweep(ctx)
    assert (report.queued, report.auto_approved, report.disposed) == (2, 0, 0)
    queue = {d["clip_id"]: d for d in retention.queue(ctx, officer)}
    assert set(queue) == {kept_id, gone_id}
    with pytest.raises(AccessDenied):
        retention.approve(ctx, pc, queue[gone_id]["id"], reason="tidy up")
    kept = retention.retain(ctx, officer, queue[kept_id]["id"], reason="appeal pending")
    assert kept["state"] == "retained"
    assert clip_row(ctx, kept_id).retain_until == six_years + DAY + 365 * DAY
    done = retention.approve(
        ctx, officer, queue[gone_id]["id"], reason="MoPI review: no further need"
    )
    assert done["state"] == "disposed"
    [tomb] = entries(ctx, "clip.disposed", gone_id)
    assert (
        tomb["approved_by"] == "user:eo_brown" and tomb["reason"] == "MoPI review: no further need"
    )
    assert clip_row(ctx, kept_id).state != "disposed"
    with pytest.raises(Conflict):
        retention.approve(ctx, officer, queue[gone_id]["id"], reason="twice")


def test_changes_schedule_with_notice_and_never_delete_at_once(lite: Context, clip_1080p) -> None:
    ctx = lite
    day0 = clock.now().replace(microsecond=0)
    at(day0)
    recorded = day0 - 40 * DAY  # docked late: already past 31 days when it arrives
    clip_id = ingest_file(ctx, clip_1080p, metadata={"recorded_at": clock.rfc3339(recorded)})
    clip = clip_row(ctx, clip_id)
    assert clip.recorded_at == recorded
    assert clip.retain_until == day0 + 7 * DAY, "notice, not instant disposal"
    assert retention.sweep(ctx).disposed == 0
    officer = person(ctx, "eo_brown", "evidence_officer")
    [due] = retention.schedule(ctx, officer, within_days=7)
    assert due["retain_until"] == clock.rfc3339(day0 + 7 * DAY)

    # The force changes its policy: clips are rescheduled, with notice from the change.
    at(day0 + 2 * DAY)
    rules = dict(ctx.settings.retention_rules)
    rules["non-evidential"] = RetentionRule(keep_days=14, auto_dispose=True)
    changed = Context(ctx.settings.model_copy(update={"retention_rules": rules}))
    report = retention.sweep(changed)
    assert report.rescheduled == 1 and report.disposed == 0
    clip = clip_row(changed, clip_id)
    assert clip.retention_rule == "non-evidential: 14 days, disposed automatically"
    assert clip.retain_until == day0 + 9 * DAY, "notice counts from the change"
    assert entries(changed, "retention.scheduled", clip_id)[-1]["actor"] == "system:retention"

    at(day0 + 8 * DAY)
    assert retention.sweep(changed).disposed == 0
    at(day0 + 9 * DAY)
    assert retention.sweep(changed).disposed == 1


def test_a_category_changed_back_keeps_what_the_lock_promised(lite: Context, clip_1080p) -> None:
    """A lock is never shortened (that is what makes it a lock): recategorising evidential
    footage as non-evidential schedules disposal for when its Object Lock lapses."""
    ctx = lite
    day0 = clock.now().replace(microsecond=0)
    at(day0)
    clip_id = ingest_file(ctx, clip_1080p)
    officer = person(ctx, "eo_brown", "evidence_officer")
    set_category(ctx, officer, clip_id, "evidential")
    set_category(ctx, officer, clip_id, "non-evidential")
    clip = clip_row(ctx, clip_id)
    assert clip.retain_until == clip.locked_until == day0 + 2192 * DAY
    [row] = retention.schedule(ctx, officer, within_days=2200)
    assert row["outcome"] == "disposed automatically"


def test_retention_routes_check_access(lite: Context, clip_1080p) -> None:
    ctx = lite
    clip_id = ingest_file(ctx, clip_1080p)
    with running_api(ctx.settings) as url:
        f = make_force(ctx, httpx.Client(base_url=url, timeout=30))
        eo, pc, adm = f.as_("eo_brown"), f.as_("pc_smith"), f.as_("adm_black")
        r = f.http.post("/api/v1/holds", headers=pc, json={"clip_id": clip_id, "reason": "mine"})
        assert r.status_code == 403
        r = f.http.post("/api/v1/holds", headers=eo, json={"clip_id": clip_id, "reason": "no"})
        assert r.status_code == 422, "a hold needs a real reason"
        r = f.http.post(
            "/api/v1/holds",
            headers=eo,
            json={"clip_id": clip_id, "case_id": "x", "reason": "both given"},
        )
        assert r.status_code == 422 and "one clip" in r.json()["detail"]
        r = f.http.post(
            "/api/v1/holds", headers=eo, json={"clip_id": clip_id, "reason": "court order 9/2026"}
        )
        assert r.status_code == 201, r.text
        hold_id = r.json()["id"]
        listed = f.http.get("/api/v1/holds", headers=adm).json()["items"]
        assert hold_id in {h["id"] for h in listed}
        sched = f.http.get("/api/v1/retention/schedule", headers=adm, params={"within_days": 40})
        assert sched.status_code == 200 and sched.json()["items"][0]["held"] is True
        assert f.http.get("/api/v1/retention/schedule", headers=pc).status_code == 403
        policy = f.http.get("/api/v1/retention/policy", headers=adm).json()
        assert policy["rules"]["non-evidential"]["keep_days"] == 31
        assert f.http.get("/api/v1/disposals", headers=eo).json() == {"items": []}
        assert (
            f.http.post(
                "/api/v1/disposals/nope/approve", headers=eo, json={"reason": "because"}
            ).status_code
            == 404
        )
        assert (
            f.http.post(
                "/api/v1/disposals/nope/approve", headers=adm, json={"reason": "because"}
            ).status_code
            == 403
        )
        r = f.http.post(f"/api/v1/holds/{hold_id}/release", headers=eo, json={"reason": "done now"})
        assert r.status_code == 204
        detail = f.http.get(f"/api/v1/clips/{clip_id}", headers=eo).json()
        assert detail["retention"]["rule"].startswith("non-evidential")


def test_hold_reasons_are_bounded_by_the_service(lite: Context, clip_1080p) -> None:
    """The service, not only the API's form limits, keeps a reason to 3-500 characters: it
    goes into the permanent ledger whoever calls."""
    ctx = lite
    clip_id = ingest_file(ctx, clip_1080p)
    eo = person(ctx, "eo_brown", "evidence_officer")
    before = ctx.ledger.size()
    for reason in ("x" * 501, "  ", "ab"):
        with pytest.raises(InvalidInput, match="3-500"):
            retention.place_hold(ctx, eo, clip_id=clip_id, reason=reason)
    assert ctx.ledger.size() == before and retention.list_holds(ctx, eo) == []
    hold = retention.place_hold(ctx, eo, clip_id=clip_id, reason=" " + "y" * 500 + " ")
    with pytest.raises(InvalidInput, match="3-500"):
        retention.release_hold(ctx, eo, hold["id"], reason="z" * 10_000)
    assert [e["reason"] for e in entries(ctx, "hold.placed")] == ["y" * 500]
    assert entries(ctx, "hold.released") == []


HOLD_WHY = "complaint against PC1234 lodged with professional standards"


def test_a_hold_reason_is_for_evidence_officers_and_auditors_only(ctx: Context, clip_1080p) -> None:
    """Anyone who reads a clip sees that it is held; only evidence officers (who place holds)
    and auditors read why: the reason can name an inquiry into the officer who recorded it.
    Neither the retention section nor the custody timeline's hold entries say it to others."""
    clip_id = ingest_file(ctx, clip_1080p, metadata={"officer_id": "PC1234"})
    with running_api(ctx.settings) as url:
        f = make_force(ctx, httpx.Client(base_url=url, timeout=30))
        r = f.http.post(
            "/api/v1/holds",
            headers=f.as_("eo_brown"),
            json={"clip_id": clip_id, "reason": HOLD_WHY},
        )
        assert r.status_code == 201, r.text
        hold_id = r.json()["id"]

        def seen_by(user: str) -> tuple[dict, list[dict]]:
            got = f.http.get(f"/api/v1/clips/{clip_id}", headers=f.as_(user))
            assert got.status_code == 200, got.text
            detail = got.json()
            held = [c for c in detail["custody"] if c["type"] == "hold.placed"]
            assert len(held) == 1 and held[0]["leaf_matches"], "the entry itself is shown"
            return detail["retention"], held

        for user in ("eo_brown", "aud_white"):
            section, (entry,) = seen_by(user)
            assert [(h["id"], h["reason"]) for h in section["holds"]] == [(hold_id, HOLD_WHY)]
            assert entry["entry"]["reason"] == HOLD_WHY and "withheld" not in entry
        (officer, (entry,)) = seen_by("pc_smith")
        assert [h["id"] for h in officer["holds"]] == [hold_id], "the hold itself is shown"
        assert officer["holds"][0]["reason"] is None and officer["holds"][0]["reason_withheld"]
        assert "reason" not in entry["entry"] and entry["withheld"] == ["reason"]
        assert (
            "professional standards"
            not in f.http.get(f"/api/v1/clips/{clip_id}", headers=f.as_("pc_smith")).text
        )
        # The holds list (admins may read it to run retention) follows the same rule.
        listed = f.http.get("/api/v1/holds", headers=f.as_("adm_black")).json()["items"]
        assert [(h["id"], h["reason"]) for h in listed] == [(hold_id, None)]
        listed = f.http.get("/api/v1/holds", headers=f.as_("eo_brown")).json()["items"]
        assert [(h["id"], h["reason"]) for h in listed] == [(hold_id, HOLD_WHY)]


# -- write-once storage on a real S3 server (Ceph RGW) ------------------------------------------


@pytest.fixture
def s3_ctx(s3_server, s3_bucket, tmp_path: Path, sqlite_url: str) -> Context:
    settings = s3_server.settings(s3_bucket, tmp_path, database_url=sqlite_url)
    from evidence.migrate import upgrade

    upgrade(settings.resolved_database_url())
    return Context(settings)


def test_a_locked_original_refuses_deletion_and_overwrite_on_s3(
    s3_ctx: Context, s3_server, s3_bucket, clip_1080p, tmp_path: Path
) -> None:
    ctx = s3_ctx
    clip_id = ingest_file(ctx, distinct_copy(clip_1080p, tmp_path, "s3-lock"))
    clip = clip_row(ctx, clip_id)
    key = original_key(clip.sha256)
    info = ctx.store.stat(key)
    assert info.retention_mode == "GOVERNANCE" and info.retain_until == clip.retain_until
    with pytest.raises(ObjectLocked):
        ctx.store.delete(key)
    with pytest.raises((WriteOnceViolation, ObjectLocked)):
        ctx.store.put(key, (tmp_path / "other").open("w+b"))
    # Not even a client that bypasses our code can remove the locked version.
    raw = Minio(
        s3_server.endpoint.split("://")[1],
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    version = raw.stat_object(s3_bucket, key).version_id
    with pytest.raises(S3Error):
        raw.remove_object(s3_bucket, key, version_id=version)
    # Our clock says day 32 (wrongly, say): the disposal is approved, storage refuses, and
    # nothing is lost; the disposal waits with the reason recorded.
    at(clip.retain_until + DAY)
    report = retention.sweep(ctx)
    assert report.disposed == 0 and len(report.waiting) == 1
    assert ctx.store.exists(key) and clip_row(ctx, clip_id).state != "disposed"
    with ctx.db.session() as s:
        assert "refused" in s.get(Disposal, report.waiting[0]).error  # type: ignore[union-attr]
    assert entries(ctx, "clip.disposed") == []


def test_holds_and_disposal_on_s3(s3_ctx: Context, clip_1080p, tmp_path: Path) -> None:
    ctx = s3_ctx.__class__(s3_ctx.settings.model_copy(update={"retention_notice_days": 0}))
    day0 = clock.now().replace(microsecond=0)
    old = clock.rfc3339(day0 - 40 * DAY)  # recorded 40 days ago: due already, so no lock
    held = ingest_file(
        ctx, distinct_copy(clip_1080p, tmp_path, "s3-held"), metadata={"recorded_at": old}
    )
    gone = ingest_file(
        ctx, distinct_copy(clip_1080p, tmp_path, "s3-gone"), metadata={"recorded_at": old}
    )
    officer = person(ctx, "eo_brown", "evidence_officer")
    retention.place_hold(ctx, officer, clip_id=held, reason="Crown Court order 3/2026")
    held_key = original_key(clip_row(ctx, held).sha256)
    assert ctx.store.stat(held_key).legal_hold
    with pytest.raises(ObjectLocked):
        ctx.store.delete(held_key)
    keys = stored_keys(ctx, gone)
    assert retention.sweep(ctx).disposed == 1
    assert not any(ctx.store.exists(k) for k in keys), "deleted on the S3 server, every version"
    assert clip_row(ctx, held).state != "disposed" and ctx.store.exists(held_key)


def test_the_scheduler_runs_the_sweep(tmp_path: Path) -> None:
    import workers.tasks  # noqa: F401  (registers the tasks, as the worker does at start)
    from evidence import queue
    from workers.app import make_celery

    app = make_celery(make_settings(tmp_path, "sqlite://", retention_sweep_seconds=900))
    entry = app.conf.beat_schedule["retention-sweep"]
    assert entry["task"] == queue.RETENTION_SWEEP and entry["task"] in app.tasks
    assert entry["schedule"] == 900.0


def test_settings_reject_a_rule_without_a_period() -> None:
    settings = make_settings(Path("/nonexistent"), "sqlite://")
    assert settings.retention_rules["violence"].keep_days is None
    assert settings.retention_rules["violence"].review_days == 3653
    with pytest.raises(ValueError):
        RetentionRule(keep_days=0)


def test_relock_puts_locks_and_holds_back_after_a_restore_on_s3(
    s3_ctx: Context, clip_1080p, tmp_path: Path
) -> None:
    """A restore with a copy tool that drops retention (mc mirror) leaves originals unlocked;
    `evidence retention relock` puts back what the database records."""
    ctx = s3_ctx.__class__(s3_ctx.settings.model_copy(update={"retention_notice_days": 0}))
    old = clock.rfc3339(clock.now() - 40 * DAY)  # already due, so ingest sets no lock
    clip_id = ingest_file(
        ctx, distinct_copy(clip_1080p, tmp_path, "s3-relock"), metadata={"recorded_at": old}
    )
    key = original_key(clip_row(ctx, clip_id).sha256)
    lapsed = ctx.store.stat(key).retain_until
    assert lapsed is None or lapsed <= clock.now() + dt.timedelta(seconds=2), "at most a moment"
    until = clock.now().replace(microsecond=0) + 30 * DAY
    with ctx.db.write_session() as s:  # the restored database says: locked for 30 more days
        s.get(Clip, clip_id).retain_until = until  # type: ignore[union-attr]
    retention.place_hold(
        ctx,
        person(ctx, "eo_brown", "evidence_officer"),
        clip_id=clip_id,
        reason="preservation notice",
    )
    ctx.store.set_legal_hold(key, False)  # ...and the copy lost the hold flag too
    assert retention.relock_all(ctx) == (1, 1)
    info = ctx.store.stat(key)
    assert info.retain_until == until and info.legal_hold
    assert retention.relock_all(ctx) == (1, 1), "idempotent"


def test_a_bundle_carries_a_disposed_exhibit_as_its_tombstone(
    lite: Context, clip_1080p, tmp_path: Path
) -> None:
    """The court sees that the exhibit existed, its hash, and when and why it was deleted;
    the bundle still verifies with our verifier and with sha256sum."""
    import subprocess
    import zipfile

    from typer.testing import CliRunner

    from cli.main import app
    from evidence.bundles.service import build_bundle, request_bundle

    ctx = lite
    day0 = clock.now().replace(microsecond=0)
    at(day0)
    kept = ingest_file(ctx, clip_1080p)
    gone = ingest_file(ctx, distinct_copy(clip_1080p, tmp_path, "bundle-gone"))
    officer = person(ctx, "eo_brown", "evidence_officer")
    set_category(ctx, officer, kept, "evidential")
    case = create_case(ctx, officer, "R v Poe", "URN 44")
    add_items(ctx, officer, case["id"], [kept, gone])
    # Pinned while both clips exist (other options than the next: a bundle of its own).
    early = request_bundle(ctx, officer, case["id"], include_proxies=True)
    built = request_bundle(ctx, officer, case["id"])
    assert build_bundle(ctx, built["id"]) == "ready"  # carries the clip's bytes
    assert ctx.store.exists(f"bundles/{built['id']}.zip")
    close_case(ctx, officer, case["id"], reason="no further action")  # or it is kept

    at(day0 + 32 * DAY)
    assert retention.sweep(ctx).queued == 1, "the uncategorised former exhibit, for review"
    [pending] = retention.queue(ctx, officer)
    retention.approve(ctx, officer, pending["id"], reason="no further action, not evidential")
    assert clip_row(ctx, gone).state == "disposed"
    # A bundle built before carried a copy of the footage: it goes with it, and says why.
    assert not ctx.store.exists(f"bundles/{built['id']}.zip")
    [tomb] = entries(ctx, "clip.disposed", gone)
    assert built["id"] in tomb["bundles"]
    with ctx.db.session() as s:
        from evidence.bundles.models import Bundle as B

        gone_bundle = s.get(B, built["id"])
        assert gone_bundle is not None and gone_bundle.state == "disposed"
    from evidence.bundles.service import open_download

    with pytest.raises(Disposed, match="request a new bundle"):
        open_download(ctx, officer, built["id"])
    with pytest.raises(Disposed, match="request a new bundle"):  # its bytes went after the request
        build_bundle(ctx, early["id"])
    with ctx.db.session() as s:
        from evidence.bundles.models import Bundle

        failed = s.get(Bundle, early["id"])
        assert (
            failed is not None and failed.state == "failed" and "Disposed" in (failed.error or "")
        )

    later = request_bundle(ctx, officer, case["id"])
    assert build_bundle(ctx, later["id"]) == "ready"
    path = tmp_path / "bundle.zip"
    with path.open("wb") as f:
        for chunk in ctx.store.open(f"bundles/{later['id']}.zip"):
            f.write(chunk)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = zf.namelist()
        zf.extractall(tmp_path / "unzipped")
    by_clip = {e["clip_id"]: e for e in manifest["exhibits"]}
    assert by_clip[gone]["file"] is None and by_clip[gone]["state"] == "disposed"
    assert by_clip[gone]["disposed"]["approved_by"] == "user:eo_brown"
    assert by_clip[gone]["sha256"] == clip_row(ctx, gone).sha256
    assert by_clip[kept]["file"] in names and by_clip[kept]["disposed"] is None
    assert sum(n.startswith("media/") for n in names) == 1
    done = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "unzipped", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = CliRunner().invoke(
        app, ["verify", "bundle", str(path), "--key", ctx.ledger.verifier_key]
    )
    assert result.exit_code == 0, result.output
    assert f"PASS  exhibit {by_clip[gone]['exhibit_ref']} disposed" in result.output
    statement = (tmp_path / "unzipped" / "statement" / "continuity.html").read_text()
    assert "disposed of on" in statement


def test_an_exhibit_is_never_disposed_of_by_default(
    ctx: Context, clip_1080p, tmp_path: Path
) -> None:
    """Issue: uncategorised exhibits stayed on the 31-day automatic disposal. An exhibit in an
    open case is kept whatever its category (still there on day 400); a closed case's
    exhibits are rescheduled under their rule with notice and reviewed by a person; reopening
    stops that; a closed case that is still shared keeps them; old rows are fixed by a sweep."""
    from sqlalchemy import update

    from evidence.cases.service import reopen_case
    from evidence.cases.shares import revoke_share, share_case

    day0 = clock.now().replace(microsecond=0)
    at(day0)
    exhibit = ingest_file(ctx, clip_1080p)  # uncategorised: non-evidential, 31 days, automatic
    legacy = ingest_file(ctx, distinct_copy(clip_1080p, tmp_path, "legacy"))
    officer = person(ctx, "eo_brown", "evidence_officer")
    cps = person(ctx, "cps_green", "cps")
    case = create_case(ctx, officer, "R v Doe", "URN 400")
    add_items(ctx, officer, case["id"], [exhibit])
    row = clip_row(ctx, exhibit)
    assert (row.retention_rule, row.retain_until) == (retention.EXHIBIT_RULE, None)
    assert ctx.store.stat(original_key(row.sha256)).legal_hold, "storage keeps it too"
    assert entries(ctx, "retention.scheduled", exhibit)[-1]["rule"] == retention.EXHIBIT_RULE
    # A row from before the rule: an exhibit still on its old automatic schedule.
    other = create_case(ctx, officer, "R v Roe", "URN 401")
    add_items(ctx, officer, other["id"], [legacy])
    with ctx.db.write_session() as s:
        s.execute(
            update(Clip)
            .where(Clip.id == legacy)
            .values(
                retention_rule="non-evidential: 31 days, disposed automatically",
                retain_until=day0 + 31 * DAY,
            )
        )

    at(day0 + 400 * DAY)
    report = retention.sweep(ctx)
    assert report.rescheduled == 1 and report.queued == 0 and report.disposed == 0
    for clip_id in (exhibit, legacy):
        assert clip_row(ctx, clip_id).state == "ready", "still there on day 400"
        assert clip_row(ctx, clip_id).retention_rule == retention.EXHIBIT_RULE
    assert retention.schedule(ctx, officer, within_days=3650) == [], "nothing kept is ever due"

    # Closed: the rule applies again, but never sooner than the notice period from now.
    closed = close_case(ctx, officer, case["id"], reason="guilty plea, sentence passed")
    assert closed["state"] == "closed" and closed["rescheduled"] == [exhibit]
    notice = ctx.settings.retention_notice_days
    row = clip_row(ctx, exhibit)
    assert row.retain_until == day0 + 400 * DAY + notice * DAY
    assert row.retention_rule == "non-evidential: 31 days, disposed automatically"
    assert not ctx.store.stat(original_key(row.sha256)).legal_hold
    assert [e["type"] for e in entries(ctx, "case.closed")] == ["case.closed"]
    [due] = retention.schedule(ctx, officer, within_days=30)
    assert due["outcome"] == "review by an evidence officer (an exhibit of a closed case)"
    # Shared after closing (an appeal): kept again while the share stands.
    share = share_case(
        ctx,
        officer,
        case["id"],
        username="cps_green",
        expires_at=clock.now() + dt.timedelta(days=30),
        purpose="appeal against conviction",
        legal_basis="CPIA 1996 s.7A continuing duty",
    )
    assert clip_row(ctx, exhibit).retention_rule == retention.EXHIBIT_RULE
    revoke_share(ctx, officer, share["id"])
    assert clip_row(ctx, exhibit).retain_until == day0 + 400 * DAY + notice * DAY
    # Reopened before it fell due: kept again, and the review stops.
    at(day0 + 400 * DAY + (notice + 1) * DAY)
    assert retention.sweep(ctx).queued == 1
    assert [d["clip_id"] for d in retention.queue(ctx, officer)] == [exhibit]
    [review] = retention.queue(ctx, officer)
    reopen_case(ctx, officer, case["id"], reason="new evidence from the defence")
    assert retention.queue(ctx, officer) == [], "reopening cancelled the pending review"
    with pytest.raises(Conflict, match="cancelled, not pending"):
        retention.approve(ctx, officer, review["id"], reason="too late to dispose of it")
    assert clip_row(ctx, exhibit).retention_rule == retention.EXHIBIT_RULE
    # Closed for good: reviewed, never automatic, then disposed of by a person's decision.
    close_case(ctx, officer, case["id"], reason="acquitted, no appeal")
    at(day0 + 400 * DAY + (2 * notice + 2) * DAY)
    report = retention.sweep(ctx)
    assert (report.queued, report.auto_approved, report.disposed) == (1, 0, 0)
    [pending] = retention.queue(ctx, officer)
    retention.approve(ctx, officer, pending["id"], reason="case over, footage not needed")
    assert clip_row(ctx, exhibit).state == "disposed"
    assert clip_row(ctx, legacy).state == "ready", "the other case is still open"
    _ = cps
