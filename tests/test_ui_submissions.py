"""Public submissions in a real browser (Debian's chromium through Playwright) against a real
uvicorn server: an evidence officer creates a link, a member of the public on a phone-sized
screen sends two files through it, the connection drops half-way, they open the link again
and finish, their receipt's hashes are those of the stored files, and the evidence officer
accepts one and rejects the other. Every step leaves its ledger entries; the ledger verifies.

Needs the `playwright` Python package and the `chromium` Debian package, as tests/test_ui.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from evidence.clips.models import Clip
from evidence.context import Context
from evidence.migrate import upgrade
from evidence.submissions.models import SubmissionFile
from evidence.submissions.service import process_accepted
from evidence.verify.ledger import verify_ledger
from evidence.verify.ledger_db import DatabaseSource
from evidence.verify.report import Report
from tests.fixtures.api import running_api
from tests.fixtures.browser import PHONE, expect, screenshot, sign_in
from tests.fixtures.databases import make_settings
from tests.fixtures.people import make_force

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

CHUNK = 64 * 1024


@dataclass
class Store:
    url: str
    ctx: Context


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("ui-submissions")
    url = f"sqlite:///{tmp}/evidence.db"
    upgrade(url)
    settings = make_settings(tmp, url, submission_chunk_bytes=CHUNK)
    ctx = Context(settings)
    with running_api(settings) as base:
        with httpx.Client(base_url=base, timeout=30) as http:
            make_force(ctx, http)
        yield Store(base, ctx)


def entries(ctx: Context, type_: str) -> list[dict[str, Any]]:
    return [
        e
        for _, raw in ctx.ledger.entries(0, ctx.ledger.size())
        if (e := json.loads(raw))["type"] == type_
    ]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_member_of_the_public_sends_two_files_from_a_phone_through_a_dropped_connection(
    store: Store, open_page, clip_mov, tmp_path: Path
) -> None:
    ctx = store.ctx
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(3 * CHUNK))
    video = clip_mov.path
    files = [str(video), str(photo)]
    total_chunks = sum(-(-p.stat().st_size // CHUNK) for p in (video, photo))
    assert total_chunks > 6

    # The evidence officer creates the link.
    officer = open_page()
    sign_in(officer.page, store.url, "eo_brown")
    officer.page.goto(store.url + "/ui/submissions")
    officer.page.fill("#i-ref", "INC-7731")
    officer.page.get_by_role("button", name="Create link").click()
    link = officer.page.locator("#invitation-url").input_value()
    assert re.fullmatch(re.escape(store.url) + r"/submit/[A-Za-z0-9_-]{43}", link)
    [invited] = entries(ctx, "submission.invited")
    assert invited["reference"] == "INC-7731" and invited["actor"] == "user:eo_brown"

    # On a phone: the connection drops after three chunks.
    first = open_page(PHONE)
    page = first.page
    page.goto(link)
    expect(page.locator("#reference")).to_have_text("INC-7731")
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner
    passed: list[str] = []

    def flaky(route: Any) -> None:
        if len(passed) < 3:
            passed.append(route.request.url)
            route.continue_()
        else:
            route.abort("internetdisconnected")

    screenshot(page, "submission-page-phone.png")
    page.route("**/chunks/*", flaky)
    page.set_input_files("#files", files)
    page.fill("#description", "Filmed from the bus stop at 22:10")
    page.get_by_role("button", name="Send files").click()
    expect(page.locator("#status")).to_contain_text("connection was lost", timeout=60_000)
    first.assert_no_csp_violations()
    with ctx.db.session() as s:
        [held] = s.query(SubmissionFile).all()
        assert held.state == "receiving" and held.filename == video.name
    assert len(list(ctx.store.list(f"incoming/public/{held.id}/"))) == 3
    page.close()  # they give up for now

    # They open the link again, choose the same files and finish: only what is missing goes.
    second = open_page(PHONE)
    page = second.page
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/chunks/" in r.url else None)
    page.goto(link)
    expect(page.locator(f"[data-file-name='{video.name}']")).to_contain_text("partly sent")
    page.set_input_files("#files", files)
    page.fill("#description", "Filmed from the bus stop at 22:10")
    page.get_by_role("button", name="Send files").click()
    page.wait_for_url(re.compile(r"/submit/[^/]+/receipt$"), timeout=60_000)
    assert len(sent) == total_chunks - 3, "the chunks that arrived before were not sent again"
    rows = page.locator("[data-receipt-file]")
    expect(rows).to_have_count(2)
    receipt = {
        r.get_attribute("data-receipt-file"): r.get_attribute("data-sha256") for r in rows.all()
    }
    assert receipt == {video.name: sha256(video), photo.name: sha256(photo)}
    with ctx.db.session() as s:
        stored = {f.filename: f for f in s.query(SubmissionFile).all()}
    for name, digest in receipt.items():
        held_bytes = b"".join(ctx.store.open(f"quarantine/public/{stored[name].id}"))
        assert hashlib.sha256(held_bytes).hexdigest() == digest
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner
    screenshot(page, "submission-receipt-phone.png")
    second.assert_no_csp_violations()
    assert len(entries(ctx, "submission.file_received")) == 2
    [submitted] = entries(ctx, "submission.submitted")
    assert submitted["description"] == "Filmed from the bus stop at 22:10"
    assert "HeadlessChrome" in submitted["user_agent"] or "Chrome" in submitted["user_agent"]
    # The link is used: opening it again says so.
    again = open_page(PHONE).page
    response = again.goto(link)
    assert response is not None and response.status == 410
    expect(again.locator("#gone")).to_contain_text("already sent")

    # The evidence officer accepts the video and rejects the photo, each with a reason.
    page = officer.page
    page.goto(store.url + "/ui/submissions")
    expect(page.locator("[data-submission-file]")).to_have_count(2)
    screenshot(page, "submissions-queue.png")
    video_row = page.locator(f"[data-filename='{video.name}']")
    video_row.locator("input[name=reason]").fill("shows the assault")
    video_row.get_by_role("button", name="Accept").click()
    expect(page.locator(".flash")).to_contain_text("Accepted")
    photo_row = page.locator(f"[data-filename='{photo.name}']")
    photo_row.locator("input[name=reason]").fill("not of the incident")
    photo_row.get_by_role("button", name="Reject").click()
    expect(page.locator(".flash")).to_contain_text("Rejected")
    expect(page.locator("[data-submission-file]")).to_have_count(0)
    officer.assert_no_csp_violations()

    [accepted] = entries(ctx, "submission.accepted")
    assert accepted["reason"] == "shows the assault" and accepted["sha256"] == sha256(video)
    [rejected] = entries(ctx, "submission.rejected")
    assert rejected["reason"] == "not of the incident" and rejected["sha256"] == sha256(photo)
    # The accepted video gets what docked footage gets: probe, proxy and thumbnail.
    clip_id = accepted["subject"]["clip"]
    assert process_accepted(ctx, clip_id) == "ready"
    with ctx.db.session() as s:
        clip = s.get(Clip, clip_id)
        assert clip is not None and clip.category == "public submission"
        assert clip.retention_rule is not None
        assert s.query(Clip).count() == 1, "the rejected photo is no clip"
    page.goto(store.url + "/ui/clips")
    expect(page.locator(f"[data-clip-id='{clip_id}']")).to_have_count(1)
    # Its page shows the category it has, not the menu's first choice.
    page.goto(store.url + f"/ui/clips/{clip_id}")
    expect(page.locator("#category")).to_have_value("public submission")
    source = DatabaseSource(ctx.settings.resolved_database_url(), ctx.ledger.verifier_key)
    assert verify_ledger(source, Report(), key=ctx.ledger.verifier_key).ok
