"""The retention pages in a real browser: an evidence officer holds a clip from its page,
reviews the disposal queue, disposes of a clip and releases the hold; an officer has no
access. Time is injected."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from evidence import clock
from evidence.access import Principal
from evidence.accounts.models import Role, User
from evidence.cases.service import add_items, create_case
from evidence.clips.service import set_category
from evidence.context import Context
from evidence.migrate import upgrade
from evidence.retention import service as retention
from tests.fixtures.api import running_api
from tests.fixtures.browser import sign_in
from tests.fixtures.databases import make_settings
from tests.fixtures.ingest import distinct_copy, ingest_file
from tests.fixtures.people import make_force

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture reports it
    expect = None  # type: ignore[assignment]


@pytest.fixture
def world(tmp_path: Path, clip_1080p) -> Iterator[tuple[str, Context, str, str]]:
    day0 = clock.now().replace(microsecond=0)
    clock.set_clock(lambda: day0)
    url = f"sqlite:///{tmp_path}/evidence.db"
    upgrade(url)
    ctx = Context(make_settings(tmp_path, url))
    held = ingest_file(ctx, clip_1080p)
    gone = ingest_file(ctx, distinct_copy(clip_1080p, tmp_path, "ui-gone"))
    with running_api(ctx.settings) as base:
        make_force(ctx, httpx.Client(base_url=base, timeout=30))
        yield base, ctx, held, gone


def principal(ctx: Context, username: str) -> Principal:
    with ctx.db.session() as s:
        user = s.query(User).filter(User.username == username).one()
        return Principal(user.id, user.username, Role(user.role), user.officer_id)


def entries(ctx: Context, type_: str) -> list[dict]:
    return [
        e
        for _, raw in ctx.ledger.entries(0, ctx.ledger.size())
        if (e := json.loads(raw))["type"] == type_
    ]


def test_evidence_officer_holds_reviews_and_disposes(world, open_page) -> None:  # noqa: F811
    base, ctx, held, gone = world
    w = open_page()
    page = w.page
    sign_in(page, base, "eo_brown")
    page.goto(f"{base}/ui/clips/{held}")
    expect(page.locator("[data-retention=due]")).to_contain_text(
        (clock.now() + dt.timedelta(days=31)).strftime("%Y")
    )
    page.fill("#hold-reason", "Crown Court order 17/2026")
    page.get_by_role("button", name="Place hold").click()
    expect(page.locator(".flash")).to_contain_text("Legal hold placed")
    expect(page.locator("[data-held=yes]")).to_be_visible()
    assert entries(ctx, "hold.placed")[0]["reason"] == "Crown Court order 17/2026"

    # Six years on, the evidential clip is due and waits for a decision; the held one is not.
    set_category(ctx, principal(ctx, "eo_brown"), gone, "evidential")
    later = clock.now() + dt.timedelta(days=2192 + 1)
    clock.set_clock(lambda: later)
    assert retention.sweep(ctx).queued == 1
    sign_in(page, base, "eo_brown")  # the earlier session ended years ago
    page.goto(f"{base}/ui/retention")
    rows = page.locator("#queue [data-disposal]")
    expect(rows).to_have_count(1)
    expect(page.locator(f"#holds [data-hold] a[href='/ui/clips/{held}']")).to_be_visible()
    rows.first.locator("input[name=reason]").fill("MoPI review: no further policing purpose")
    rows.first.get_by_role("button", name="Dispose of").click()
    expect(page.locator(".flash")).to_contain_text("Disposed of")
    [tomb] = entries(ctx, "clip.disposed")
    assert tomb["subject"]["clip"] == gone and tomb["approved_by"] == "user:eo_brown"
    page.goto(f"{base}/ui/clips/{gone}")
    expect(page.locator("[data-retention=disposed]")).to_contain_text("Disposed of on")

    page.goto(f"{base}/ui/retention")
    hold = page.locator("#holds [data-hold]")
    hold.locator("input[name=reason]").fill("case concluded")
    hold.get_by_role("button", name="Release").click()
    expect(page.locator(".flash")).to_contain_text("Hold released")
    assert re.search(r"/ui/retention", page.url)
    assert entries(ctx, "hold.released")[0]["reason"] == "case concluded"

    # A hold on a whole case, from the case page.
    case = create_case(ctx, principal(ctx, "eo_brown"), "R v Doe", "URN 7")
    add_items(ctx, principal(ctx, "eo_brown"), case["id"], [held])
    page.goto(f"{base}/ui/cases/{case['id']}")
    page.fill("#case-hold", "preservation notice from the defence")
    page.get_by_role("button", name="Hold", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("Legal hold placed")
    expect(page.locator("#holds [data-held=yes]")).to_be_visible()
    with ctx.db.session() as s:
        assert retention.is_held(s, held)
    page.locator("form[data-hold] input[name=reason]").fill("notice withdrawn")
    page.locator("form[data-hold]").get_by_role("button", name="Release").click()
    expect(page.locator(".flash")).to_contain_text("Hold released")
    with ctx.db.session() as s:
        assert not retention.is_held(s, held)
    w.assert_no_csp_violations()

    # An officer has neither the page nor the link to it.
    officer = open_page().page
    sign_in(officer, base, "pc_smith")
    expect(officer.locator("nav a[href='/ui/retention']")).to_have_count(0)
    response = officer.goto(f"{base}/ui/retention")
    assert response is not None and response.status == 403


def test_an_officer_sees_that_their_clip_is_held_but_not_why(
    tmp_path: Path, clip_1080p, open_page
) -> None:  # noqa: F811
    """The hold's reason can name an inquiry into the officer who recorded the clip: their
    clip page says it is held, in the retention section and the custody timeline, not why."""
    url = f"sqlite:///{tmp_path}/evidence.db"
    upgrade(url)
    ctx = Context(make_settings(tmp_path, url))
    clip_id = ingest_file(ctx, clip_1080p, metadata={"officer_id": "PC1234"})
    why = "complaint against PC1234 lodged with professional standards"
    with running_api(ctx.settings) as base:
        make_force(ctx, httpx.Client(base_url=base, timeout=30))
        retention.place_hold(ctx, principal(ctx, "eo_brown"), clip_id=clip_id, reason=why)

        eo = open_page().page
        sign_in(eo, base, "eo_brown")
        eo.goto(f"{base}/ui/clips/{clip_id}")
        expect(eo.locator("[data-hold] [data-hold-reason=shown]")).to_have_text(why)
        expect(eo.locator("tr[data-type='hold.placed']")).to_contain_text(why)

        w = open_page()
        officer = w.page
        sign_in(officer, base, "pc_smith")
        officer.goto(f"{base}/ui/clips/{clip_id}")
        expect(officer.locator("[data-held=yes]")).to_be_visible()
        expect(officer.locator("[data-hold] [data-hold-reason=withheld]")).to_be_visible()
        row = officer.locator("tr[data-type='hold.placed']")
        expect(row.locator("[data-withheld=reason]")).to_be_visible()
        expect(row).to_have_attribute("data-verified", "true")  # the whole entry still proves
        assert "professional standards" not in officer.content()
        w.assert_no_csp_violations()
