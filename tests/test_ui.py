"""The review UI in a real browser: Debian's chromium driven by Playwright against a real
uvicorn server holding clips ingested through the real dock and worker path.

Needs the `playwright` Python package (the `[dev]` extra) and the `chromium` Debian package;
never `playwright install`. Without them the browser tests skip, except in CI (env CI set),
where they fail. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from evidence import clock
from evidence.accounts.service import authenticate_device, create_device, create_user
from evidence.clips.models import Clip
from evidence.context import Context
from evidence.errors import NotAuthenticated
from evidence.ingest.service import process_upload
from evidence.migrate import upgrade
from tests.fixtures.api import running_api
from tests.fixtures.browser import (
    PHONE,
    Page,
    expect,
    screenshot,
    sign_in,
)
from tests.fixtures.databases import make_settings
from tests.fixtures.ingest import Dock
from tests.fixtures.people import PASSWORD, make_force

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

REFUSED = "Invalid credentials or account locked."


# -- the store, the server, the browser -------------------------------------------------------


@dataclass
class Store:
    url: str
    ctx: Context
    own: str  # recorded by PC1234 (pc_smith)
    other: str  # no officer
    broken: str  # unplayable: the container is fine, the frames are not
    own_sha256: str


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, clip_with_sidecar, clip_mov, clip_corrupt
) -> Iterator[Store]:
    """One force (tests/fixtures/people.py) and three docked, processed clips, served by a
    real uvicorn for the whole module; each test gets its own browser context (cookies)."""
    tmp = tmp_path_factory.mktemp("ui")
    url = f"sqlite:///{tmp}/evidence.db"
    upgrade(url)
    settings = make_settings(tmp, url)
    ctx = Context(settings)
    key = create_device(ctx, None, "dock-1").key
    with running_api(settings) as base:
        http = httpx.Client(base_url=base, timeout=30)
        dock = Dock(http, key)
        ids = {}
        for name, clip in (
            ("own", clip_with_sidecar),
            ("other", clip_mov),
            ("broken", clip_corrupt),
        ):
            done = dock.dock(clip)
            process_upload(ctx, done["id"])
            ids[name] = done["clip_id"]
        make_force(ctx, http)
        yield Store(base, ctx, **ids, own_sha256=clip_with_sidecar.sha256)


def listed(page: Page) -> set[str]:
    return set(page.locator("[data-clip-id]").evaluate_all("els => els.map(e => e.dataset.clipId)"))


def ledger_entries(ctx: Context, type_: str) -> list[dict]:
    return [
        e
        for _, raw in ctx.ledger.entries(0, ctx.ledger.size())
        if (e := json.loads(raw))["type"] == type_
    ]


def no_horizontal_overflow(page: Page) -> None:
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"the page is {width}px wide in a {inner}px viewport"


# -- the evidence officer's day ---------------------------------------------------------------


def test_evidence_officer_reviews_a_clip_and_finds_the_view_in_custody(
    store: Store, open_page
) -> None:
    w = open_page()
    page = w.page
    # Anything under /ui first shows the sign-in page, with the system-use notice.
    page.goto(store.url + "/ui/clips")
    assert re.search(r"/ui/login\?next=/ui/clips$", page.url)
    notice = page.locator("#system-use-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Authorised use only")
    expect(notice).to_contain_text("monitored and recorded")
    expect(notice).to_contain_text("Evidence of misuse may be used")
    # The notice comes before the form, for screen readers and on a phone alike.
    assert page.evaluate("""() => {
        const n = document.querySelector('#system-use-notice'), f = document.querySelector('form');
        return !!(n.compareDocumentPosition(f) & Node.DOCUMENT_POSITION_FOLLOWING); }""")
    page.fill("#username", "eo_brown")
    page.fill("#password", PASSWORD)
    page.check("#acknowledge")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/clips$"))
    assert listed(page) == {store.own, store.other, store.broken}

    # Search by the camera's serial number: only the clip it recorded.
    page.fill("#f-q", "BWV-7781")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url(re.compile(r"q=BWV-7781"))
    assert listed(page) == {store.own}
    page.locator(f"[data-clip-id='{store.own}'] a").first.click()
    page.wait_for_url(re.compile(f"/ui/clips/{store.own}$"))
    expect(page.locator("[data-integrity]").first).to_have_attribute("data-integrity", "verified")
    expect(page.locator("[data-hash=original]")).to_have_text(store.own_sha256)

    # No footage before a reason: the reason prompt stands where the player will be.
    assert page.locator("video").count() == 0
    assert not [
        v for v in ledger_entries(store.ctx, "clip.viewed") if v["actor"] == "user:eo_brown"
    ]
    page.select_option("#reason", "investigation")
    page.fill("#reason-detail", "burglary 42")
    page.get_by_role("button", name="Record reason and play").click()
    video = page.locator("video#video")
    expect(video).to_be_visible()
    assert "reason=investigation%3A+burglary+42" in video.get_attribute("src")
    page.wait_for_function(
        "() => document.querySelector('#video').currentTime > 0.5", timeout=20_000
    )
    assert page.evaluate("document.querySelector('#video').error") is None

    # A bookmark at the player's current time.
    page.evaluate("document.querySelector('#video').pause()")
    at = page.evaluate("document.querySelector('#video').currentTime")
    page.get_by_role("button", name="Now").click()
    assert abs(float(page.input_value("#bm-at")) - at) < 0.11
    page.fill("#bm-note", "suspect enters from the left")
    page.get_by_role("button", name="Add bookmark").click()
    page.wait_for_load_state()
    expect(page.locator(".flash--ok")).to_contain_text("Bookmark added")
    expect(page.locator(".bookmark")).to_contain_text("suspect enters from the left")
    expect(page.locator("video#video")).to_have_count(1)  # the reason was kept

    # Reload: the view is in the custody timeline, its inclusion proof verified.
    page.reload()
    row = page.locator("tr[data-type='clip.viewed'][data-actor='user:eo_brown']")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("investigation: burglary 42")
    expect(row).to_have_attribute("data-verified", "true")
    expect(row.locator(".proof--ok")).to_have_text("Verified")
    expect(page.locator("[data-custody=verified]")).to_be_visible()
    viewed = [v for v in ledger_entries(store.ctx, "clip.viewed") if v["actor"] == "user:eo_brown"]
    assert [(v["reason"], v["subject"]["clip"]) for v in viewed] == [
        ("investigation: burglary 42", store.own)
    ]  # one viewing, one entry
    page.wait_for_function("() => document.querySelector('#video').readyState >= 2")
    page.evaluate("document.querySelector('#video').pause()")
    path = screenshot(page, "ui-clip-desktop.png")
    assert path.stat().st_size > 10_000
    w.assert_no_csp_violations()


def test_evidence_officer_builds_a_case(store: Store, open_page) -> None:
    page = open_page().page
    sign_in(page, store.url, "eo_brown")
    page.goto(store.url + "/ui/cases")
    page.fill("#case-ref", "01AB2345678")
    page.fill("#case-title", "R v Doe")
    page.get_by_role("button", name="Open case").click()
    page.wait_for_url(re.compile(r"/ui/cases/[0-9a-f-]+$"))
    case_url = page.url
    expect(page.locator("h1")).to_have_text("R v Doe")
    # Tick the officer's clip on the search page and add it to the case.
    page.goto(store.url + "/ui/clips")
    page.check(f"[data-clip-id='{store.own}'] input[type=checkbox]")
    page.select_option("#bulk-case", label="01AB2345678 — R v Doe")
    page.locator("#bulk button[type=submit]").click()
    page.wait_for_url(case_url)
    expect(page.locator(".flash--ok")).to_contain_text("PC1234/1")
    expect(page.locator(".table--exhibits")).to_contain_text("PC1234/1")
    page.fill("#member", "cps_green")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator(".members")).to_contain_text("cps_green")
    # On a phone too, with the "add to case" menu: nothing scrolls sideways.
    phone = open_page(PHONE).page
    sign_in(phone, store.url, "eo_brown")
    expect(phone.locator("#bulk-case")).to_be_visible()
    no_horizontal_overflow(phone)
    phone.goto(case_url)
    no_horizontal_overflow(phone)
    # The CPS lawyer now sees the case and its one clip, and nothing else.
    cps = open_page().page
    sign_in(cps, store.url, "cps_green")
    cps.wait_for_url(re.compile(r"/ui/cases$"))  # the CPS land on the cases shared with them
    cps.goto(store.url + "/ui/clips")
    assert listed(cps) == {store.own}
    cps.goto(case_url)
    expect(cps.locator(".table--exhibits")).to_contain_text("PC1234/1")
    expect(cps.locator("#clip-ids")).to_have_count(0)  # no managing for CPS


def test_a_closed_case_warns_before_its_exhibits_fall_due_and_reopening_keeps_them(
    store: Store, open_page
) -> None:
    """An uncategorised exhibit is kept while its case is open (the page says so); closing the
    case asks for a reason, disposes of nothing and warns when the review falls due; the clip
    page says the same; reopening keeps the exhibits again."""
    page = open_page().page
    sign_in(page, store.url, "eo_brown")
    page.goto(store.url + "/ui/cases")
    page.fill("#case-ref", "URN-CLOSE-1")
    page.fill("#case-title", "R v Close")
    page.get_by_role("button", name="Open case").click()
    page.wait_for_url(re.compile(r"/ui/cases/[0-9a-f-]+$"))
    case_url = page.url
    page.fill("#clip-ids", store.other)
    page.get_by_role("button", name="Add as exhibits").click()
    row = page.locator(f"tr[data-exhibit='{store.other}'] td[data-label=Retention]")
    expect(row).to_have_attribute("data-retention", "kept")
    expect(page.locator("[data-retention-kept]")).to_be_visible()
    page.goto(f"{store.url}/ui/clips/{store.other}")
    expect(page.locator("#retention [data-retention=exhibit]")).to_contain_text("URN-CLOSE-1")

    page.goto(case_url)
    page.fill("#case-state-reason", "no further action")
    page.get_by_role("button", name="Close case").click()
    expect(page.locator(".flash--ok")).to_contain_text("1 exhibit will be reviewed")
    expect(page.locator("[data-case-state]")).to_have_text("Closed")
    warning = page.locator("[data-retention-warning]")
    expect(warning).to_contain_text("will be reviewed for disposal")
    expect(warning).to_contain_text("nothing goes automatically")
    expect(row).to_have_attribute("data-retention", "due")
    screenshot(page, "ui-case-closed-warning.png")
    page.goto(f"{store.url}/ui/clips/{store.other}")
    expect(page.locator("#retention [data-retention=due]")).to_be_visible()

    page.goto(case_url)
    page.fill("#case-state-reason", "appeal lodged")
    page.get_by_role("button", name="Reopen case").click()
    expect(page.locator("[data-case-state]")).to_have_text("Open")
    expect(row).to_have_attribute("data-retention", "kept")
    kinds = [
        e["type"]
        for e in ledger_entries(store.ctx, "case.closed")
        + ledger_entries(store.ctx, "case.reopened")
    ]
    assert kinds == ["case.closed", "case.reopened"]


def test_cps_gets_a_court_bundle_through_the_browser(
    store: Store, open_page, tmp_path: Path
) -> None:
    """The evidence officer opens a case, renumbers its exhibit, shares it with a CPS lawyer
    and requests a bundle; the worker builds it; the lawyer signs in, finds the case, downloads
    the ZIP (which verifies, and the download is in the ledger); after a revoke it is gone."""
    from typer.testing import CliRunner

    from cli.main import app
    from evidence.bundles.service import build_bundle

    create_user(store.ctx, "cps_blue", "cps", PASSWORD)
    w = open_page()
    eo = w.page
    sign_in(eo, store.url, "eo_brown")
    eo.goto(store.url + "/ui/cases")
    eo.fill("#case-ref", "URN-77-BUNDLE")
    eo.fill("#case-title", "R v Roe")
    eo.get_by_role("button", name="Open case").click()
    eo.wait_for_url(re.compile(r"/ui/cases/[0-9a-f-]+$"))
    case_url = eo.url
    case_id = case_url.rsplit("/", 1)[1]
    eo.fill("#clip-ids", store.other)
    eo.get_by_role("button", name="Add as exhibits").click()
    expect(eo.locator(".flash--ok")).to_contain_text("EX/1")

    # Exhibit references: a bad one is refused on the page, a good one is recorded.
    row = eo.locator(f"tr[data-exhibit='{store.other}']")
    row.locator("input[name=exhibit_ref]").fill("RR/7; drop")
    row.get_by_role("button", name="Change").click()
    expect(eo.locator(".flash--error")).to_contain_text("exhibit reference is 1-32 characters")
    row.locator("input[name=exhibit_ref]").fill("RR/7")
    row.get_by_role("button", name="Change").click()
    expect(eo.locator(".flash--ok")).to_contain_text("Exhibit EX/1 is now RR/7")
    expect(row.locator("[data-ref]")).to_have_text("RR/7")
    (edit,) = [
        e
        for e in ledger_entries(store.ctx, "exhibit.referenced")
        if e["subject"]["case"] == case_id
    ]
    assert (edit["previous_ref"], edit["exhibit_ref"], edit["actor"]) == (
        "EX/1",
        "RR/7",
        "user:eo_brown",
    )

    # Shares: only with a CPS user; then with cps_blue until the default day.
    eo.fill("#share-user", "pc_smith")
    eo.fill("#share-purpose", "charging decision")
    eo.fill("#share-basis", "CPIA 1996")
    eo.get_by_role("button", name="Share case").click()
    expect(eo.locator(".flash--error")).to_contain_text("no recipient 'pc_smith'")
    eo.fill("#share-user", "cps_blue")
    eo.fill("#share-purpose", "charging decision")
    eo.fill("#share-basis", "CPIA 1996")
    eo.get_by_role("button", name="Share case").click()
    expect(eo.locator(".flash--ok")).to_contain_text("Shared with cps_blue until")
    expect(eo.locator("li[data-user='cps_blue']")).to_have_attribute("data-active", "true")

    # A bundle: requested here, built by the worker (in-process), the page follows it to ready.
    eo.check("#include-proxies")
    eo.check("#include-redactions")
    eo.get_by_role("button", name="Request court bundle").click()
    expect(eo.locator(".flash--ok")).to_contain_text("Court bundle requested")
    bundle_row = eo.locator("tr[data-bundle]")
    expect(bundle_row).to_have_attribute("data-state", "queued")
    expect(bundle_row).to_contain_text("with redactions")
    bundle_id = bundle_row.get_attribute("data-bundle")
    assert build_bundle(store.ctx, bundle_id) == "ready"
    expect(eo.locator("tr[data-bundle] button", has_text="Download ZIP")).to_be_visible(
        timeout=20_000
    )
    expect(eo.locator("tr[data-bundle]")).to_have_attribute("data-state", "ready")
    screenshot(eo, "ui-case-bundles-desktop.png")
    w.assert_no_csp_violations()
    phone = open_page(PHONE).page
    sign_in(phone, store.url, "eo_brown")
    phone.goto(case_url)
    no_horizontal_overflow(phone)
    screenshot(phone, "ui-case-bundles-phone.png")

    # The CPS lawyer lands on the cases shared with them, opens it, downloads the bundle.
    c = open_page()
    cps = c.page
    sign_in(cps, store.url, "cps_blue")
    cps.wait_for_url(re.compile(r"/ui/cases$"))
    expect(cps.locator(".table--cases tbody tr")).to_have_count(1)
    cps.get_by_role("link", name="URN-77-BUNDLE").click()
    cps.wait_for_url(case_url)
    expect(cps.locator(".table--exhibits")).to_contain_text("RR/7")
    assert cps.locator("#shares, #include-proxies, input[name=exhibit_ref]").count() == 0
    # Taking the bundle asks why, as footage does; the reason goes into the ledger.
    taking = cps.locator(f"tr[data-bundle='{bundle_id}'] form.dlform")
    taking.locator("select[name=reason]").select_option("court preparation")
    taking.locator("input[name=detail]").fill("plea hearing 12 Jan")
    with cps.expect_download() as download:
        taking.get_by_role("button", name="Download ZIP").click()
    path = tmp_path / "bundle.zip"
    download.value.save_as(path)
    assert path.read_bytes()[:4] == b"PK\x03\x04"
    result = CliRunner().invoke(
        app, ["verify", "bundle", str(path), "--key", store.ctx.ledger.verifier_key]
    )
    assert result.exit_code == 0 and "PASS  SHA256SUMS" in result.output, result.output
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert [e["exhibit_ref"] for e in manifest["exhibits"]] == ["RR/7"]
    downloads = [
        e
        for e in ledger_entries(store.ctx, "bundle.downloaded")
        if e["subject"]["bundle"] == bundle_id
    ]
    assert [(e["actor"], e["role"], e["reason"]) for e in downloads] == [
        ("user:cps_blue", "cps", "court preparation: plea hearing 12 Jan")
    ]
    c.assert_no_csp_violations()

    # Revoked: the case, its page and its bundle are gone for the lawyer at once.
    eo.goto(case_url)
    eo.locator("li[data-user='cps_blue']").get_by_role("button", name="Revoke").click()
    expect(eo.locator(".flash--ok")).to_contain_text("Share revoked")
    expect(eo.locator("li[data-user='cps_blue']")).to_have_attribute("data-active", "false")
    cps.goto(store.url + "/ui/cases")
    expect(cps.locator(".empty")).to_contain_text("No cases")
    assert cps.goto(case_url).status == 404
    assert cps.request.get(f"{store.url}/ui/bundles/{bundle_id}/download").status == 404
    assert (
        len(
            [
                e
                for e in ledger_entries(store.ctx, "bundle.downloaded")
                if e["subject"]["bundle"] == bundle_id
            ]
        )
        == 1
    )


def test_unplayable_clip_is_shown_with_the_ffmpeg_error(store: Store, open_page) -> None:
    page = open_page().page
    sign_in(page, store.url, "eo_brown")
    page.goto(f"{store.url}/ui/clips/{store.broken}")
    expect(page.locator(".cliphead [data-state]")).to_have_text("Unplayable")
    error = page.locator("pre.ffmpeg")
    expect(error).to_be_visible()
    assert error.inner_text().strip()
    assert page.locator("video").count() == 0


def test_a_clip_without_a_recording_time_shows_when_it_was_docked(store: Store, open_page) -> None:
    """A camera that writes no creation time (the unplayable clip here has none) must not leave a
    blank: the list, the clip page and the grid say when it was docked instead, and say so."""
    ctx = store.ctx
    with ctx.db.session() as s:
        clip = s.get(Clip, store.broken)
        assert clip.recorded_at is None
        docked = clip.ingested_at.strftime("%Y-%m-%d %H:%M")
    page = open_page().page
    sign_in(page, store.url, "eo_brown")
    page.goto(f"{store.url}/ui/clips?view=list")
    cell = page.locator(f'tr[data-clip-id="{store.broken}"] td[data-label="Recorded"]')
    expect(cell).to_contain_text(f"docked {docked}")
    own = page.locator(f'tr[data-clip-id="{store.own}"] td[data-label="Recorded"]')
    expect(own).to_contain_text("2024-07-03 21:45")
    expect(own).not_to_contain_text("docked")
    page.goto(f"{store.url}/ui/clips?view=grid")
    expect(page.locator(f'li[data-clip-id="{store.broken}"] .meta')).to_contain_text(
        f"docked {docked}"
    )
    page.goto(f"{store.url}/ui/clips/{store.broken}")
    expect(page.locator(".cliphead .facts")).to_contain_text(f"Docked {docked}")
    expect(page.locator(".cliphead .facts")).to_contain_text("no recording time in the clip")


def test_on_a_phone_the_player_and_its_reason_come_before_every_form(
    store: Store, open_page
) -> None:
    """An evidence officer on a phone opens a clip: the player (asking for the viewing
    reason) is the first card, then tags; redaction and retention come after, not before."""
    page = open_page(PHONE).page
    sign_in(page, store.url, "eo_brown")
    page.goto(f"{store.url}/ui/clips/{store.own}")
    top = {
        sel: page.locator(sel).bounding_box()["y"]
        for sel in ("#player", "#tags", "#redact", "#retention")
    }
    assert top["#player"] < top["#tags"] < min(top["#redact"], top["#retention"]), top
    no_horizontal_overflow(page)


# -- officers, in the field ---------------------------------------------------------------------


def test_officer_sees_only_their_own_clip_and_tags_it_on_a_phone(store: Store, open_page) -> None:
    w = open_page(PHONE)
    page = w.page
    sign_in(page, store.url, "pc_smith")
    page.wait_for_url(re.compile(r"/ui/clips$"))
    expect(page.locator("h1")).to_have_text("My clips")
    assert listed(page) == {store.own}
    no_horizontal_overflow(page)
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    screenshot(page, "ui-search-phone.png")

    page.goto(f"{store.url}/ui/clips/{store.other}")
    expect(page.locator("h1")).to_have_text("Not found")
    assert page.locator("video").count() == 0

    page.goto(f"{store.url}/ui/clips/{store.own}")
    no_horizontal_overflow(page)
    page.fill("#newtag", "INC-2024-0042")
    page.get_by_role("button", name="Add tag").click()
    expect(page.locator(".tags")).to_contain_text("INC-2024-0042")
    # The category sets retention: the recording officer sees it but cannot change it.
    assert page.locator("#category").count() == 0
    expect(page.locator("#tags")).to_contain_text("Not categorised")
    forged = page.request.post(
        f"{store.url}/ui/clips/{store.own}/category",
        form={
            "category": "non-evidential",
            "csrf": page.locator("input[name=csrf]").first.get_attribute("value"),
        },
        max_redirects=0,
    )
    assert forged.status == 403
    page.select_option("#reason", "investigation")
    page.get_by_role("button", name="Record reason and play").click()
    page.wait_for_function(
        "() => document.querySelector('#video').currentTime > 0.3", timeout=20_000
    )
    no_horizontal_overflow(page)
    screenshot(page, "ui-clip-phone.png")
    w.assert_no_csp_violations()

    other = open_page(PHONE).page
    sign_in(other, store.url, "pc_jones")
    assert listed(other) == set()
    expect(other.locator(".empty")).to_contain_text("No clips match")


# -- signing in and out ----------------------------------------------------------------------------


def _principal(ctx: Context, username: str) -> Any:
    from sqlalchemy import select

    from evidence.access import Principal
    from evidence.accounts.models import Role, User

    with ctx.db.session() as s:
        u = s.scalar(select(User).where(User.username == username))
        return Principal(u.id, u.username, Role(u.role), u.officer_id)


def test_the_clip_page_shows_others_access_to_auditors_only_and_notes_to_their_side(
    store: Store, open_page
) -> None:
    """The recording officer's page holds no one else's viewing (reason, address) and no CPS
    note; the auditor's holds every viewing; the CPS member's holds only CPS notes."""
    from evidence.cases import service as cases
    from evidence.clips import service as clips

    ctx = store.ctx
    eo, cps = _principal(ctx, "eo_brown"), _principal(ctx, "cps_green")
    case = cases.create_case(ctx, eo, "R v Roe", "URN 77")
    cases.add_items(ctx, eo, case["id"], [store.own])
    cases.add_member(ctx, eo, case["id"], "cps_green")
    clips.open_footage(
        ctx,
        eo,
        store.own,
        "proxy",
        reason="complaint or misconduct review: PSD file 31",
        source_ip="10.9.8.7",
    )
    clips.add_bookmark(ctx, cps, store.own, 200, "privileged: weak identification")
    clips.add_bookmark(ctx, eo, store.own, 300, "force note: ask for CCTV")

    def page_of(username: str) -> Page:
        page = open_page().page
        sign_in(page, store.url, username)
        page.goto(f"{store.url}/ui/clips/{store.own}")
        expect(page.locator("#custody")).to_be_visible()
        return page

    page = page_of("pc_smith")
    expect(page.locator("#bookmarks")).to_contain_text("force note: ask for CCTV")
    main = page.locator("main").inner_text()
    for hidden in ("PSD file 31", "10.9.8.7", "privileged: weak identification"):
        assert hidden not in main, hidden
    expect(page.locator("tr[data-type='clip.viewed'][data-actor='user:eo_brown']")).to_have_count(0)

    page = page_of("cps_green")
    expect(page.locator("#bookmarks")).to_contain_text("privileged: weak identification")
    assert "force note: ask for CCTV" not in page.locator("main").inner_text()

    page = page_of("aud_white")
    row = page.locator("tr[data-type='clip.viewed'][data-actor='user:eo_brown']").filter(
        has_text="PSD file 31"
    )
    expect(row).to_have_count(1)
    expect(row).to_contain_text("10.9.8.7")
    assert "privileged: weak identification" not in page.locator("main").inner_text()


def test_an_auditor_without_a_grant_sees_a_bundle_but_cannot_take_it(
    store: Store, open_page
) -> None:
    from evidence.bundles import service as bundles
    from evidence.cases import service as cases

    ctx = store.ctx
    eo = _principal(ctx, "eo_brown")
    case = cases.create_case(ctx, eo, "R v Grant", "URN 88")
    cases.add_items(ctx, eo, case["id"], [store.other])
    b = bundles.request_bundle(ctx, eo, case["id"])
    assert bundles.build_bundle(ctx, b["id"]) == "ready"
    page = open_page().page
    sign_in(page, store.url, "aud_white")
    page.goto(f"{store.url}/ui/cases/{case['id']}")
    row = page.locator(f"tr[data-bundle='{b['id']}']")
    expect(row).to_have_attribute("data-state", "ready")
    expect(row.locator("[data-needs-grant]")).to_be_visible()
    assert row.get_by_role("button", name="Download ZIP").count() == 0
    response = page.request.get(f"{store.url}/ui/bundles/{b['id']}/download")
    assert response.status == 403
    # The evidence officer's row has the link.
    page = open_page().page
    sign_in(page, store.url, "eo_brown")
    page.goto(f"{store.url}/ui/cases/{case['id']}")
    expect(
        page.locator(f"tr[data-bundle='{b['id']}']").get_by_role("button", name="Download ZIP")
    ).to_be_visible()


def test_wrong_password_says_nothing_about_which_part_was_wrong(store: Store, open_page) -> None:
    page = open_page().page
    sign_in(page, store.url, "pc_jones", "not the password")
    wrong_password = page.locator("#signin-error").inner_text()
    sign_in(page, store.url, "nobody_here", "not the password")
    unknown_user = page.locator("#signin-error").inner_text()
    assert wrong_password == unknown_user == REFUSED
    assert "/ui/login" in page.url
    assert not [c for c in page.context.cookies() if c["name"] == "evidence_ui"]
    # The notice must be acknowledged, every time.
    page.fill("#username", "pc_jones")
    page.fill("#password", PASSWORD)
    page.evaluate("document.querySelector('#acknowledge').removeAttribute('required')")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("notice")


def test_session_cookie_and_sign_out(store: Store, open_page) -> None:
    page = open_page().page
    sign_in(page, store.url, "eo_brown")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "evidence_ui"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert page.evaluate("document.cookie") == ""  # nothing a script could read
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == "evidence_ui"]
    page.goto(store.url + "/ui/clips")
    assert "/ui/login" in page.url
    # Sign-out ended the token itself: a copy of the old cookie opens nothing.
    page.context.add_cookies([{**cookie, "expires": -1}])
    page.goto(store.url + "/ui/clips")
    assert "/ui/login" in page.url
    assert ledger_entries(store.ctx, "user.logged_out")[-1]["actor"] == "user:eo_brown"
    # The cookie's token is bound to it: a token from the JSON API cannot stand in for it.
    token = httpx.post(
        store.url + "/api/v1/auth/token", data={"username": "eo_brown", "password": PASSWORD}
    ).json()["access_token"]
    page.context.add_cookies(
        [{"name": "evidence_ui", "value": f"v1.x.0.forged.{token}", "url": store.url}]
    )
    page.goto(store.url + "/ui/clips")
    assert "/ui/login" in page.url


def test_session_is_renewed_while_in_use_and_ends_when_idle(store: Store, open_page) -> None:
    page = open_page().page
    sign_in(page, store.url, "aud_white")
    before = {c["name"]: c["value"] for c in page.context.cookies()}["evidence_ui"]
    ttl = store.ctx.settings.jwt_ttl_seconds
    start = dt.datetime.now(dt.UTC)
    clock.set_clock(lambda: start + dt.timedelta(seconds=ttl * 0.6))
    page.goto(store.url + "/ui/cases")
    expect(page.locator("h1")).to_have_text("Cases")
    after = {c["name"]: c["value"] for c in page.context.cookies()}["evidence_ui"]
    assert after != before and after.split(".")[1] == before.split(".")[1]  # same session
    clock.set_clock(lambda: start + dt.timedelta(seconds=ttl * 1.7))
    page.goto(store.url + "/ui/cases")
    page.wait_for_url(re.compile(r"/ui/login\?next=/ui/cases&expired=1$"))
    expect(page.locator(".flash--info")).to_contain_text("session has ended")


def test_forms_need_this_sessions_csrf_token(store: Store, open_page) -> None:
    page = open_page().page
    sign_in(page, store.url, "eo_brown")
    page.goto(f"{store.url}/ui/clips/{store.other}")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    url = f"{store.url}/ui/clips/{store.other}/tags"
    forged = page.request.post(url, form={"tag": "forged", "csrf": "nope"}, max_redirects=0)
    assert forged.status == 403
    cross_site = page.request.post(
        url,
        form={"tag": "forged", "csrf": token},
        max_redirects=0,
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status == 403
    ok = page.request.post(url, form={"tag": "INC-1", "csrf": token}, max_redirects=0)
    assert ok.status == 303
    assert [
        e["tag"]
        for e in ledger_entries(store.ctx, "clip.tagged")
        if e["subject"]["clip"] == store.other
    ] == ["INC-1"]


# -- auditors and admins ---------------------------------------------------------------------------


def test_auditor_reads_the_access_log_and_plays_nothing_without_a_grant(
    store: Store, open_page
) -> None:
    page = open_page().page
    sign_in(page, store.url, "aud_white")
    assert listed(page) == {store.own, store.other, store.broken}
    assert page.locator("img.thumb").count() == 0  # thumbnails are footage too
    page.goto(store.url + "/ui/audit")
    expect(page.locator("h1")).to_have_text("Access log")
    expect(page.locator("tr[data-type='user.logged_in']").first).to_be_visible()
    # Narrowed to one person's sign-ins, then exported with the same filter.
    page.fill("#f-person", "aud_white")
    page.select_option("#f-type", "user.logged_in")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.table--audit tbody tr")
    expect(rows.first).to_be_visible()
    assert {r.get_attribute("data-type") for r in rows.all()} == {"user.logged_in"}
    expect(rows.first.locator("[data-label=Who]")).to_have_text("user:aud_white")
    screenshot(page, "ui-audit-filtered.png")
    with page.expect_download() as download:
        page.locator("[data-export]").click()
    text = Path(download.value.path()).read_text()
    assert text.startswith("index,time_utc,type,event,actor") and "user:aud_white" in text
    assert "pc_smith" not in text
    reads = [
        e for e in ledger_entries(store.ctx, "audit.log_read") if e["actor"] == "user:aud_white"
    ]
    assert reads[-1]["export"] is True
    assert reads[-1]["filter"] == {"person": "aud_white", "type": "user.logged_in"}
    page.fill("#f-person", "nobody-at-all")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#filter-error")).to_contain_text("No user 'nobody-at-all'")
    page.goto(f"{store.url}/ui/clips/{store.own}")
    expect(page.locator("#player")).to_contain_text("No footage access")
    assert page.locator("#reason").count() == 0
    response = page.request.get(f"{store.url}/ui/clips/{store.own}/stream?reason=audit")
    assert response.status == 403


def nav_links(page: Page) -> list[str]:
    return [t.strip() for t in page.locator(".mainnav a").all_inner_texts()]


def test_admin_manages_and_sees_no_footage(store: Store, open_page) -> None:
    page = open_page().page
    sign_in(page, store.url, "adm_black")
    page.wait_for_url(re.compile(r"/ui/users$"))
    assert nav_links(page) == [
        "Cameras",
        "Retention",
        "Users",
        "Devices",
        "Organisations",
        "Grants",
        "Approvals",
    ]
    # Organisations: who evidence is disclosed to, and who belongs to each (docs/disclosure.md).
    page.get_by_role("link", name="Organisations").click()
    page.fill("#no-name", "Doe & Co Solicitors")
    page.select_option("#no-kind", "defence_firm")
    page.get_by_role("button", name="Add organisation").click()
    expect(page.locator(".flash--ok")).to_contain_text("Organisation Doe & Co Solicitors added")
    page.select_option("#om-user", "cps_green")
    page.select_option("#om-org", label="Doe & Co Solicitors")
    page.get_by_role("button", name="Set organisation").click()
    expect(page.locator("tr[data-organisation='Doe & Co Solicitors'] [data-members]")).to_have_text(
        "1"
    )
    page.select_option("#om-user", "cps_green")
    page.select_option("#om-org", label="None")
    page.get_by_role("button", name="Set organisation").click()
    expect(page.locator("tr[data-organisation='Doe & Co Solicitors'] [data-members]")).to_have_text(
        "0"
    )
    page.goto(store.url + "/ui/users")
    expect(page.locator("main")).to_contain_text("administrators see no footage")
    response = page.goto(store.url + "/ui/clips")
    assert response is not None and response.status == 403
    assert page.get_by_role("link", name="Clips").count() == 0
    # ... and nobody else is shown the administrator's pages (the matrix in test_security.py
    # checks that no other role may open them).
    for name in ("eo_brown", "aud_white"):
        other = open_page().page
        sign_in(other, store.url, name)
        assert not {"Users", "Devices", "Grants", "Approvals"} & set(nav_links(other)), name
    response = other.goto(store.url + "/ui/grants")
    assert response is not None and response.status == 403


def test_admin_sets_and_removes_where_a_persons_notifications_go(store: Store, open_page) -> None:
    page = open_page().page
    sign_in(page, store.url, "adm_black")
    page.wait_for_url(re.compile(r"/ui/users$"))
    row = page.locator("tr[data-user='cps_green']")
    row.locator("input[name=email]").fill("priya.green@cps.example")
    row.get_by_role("button", name="Save").click()
    expect(page.locator(".flash--ok")).to_have_text(
        "cps_green is notified at priya.green@cps.example."
    )
    expect(row.locator("input[name=email]")).to_have_value("priya.green@cps.example")
    row.locator("input[name=email]").fill("")
    row.get_by_role("button", name="Save").click()
    expect(page.locator(".flash--ok")).to_have_text("cps_green has no e-mail address.")
    expect(row.locator("input[name=email]")).to_have_value("")


NEW_PASSWORD = "a new officer's passphrase"


def approve_in_ui(page: Page, base: str, username: str, kind: str) -> None:
    """The second administrator approves a pending change on the Approvals page."""
    page.goto(base + "/ui/approvals")
    row = page.locator(f"tr[data-user='{username}'][data-kind='{kind}']")
    row.get_by_role("button", name="Approve").click()
    expect(page.locator(".flash--ok")).to_contain_text(f"for {username} was approved")


def test_admin_creates_an_officer_who_enrols_is_approved_signs_in_and_is_signed_out_once_disabled(
    store: Store, open_page
) -> None:
    w = open_page()
    admin = w.page
    sign_in(admin, store.url, "adm_black")
    admin.wait_for_url(re.compile(r"/ui/users$"))
    # No password field: the person chooses theirs. A name or an officer id that is taken:
    # the service's message beside the form, and what was typed is kept.
    assert admin.locator("#nu-password").count() == 0
    admin.fill("#nu-username", "pc_smith")
    admin.select_option("#nu-role", "officer")
    admin.fill("#nu-officer", "PC9001")
    admin.get_by_role("button", name="Create user").click()
    expect(admin.locator("#user-error")).to_have_text("User 'pc_smith' already exists.")
    expect(admin.locator("#nu-officer")).to_have_value("PC9001")
    admin.fill("#nu-username", "pc_new")
    admin.fill("#nu-officer", "PC1234")
    admin.get_by_role("button", name="Create user").click()
    expect(admin.locator("#user-error")).to_have_text(
        "Officer id 'PC1234' already belongs to pc_smith."
    )
    admin.fill("#nu-officer", "PC9001")
    admin.get_by_role("button", name="Create user").click()
    admin.wait_for_url(re.compile(r"/ui/users/new-link$"))
    expect(admin.locator("#link-warning")).to_contain_text("it will not be shown again")
    expect(admin.locator("#link-pending")).to_contain_text("another administrator approves")
    link = admin.locator("#enrol-link").inner_text().strip()
    assert link.startswith(store.url + "/ui/enrol/")
    admin.reload()
    expect(admin.locator("h1")).to_have_text("No link to show")
    admin.goto(store.url + "/ui/users")
    row = admin.locator("tr[data-user='pc_new']")
    expect(row).to_contain_text("PC9001")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "awaiting-approval")
    (created,) = [e for e in ledger_entries(store.ctx, "user.created") if e["username"] == "pc_new"]
    assert created["actor"] == "user:adm_black" and created["officer_id"] == "PC9001"

    # The officer opens the link and chooses a password; it is theirs alone.
    ow = open_page()
    officer = ow.page
    officer.goto(link)
    expect(officer.locator("h1")).to_have_text("Welcome, pc_new")
    officer.fill("#enrol-password", NEW_PASSWORD)
    officer.fill("#enrol-repeat", NEW_PASSWORD + " typo")
    officer.get_by_role("button", name="Set my password").click()
    expect(officer.locator("#enrol-error")).to_have_text("The password and its repetition differ.")
    officer.fill("#enrol-password", NEW_PASSWORD)
    officer.fill("#enrol-repeat", NEW_PASSWORD)
    officer.get_by_role("button", name="Set my password").click()
    officer.wait_for_url(re.compile(r"/ui/login\?next=/ui/account$"))
    expect(officer.locator(".flash--ok")).to_contain_text("Password set for pc_new")
    officer.goto(link)
    expect(officer.locator("#enrol-gone")).to_contain_text("already used or expired")
    ow.assert_no_csp_violations()
    # Until another administrator approves, the account opens nothing.
    sign_in(officer, store.url, "pc_new", NEW_PASSWORD)
    expect(officer.locator("#signin-error")).to_have_text(REFUSED)
    admin.goto(store.url + "/ui/approvals")
    expect(admin.locator("tr[data-user='pc_new']")).to_contain_text(
        "Another administrator decides: you asked"
    )
    assert admin.locator("tr[data-user='pc_new'] button").count() == 0
    second = open_page().page
    sign_in(second, store.url, "adm_grey")
    approve_in_ui(second, store.url, "pc_new", "account")

    # The new officer signs in: their clips (none yet), no administration.
    sign_in(officer, store.url, "pc_new", NEW_PASSWORD)
    officer.wait_for_url(re.compile(r"/ui/clips$"))
    expect(officer.locator("h1")).to_have_text("My clips")
    assert nav_links(officer) == ["My clips", "Cases"]

    # A role that opens more footage waits for the second administrator too.
    admin.goto(store.url + "/ui/users")
    row.locator("select[name=role]").select_option("evidence_officer")
    row.get_by_role("button", name="Change").click()
    expect(admin.locator(".flash--ok")).to_contain_text("once another administrator approves it")
    expect(row.locator("[data-pending-role]")).to_have_attribute(
        "data-pending-role", "evidence_officer"
    )
    officer.goto(store.url + "/ui/clips")
    expect(officer.locator("h1")).to_have_text("My clips")
    approve_in_ui(second, store.url, "pc_new", "role")
    officer.goto(store.url + "/ui/clips")
    expect(officer.locator("h1")).to_have_text("Clips")

    # Disabled: their next page load is signed out.
    admin.goto(store.url + "/ui/users")
    row.get_by_role("button", name="Disable").click()
    expect(admin.locator(".flash--ok")).to_contain_text("pc_new disabled")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "disabled")
    officer.goto(store.url + "/ui/clips")
    officer.wait_for_url(re.compile(r"/ui/login\?next=/ui/clips&expired=1$"))
    sign_in(officer, store.url, "pc_new", NEW_PASSWORD)
    expect(officer.locator("#signin-error")).to_have_text(REFUSED)

    # An administrator has no controls over their own account; a forged form is refused
    # on the page, in their row.
    assert admin.locator("tr[data-user='adm_black'] button").count() == 0
    admin.evaluate("""() => {
        const f = document.createElement('form');
        f.method = 'post'; f.action = '/ui/users/adm_black/state';
        for (const [k, v] of [['action', 'disable'],
                              ['csrf', document.querySelector('input[name=csrf]').value]]) {
            const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;
            f.append(i);
        }
        document.body.append(f); f.submit(); }""")
    expect(admin.locator("#row-error")).to_have_text(
        "You cannot disable yourself or change your own role."
    )
    expect(admin.locator("tr[data-user='adm_black'] [data-status]")).to_have_attribute(
        "data-status", "active"
    )

    admin.goto(store.url + "/ui/users")
    screenshot(admin, "ui-users-desktop.png")
    w.assert_no_csp_violations()
    phone = open_page(PHONE).page
    sign_in(phone, store.url, "adm_black")
    phone.wait_for_url(re.compile(r"/ui/users$"))
    no_horizontal_overflow(phone)
    screenshot(phone, "ui-users-phone.png")


def test_a_forced_reset_gives_a_link_and_the_auditor_sees_the_alerts(
    store: Store, open_page
) -> None:
    create_user(store.ctx, "cps_reset", "cps", PASSWORD)
    w = open_page()
    admin = w.page
    sign_in(admin, store.url, "adm_black")
    admin.goto(store.url + "/ui/users")
    admin.locator("tr[data-user='cps_reset']").get_by_role("button", name="Reset password").click()
    admin.wait_for_url(re.compile(r"/ui/users/new-link$"))
    expect(admin.locator("h1")).to_have_text("Password of cps_reset reset")
    link = admin.locator("#enrol-link").inner_text().strip()
    w.assert_no_csp_violations()
    person = open_page().page
    sign_in(person, store.url, "cps_reset")
    expect(person.locator("#signin-error")).to_have_text(REFUSED)  # the old password is gone
    person.goto(link)
    person.fill("#enrol-password", "cps reset passphrase")
    person.fill("#enrol-repeat", "cps reset passphrase")
    person.get_by_role("button", name="Set my password").click()
    sign_in(person, store.url, "cps_reset", "cps reset passphrase")
    person.wait_for_url(re.compile(r"/ui/cases$"))

    auditor = open_page().page
    sign_in(auditor, store.url, "aud_white")
    assert "Alerts" in nav_links(auditor)
    auditor.goto(store.url + "/ui/alerts")
    expect(auditor.locator("h1")).to_have_text("Alerts")
    expect(auditor.locator("tr[data-type='user.reset']").first).to_contain_text("cps_reset")
    expect(auditor.locator("tr[data-type='user.enrolled']").first).to_contain_text("cps_reset")
    response = admin.goto(store.url + "/ui/alerts")
    assert response is not None and response.status == 403


def test_a_user_changes_their_password_and_turns_on_two_factor_with_a_qr_code(
    store: Store, open_page
) -> None:
    from evidence.identity.totp import totp_code, totp_step

    create_user(store.ctx, "eo_totp", "evidence_officer", PASSWORD)
    w = open_page()
    page = w.page
    sign_in(page, store.url, "eo_totp")
    page.locator("a.who__name").click()
    page.wait_for_url(re.compile(r"/ui/account$"))
    page.fill("#pw-current", "not my password")
    page.fill("#pw-new", "my changed passphrase")
    page.fill("#pw-repeat", "my changed passphrase")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password-error")).to_have_text("The current password is not right.")
    page.fill("#pw-current", PASSWORD)
    page.fill("#pw-new", "my changed passphrase")
    page.fill("#pw-repeat", "my changed passphrase")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".flash--ok")).to_contain_text("Password changed")  # still signed in

    page.get_by_role("button", name="Set up two-factor sign-in").click()
    qr = page.locator("#totp-qr")
    expect(qr).to_be_visible()
    assert qr.get_attribute("src").startswith("data:image/svg+xml;base64,")
    assert page.evaluate("document.querySelector('#totp-qr').naturalWidth") > 0  # it renders
    secret = page.locator("#totp-secret").inner_text().strip()
    page.fill("#totp-code", totp_code(secret, totp_step(dt.datetime.now(dt.UTC))))
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    page.wait_for_url(re.compile(r"/ui/account/recovery-codes$"))
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    page.reload()
    expect(page.locator("h1")).to_have_text("No codes to show")
    screenshot(page, "ui-account-desktop.png")
    w.assert_no_csp_violations()
    # Sign-in now needs a code; a recovery code does, once.
    other = open_page().page
    sign_in(other, store.url, "eo_totp", "my changed passphrase")
    expect(other.locator("#signin-error")).to_have_text(REFUSED)
    other.goto(store.url + "/ui/login")
    other.fill("#username", "eo_totp")
    other.fill("#password", "my changed passphrase")
    other.fill("#totp", codes[0])
    other.check("#acknowledge")
    other.get_by_role("button", name="Sign in").click()
    other.wait_for_url(re.compile(r"/ui/clips$"))


def test_admin_creates_a_device_and_sees_its_key_once(store: Store, open_page) -> None:
    w = open_page()
    page = w.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=store.url)
    sign_in(page, store.url, "adm_black")
    page.goto(store.url + "/ui/devices")
    page.fill("#nd-name", "dock-custody-2")
    page.get_by_role("button", name="Create device").click()
    page.wait_for_url(re.compile(r"/ui/devices/new-key$"))
    expect(page.locator("#key-warning")).to_contain_text(
        "Copy the key now: it will not be shown again."
    )
    key = page.locator("#device-key").inner_text().strip()
    assert authenticate_device(store.ctx, key).name == "dock-custody-2"
    page.get_by_role("button", name="Copy key").click()
    assert page.evaluate("navigator.clipboard.readText()") == key
    screenshot(page, "ui-device-key-desktop.png")
    # Shown once: a reload (or coming back) shows no key, and the store never kept it.
    page.reload()
    expect(page.locator("h1")).to_have_text("No key to show")
    assert key not in page.content()
    assert key not in json.dumps(
        [e.decode() for _, e in store.ctx.ledger.entries(0, store.ctx.ledger.size())]
    )
    # Disabled: its key opens nothing from now on.
    page.goto(store.url + "/ui/devices")
    row = page.locator("tr[data-device='dock-custody-2']")
    row.get_by_role("button", name="Disable").click()
    expect(page.locator(".flash--ok")).to_contain_text("Device dock-custody-2 disabled")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "disabled")
    with pytest.raises(NotAuthenticated):
        authenticate_device(store.ctx, key)
    w.assert_no_csp_violations()


def test_admin_grants_an_auditor_a_clip_which_the_auditor_can_then_play(
    store: Store, open_page
) -> None:
    create_user(store.ctx, "aud_grey", "auditor", PASSWORD)
    w = open_page()
    admin = w.page
    sign_in(admin, store.url, "adm_black")
    admin.goto(store.url + "/ui/grants")
    admin.select_option("#g-user", "aud_grey")
    admin.select_option("#g-target", "clip")
    admin.fill("#g-target-id", store.other)
    admin.fill("#g-reason", "Complaint 2024/117: review of the arrest")
    # More than 90 days is refused (by the service), beside the form.
    today = dt.datetime.now(dt.UTC).date()
    admin.evaluate("document.querySelector('#g-ends').removeAttribute('max')")
    admin.fill("#g-ends", (today + dt.timedelta(days=120)).isoformat())
    admin.get_by_role("button", name="Grant access").click()
    expect(admin.locator("#grant-error")).to_contain_text("within 90 days")
    expect(admin.locator("#g-target-id")).to_have_value(store.other)
    admin.fill("#g-ends", (today + dt.timedelta(days=7)).isoformat())
    admin.get_by_role("button", name="Grant access").click()
    expect(admin.locator(".flash--ok")).to_contain_text(
        "it opens nothing until another administrator approves it"
    )
    grant = admin.locator("tr[data-grant]", has_text="aud_grey")
    expect(grant).to_contain_text("Complaint 2024/117")
    expect(grant).to_contain_text((today + dt.timedelta(days=7)).isoformat() + " 00:00")
    (entry,) = [e for e in ledger_entries(store.ctx, "grant.created") if e["grantee"] == "aud_grey"]
    assert entry["actor"] == "user:adm_black" and entry["subject"]["clip"] == store.other
    screenshot(admin, "ui-grants-desktop.png")
    w.assert_no_csp_violations()

    # Until a second administrator approves, the auditor cannot play it.
    auditor = open_page().page
    sign_in(auditor, store.url, "aud_grey")
    assert (
        auditor.request.get(f"{store.url}/ui/clips/{store.other}/stream?reason=audit").status == 403
    )
    second = open_page().page
    sign_in(second, store.url, "adm_grey")
    approve_in_ui(second, store.url, "aud_grey", "grant")

    # The auditor now gets the reason prompt and the player for that clip, and only that one.
    auditor.goto(f"{store.url}/ui/clips/{store.other}")
    auditor.select_option("#reason", "audit")
    auditor.get_by_role("button", name="Record reason and play").click()
    src = auditor.locator("video#video").get_attribute("src")
    response = auditor.request.get(store.url + src, headers={"Range": "bytes=0-1023"})
    assert response.status == 206
    assert (
        auditor.request.get(f"{store.url}/ui/clips/{store.own}/stream?reason=audit").status == 403
    )

    # The admin ends the grant early; the auditor's next request is refused.
    admin.goto(store.url + "/ui/grants")
    admin.locator("tr[data-grant]", has_text="aud_grey").get_by_role(
        "button", name="Revoke"
    ).click()
    expect(admin.locator(".flash--ok")).to_contain_text("Grant revoked")
    expect(admin.locator("tr[data-grant]", has_text="aud_grey")).to_have_count(0)
    assert auditor.request.get(store.url + src, headers={"Range": "bytes=0-1023"}).status == 403


# -- the route table -------------------------------------------------------------------------------


def test_every_ui_route_has_a_gate_and_every_post_checks_csrf(tmp_path: Path) -> None:
    """As the API's matrix test: a UI route without a gate, or a UI POST without the CSRF
    check (the sign-in form has its own nonce), fails here."""
    from fastapi.routing import APIRoute

    from api.app import create_app
    from api.gates import public
    from api.ui.session import csrf_protect
    from evidence.config import Settings

    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/e.db"))
    try:  # FastAPI >= 0.16x keeps included routers whole
        from fastapi.routing import iter_route_contexts

        mounted = [(c.original_route, c) for c in iter_route_contexts(app.routes)]
    except ImportError:
        mounted = [(r, r) for r in app.routes]
    routes = [
        r for declared, r in mounted if isinstance(declared, APIRoute) and r.path.startswith("/ui")
    ]
    assert len(routes) >= 20

    def calls(dependant: Any) -> Iterator[Any]:
        for d in dependant.dependencies:
            yield d.call
            yield from calls(d)

    for route in routes:
        deps = list(calls(route.dependant))
        gates = [d for d in deps if d is public or hasattr(d, "action")]
        assert len(gates) == 1, f"{route.path} declares {len(gates)} gates"
        # The sign-in and enrolment forms come before any session: they carry a
        # double-submit nonce instead (api/ui/session.py, api/ui/account.py).
        if "POST" in route.methods and route.path not in ("/ui/login", "/ui/enrol/{token}"):
            assert csrf_protect in deps, f"POST {route.path} does not check the CSRF token"


def test_the_about_page_shows_the_keys_a_court_pins(store: Store, open_page) -> None:
    """Linked from every signed-in page's footer, and open to anyone without an account: the
    ledger verifier key and every bundle key with its validity period and fingerprint, the
    same as the public API serves."""
    published = httpx.get(store.url + "/api/v1/bundles/keys").json()["keys"]
    ledger_key = httpx.get(store.url + "/api/v1/ledger/key").text.strip()
    assert published and ledger_key
    w = open_page()
    page = w.page
    sign_in(page, store.url, "cps_green")
    page.get_by_role("link", name="About / verification").click()
    page.wait_for_url(re.compile(r"/ui/about$"))
    expect(page.locator("[data-ledger-key]")).to_have_text(ledger_key)
    for key in published:
        row = page.locator(f"[data-bundle-key='{key['key_id']}']")
        expect(row).to_contain_text(key["key_id"])
        expect(row).to_contain_text(key["valid_from"])
        expect(row).to_contain_text(key["valid_until"] or "in force")
    expect(page.locator("#recipe")).to_contain_text("python3 verify_proofs.py")
    assert "CPS" in page.locator(".who").inner_text(), "a signed-in person keeps their navigation"
    w.assert_no_csp_violations()
    screenshot(page, "about.png")
    anonymous = open_page().page
    response = anonymous.goto(store.url + "/ui/about")
    assert response is not None and response.status == 200 and anonymous.url.endswith("/ui/about")
    expect(anonymous.locator("[data-ledger-key]")).to_have_text(ledger_key)
    expect(anonymous.locator(f"[data-bundle-key='{published[-1]['key_id']}']")).to_be_visible()


# -- the camera register (last: it attributes the module's unattributed clip) ---------------------


def test_the_register_in_the_browser_and_the_unattributed_queue(store: Store, open_page) -> None:
    """An admin registers a camera and checks it out to an officer for a shift; an auditor
    reads the register, an officer cannot; an evidence officer works the unattributed queue:
    the clip with no officer is attributed with a reason, and that officer then sees it."""
    admin = open_page().page
    sign_in(admin, store.url, "adm_black")
    admin.get_by_role("link", name="Cameras").click()
    admin.fill("#cam-serial", "vb400-0099")
    admin.fill("#cam-make", "Motorola")
    admin.fill("#cam-model", "VB400")
    admin.get_by_role("button", name="Register camera").click()
    expect(admin.locator(".flash--ok")).to_contain_text("VB400-0099 registered")
    admin.fill("#as-officer", "PC5678")
    admin.select_option("#as-kind", "pool")
    admin.fill("#as-from", "2026-12-01T07:00")
    admin.fill("#as-to", "2026-12-01T19:00")
    admin.get_by_role("button", name="Assign camera").click()
    expect(admin.locator(".flash--ok")).to_contain_text("pool checkout")
    expect(admin.locator("tr[data-kind=pool]")).to_contain_text("PC5678")
    # Overlapping the same shift is refused, saying with whom.
    admin.fill("#as-officer", "PC1234")
    admin.select_option("#as-kind", "pool")
    admin.fill("#as-from", "2026-12-01T12:00")
    admin.fill("#as-to", "2026-12-01T20:00")
    admin.get_by_role("button", name="Assign camera").click()
    expect(admin.locator(".flash--error")).to_contain_text("PC5678")
    screenshot(admin, "ui-camera.png")
    assert [e["kind"] for e in ledger_entries(store.ctx, "camera.assigned")][-1:] == ["pool"]

    auditor = open_page().page
    sign_in(auditor, store.url, "aud_white")
    auditor.goto(store.url + "/ui/cameras")
    expect(auditor.locator("tr[data-camera='VB400-0099']")).to_be_visible()
    assert auditor.locator("#register").count() == 0, "auditors read the register only"
    officer = open_page().page
    sign_in(officer, store.url, "pc_jones")
    assert officer.goto(store.url + "/ui/cameras").status == 403
    assert officer.goto(store.url + "/ui/clips/unattributed").status == 403

    eo = open_page().page
    sign_in(eo, store.url, "eo_brown")
    eo.get_by_role("link", name="Unattributed").click()
    row = eo.locator(f"tr[data-clip-id='{store.other}']")
    expect(row).to_be_visible()
    row.get_by_role("link").click()
    expect(eo.locator("#attribution [data-unattributed]")).to_be_visible()
    eo.fill("#attr-officer", "PC5678")
    eo.get_by_role("button", name="Attribute").click()  # no reason: the browser asks for one
    assert eo.locator(".flash--ok").count() == 0
    eo.fill("#attr-reason", "PC Jones identified herself on the footage at 00:04")
    eo.get_by_role("button", name="Attribute").click()
    expect(eo.locator(".flash--ok")).to_contain_text("Attribution recorded")
    expect(eo.locator("#attribution [data-officer]")).to_contain_text("PC5678")
    expect(eo.locator("#attribution [data-attribution-reason]")).to_contain_text(
        "identified herself"
    )
    custody = eo.locator("tr[data-type='clip.attributed']")
    expect(custody).to_contain_text("officer id none")  # the previous attribution, in words
    expect(custody).to_contain_text("officer id PC5678")
    assert "{'" not in custody.inner_text(), "never a raw dict"
    [entry] = [
        e
        for e in ledger_entries(store.ctx, "clip.attributed")
        if e["subject"]["clip"] == store.other
    ]
    assert entry["new"]["officer_id"] == "PC5678" and entry["previous"]["officer_id"] is None
    eo.goto(store.url + "/ui/clips/unattributed")
    expect(eo.locator(f"tr[data-clip-id='{store.other}']")).to_have_count(0)
    officer.goto(store.url + "/ui/clips")
    expect(officer.locator(f"[data-clip-id='{store.other}']").first).to_be_visible()
