"""Disclosure to the defence in a real browser (docs/disclosure.md): an evidence officer shares
a case with a defence firm, one exhibit as its redacted copy only, watermarked with the firm's
name, and asks for a bundle for that share; the firm's lawyer is told to set up TOTP, does,
signs in with a code, downloads the bundle (which `evidence verify bundle` accepts), plays the
redacted and watermarked copies and cannot reach the original; the ledger verifies after."""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from evidence.accounts import organisations
from evidence.accounts.service import create_user
from evidence.bundles.service import build_bundle
from evidence.cases.models import watermark_kind
from evidence.cases.service import add_items, create_case
from evidence.cases.watermarks import make_watermarks
from evidence.context import Context
from evidence.identity.totp import totp_code, totp_step
from evidence.migrate import upgrade
from evidence.redactions import make_redaction, request_redaction
from tests.fixtures.api import running_api
from tests.fixtures.browser import screenshot, sign_in
from tests.fixtures.databases import make_settings
from tests.fixtures.ingest import ingest_file
from tests.fixtures.people import PASSWORD, make_force, principal

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture reports it
    expect = None  # type: ignore[assignment]

FIRM = "Doe & Co Solicitors"


@pytest.fixture
def world(tmp_path: Path, clip_1080p, clip_mov) -> Iterator[dict[str, Any]]:
    """Two clips as exhibits of one case, a redacted copy of the first, a defence firm with
    one member (no TOTP yet)."""
    url = f"sqlite:///{tmp_path}/evidence.db"
    upgrade(url)
    ctx = Context(make_settings(tmp_path, url))
    redacted = ingest_file(ctx, clip_mov, metadata={"officer_id": "PC1234"})
    whole = ingest_file(ctx, clip_1080p)
    with running_api(ctx.settings) as base:
        make_force(ctx, httpx.Client(base_url=base, timeout=30))
        eo = principal(ctx, "eo_brown")
        case = create_case(ctx, eo, "R v Doe", "URN-DEF-1")
        add_items(ctx, eo, case["id"], [redacted, whole])
        box = {"x": 0, "y": 0, "w": 64, "h": 64, "start_ms": 0, "end_ms": 500}
        kind = request_redaction(ctx, eo, redacted, [box], [], "a bystander's face")["kind"]
        assert make_redaction(ctx, redacted, kind)["state"] == "ready"  # the worker, in-process
        org = organisations.create_organisation(ctx, None, FIRM, "defence_firm")
        create_user(ctx, "def_grey", "external", PASSWORD)
        organisations.set_member(ctx, None, "def_grey", org["id"])
        yield {
            "base": base,
            "ctx": ctx,
            "case_id": case["id"],
            "redacted": redacted,
            "whole": whole,
            "kind": kind,
        }


def played_kind(page, url: str) -> str:  # type: ignore[no-untyped-def]
    """Open the clip page at `url` and return the kind of the copy its player asked for (the
    stream request the video element makes, answered by a redirect to a viewing)."""
    with page.expect_response(lambda r: "/stream?" in r.url) as answer:
        page.goto(url)
    response = answer.value
    assert response.status == 307, (response.url, response.status)
    kinds = parse_qs(urlparse(response.url).query).get("kind", ["proxy"])
    return kinds[0]


def test_a_defence_lawyer_signs_in_with_totp_and_takes_a_redacted_bundle(
    world, open_page, tmp_path: Path
) -> None:
    base, ctx, case_id = world["base"], world["ctx"], world["case_id"]
    case_url = f"{base}/ui/cases/{case_id}"

    # The evidence officer shares the case with the firm, the first exhibit redacted only.
    w = open_page()
    eo = w.page
    sign_in(eo, base, "eo_brown")
    eo.goto(case_url)
    eo.select_option("#share-org", label=f"{FIRM} (defence firm)")
    eo.fill("#share-purpose", "defence case preparation")
    eo.fill("#share-basis", "CPIA 1996 s.3 initial disclosure")
    eo.locator(f"[data-share-exhibit='{world['redacted']}'] input[name=redacted]").check()
    eo.check("#share-watermark")
    eo.get_by_role("button", name="Share case").click()
    expect(eo.locator(".flash--ok")).to_contain_text(f"Shared with {FIRM} until")
    row = eo.locator(f"li[data-organisation='{FIRM}']")
    expect(row).to_have_attribute("data-active", "true")
    expect(row.locator("[data-redacted-only]")).to_have_text("1 redacted only")
    # A bundle for that share; the worker builds it (in-process).
    eo.select_option("#bundle-share", label=f"share with {FIRM}")
    eo.get_by_role("button", name="Request court bundle").click()
    expect(eo.locator(".flash--ok")).to_contain_text("Court bundle requested")
    bundle_id = eo.locator("tr[data-bundle]").first.get_attribute("data-bundle")
    assert bundle_id and build_bundle(ctx, bundle_id) == "ready"
    share_id = row.get_attribute("data-share")
    assert share_id  # its watermarked copies are made below, after the redacted copy is seen
    w.assert_no_csp_violations()

    # The defence lawyer, password only: told to set up two-factor sign-in, shown nothing.
    d = open_page()
    lawyer = d.page
    sign_in(lawyer, base, "def_grey")
    expect(lawyer.locator("main")).to_contain_text("TOTP")
    expect(lawyer.locator("main")).not_to_contain_text("URN-DEF-1")
    lawyer.goto(case_url)
    expect(lawyer.locator("main")).to_contain_text("set up two-factor sign-in")
    # They set it up on their account page...
    lawyer.goto(base + "/ui/account")
    lawyer.get_by_role("button", name="Set up two-factor sign-in").click()
    secret = lawyer.locator("#totp-secret").inner_text().strip()
    step = totp_step(dt.datetime.now(dt.UTC))
    lawyer.fill("#totp-code", totp_code(secret, step))
    lawyer.get_by_role("button", name="Turn on two-factor sign-in").click()
    lawyer.wait_for_url(re.compile(r"/ui/account/recovery-codes$"))
    # ...and sign in again with a code (the next step's: the one just used is spent).
    again = open_page().page
    again.goto(base + "/ui/login")
    again.fill("#username", "def_grey")
    again.fill("#password", PASSWORD)
    again.fill("#totp", totp_code(secret, step + 1))
    again.check("#acknowledge")
    again.get_by_role("button", name="Sign in").click()
    again.wait_for_url(re.compile(r"/ui/cases$"))
    again.get_by_role("link", name="URN-DEF-1").click()
    again.wait_for_url(case_url)
    exhibit = again.locator(f"tr[data-exhibit='{world['redacted']}']")
    expect(exhibit.locator("[data-redacted-only]")).to_have_text("Redacted copy only")
    expect(
        again.locator(f"tr[data-exhibit='{world['whole']}'] [data-redacted-only]")
    ).to_have_count(0)
    assert again.locator("#shares, #include-proxies, .members li").count() == 0
    screenshot(again, "ui-disclosure-defence.png")

    # The bundle made for their share: downloaded with a reason, and it verifies.
    taking = again.locator(f"tr[data-bundle='{bundle_id}'] form.dlform")
    taking.locator("select[name=reason]").select_option("disclosure")
    taking.locator("input[name=detail]").fill("defence review")
    with again.expect_download() as download:
        taking.get_by_role("button", name="Download ZIP").click()
    path = tmp_path / "defence.zip"
    download.value.save_as(path)
    result = CliRunner().invoke(
        app, ["verify", "bundle", str(path), "--key", ctx.ledger.verifier_key]
    )
    assert result.exit_code == 0, result.output
    assert "original withheld" in result.output
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = zf.namelist()
    [held] = [x for x in manifest["exhibits"] if x["clip_id"] == world["redacted"]]
    assert held["file"] is None and not any(n.endswith("original.mov") for n in names)

    # The clip page plays the copy the share gives them: the redacted copy (no watermarked
    # one made yet), labelled, and offers no download of the original.
    why = "reason=disclosure%3A+defence+review"
    page_url = f"{base}/ui/clips/{world['redacted']}?reason=disclosure&detail=defence+review"
    played = played_kind(again, page_url)
    assert played == world["kind"], played
    expect(again.locator(f"[data-copy='{world['kind']}']")).to_have_text("Redacted copy")
    expect(again.locator("#video")).to_have_attribute("data-kind", world["kind"])
    expect(again.get_by_role("link", name="Download original")).to_have_count(0)
    # Its timeline shows the redacted copy's entry without the force's reason or who asked.
    expect(again.locator("[data-withheld='redaction.reason']")).to_have_count(1)
    expect(again.locator("main")).not_to_contain_text("a bystander's face")
    expect(again.locator("main")).not_to_contain_text("eo_brown")
    # Once the share's watermarked copies are made, that is the copy the page plays.
    assert len(make_watermarks(ctx, share_id)) == 2  # the worker, in-process
    wm = watermark_kind(share_id)
    assert played_kind(again, page_url) == wm
    expect(again.locator(f"[data-copy='{wm}']")).to_have_text(f"Watermarked for {FIRM}")
    expect(again.get_by_role("link", name="Download original")).to_have_count(0)
    screenshot(again, "ui-disclosure-watermarked-player.png")
    # The exhibit given whole: its watermarked copy, and the original may be downloaded.
    whole_url = f"{base}/ui/clips/{world['whole']}?reason=disclosure&detail=defence+review"
    assert played_kind(again, whole_url) == wm
    expect(again.locator(f"[data-copy='{wm}']")).to_have_text(f"Watermarked for {FIRM}")
    expect(again.get_by_role("link", name="Download original")).to_have_count(1)
    viewed = [
        json.loads(e)
        for _, e in ctx.ledger.entries(0, ctx.ledger.size())
        if json.loads(e)["type"] == "clip.viewed" and json.loads(e)["actor"] == "user:def_grey"
    ]
    objects = {e["object"].rsplit("/", 1)[-1] for e in viewed}
    assert {world["kind"], wm} <= objects and "proxy" not in objects, objects

    # The original and its proxy are out of reach by any address.
    for path_ in (
        f"/ui/clips/{world['redacted']}/original?{why}",
        f"/ui/clips/{world['redacted']}/stream?{why}",
    ):
        r = again.request.get(base + path_, max_redirects=0)
        assert r.status == 403, (path_, r.status)
    red = again.request.get(
        f"{base}/ui/clips/{world['redacted']}/stream?{why}&kind={world['kind']}", max_redirects=0
    )
    assert red.status in (302, 303, 307), red.status
    marked = again.request.get(
        f"{base}/ui/clips/{world['redacted']}/stream?{why}&kind={watermark_kind(share_id)}",
        max_redirects=0,
    )
    assert marked.status in (302, 303, 307), marked.status
    d.assert_no_csp_violations()

    # The ledger verifies, and records the share, the views and the download through it.
    checked = CliRunner().invoke(
        app, ["verify", "ledger", "--db", ctx.db.url, "--key", ctx.ledger.verifier_key]
    )
    assert checked.exit_code == 0, checked.output
    entries = [json.loads(e) for _, e in ctx.ledger.entries(0, ctx.ledger.size())]
    [shared] = [e for e in entries if e["type"] == "share.created"]
    assert shared["organisation"] == FIRM and shared["redacted_only"] == [world["redacted"]]
    [taken] = [e for e in entries if e["type"] == "bundle.downloaded"]
    assert taken["actor"] == "user:def_grey" and taken["organisation"] == FIRM
    assert taken["subject"]["share"] == shared["subject"]["share"]
    assert taken["reason"] == "disclosure: defence review"
