"""The clip page's redaction form in a real browser: an evidence officer asks for a black box
and a muted stretch with a reason; a worker makes the copy; the page lists it with its hash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from evidence.context import Context
from evidence.migrate import upgrade
from evidence.redactions import make_redaction
from tests.fixtures.api import running_api
from tests.fixtures.browser import sign_in
from tests.fixtures.databases import make_settings
from tests.fixtures.ingest import ingest_file
from tests.fixtures.people import make_force

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture reports it
    expect = None  # type: ignore[assignment]


@pytest.fixture
def world(tmp_path: Path, clip_1080p) -> Iterator[tuple[str, Context, str]]:
    url = f"sqlite:///{tmp_path}/evidence.db"
    upgrade(url)
    ctx = Context(make_settings(tmp_path, url))
    clip_id = ingest_file(ctx, clip_1080p)
    with running_api(ctx.settings) as base:
        make_force(ctx, httpx.Client(base_url=base, timeout=30))
        yield base, ctx, clip_id


def test_evidence_officer_requests_a_redaction_from_the_clip_page(world, open_page) -> None:  # noqa: F811
    base, ctx, clip_id = world
    w = open_page()
    page = w.page
    sign_in(page, base, "eo_brown")
    page.goto(f"{base}/ui/clips/{clip_id}")
    form = page.locator("#redact form")
    # A box past the end of the clip is refused, with the reason, and nothing is recorded.
    fields = {
        "x": "100",
        "y": "80",
        "w": "320",
        "h": "240",
        "box_from": "0",
        "box_to": "9:00",
        "reason": "face of a bystander",
    }

    def submit(values: dict[str, str]) -> None:
        for name, value in values.items():
            form.locator(f"[name={name}]").fill(value)
        form.get_by_role("button", name="Request redaction").click()

    submit(fields)
    expect(page.locator(".flash--error")).to_contain_text("beyond the end of the clip")
    submit({**fields, "box_to": "1.5", "mute_from": "0.5", "mute_to": "2"})
    expect(page.locator(".flash--ok")).to_contain_text("redaction-1 is being made")
    entries = [json.loads(e) for _, e in ctx.ledger.entries(0, ctx.ledger.size())]
    [asked] = [e for e in entries if e["type"] == "redaction.requested"]
    assert asked["actor"] == "user:eo_brown" and asked["reason"] == "face of a bystander"
    assert asked["boxes"][0]["w"] >= 320 and asked["mute"][0]["start_ms"] == 500
    made = make_redaction(ctx, clip_id, "redaction-1")  # the worker, in-process
    page.reload()
    expect(page.locator("#integrity, .card--integrity")).to_contain_text(made["sha256"])
    w.assert_no_csp_violations()

    officer = open_page().page
    sign_in(officer, base, "pc_smith")
    officer.goto(f"{base}/ui/clips/{clip_id}")
    expect(officer.locator("#redact")).to_have_count(0)
