"""Reviewing footage through the API: each role sees what the policy says, every play and
download needs a reason and leaves a ledger entry, Range requests work as browsers need."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from tests.conftest import sqlite_only
from tests.fixtures.media import SIDECAR
from tests.fixtures.people import PASSWORD, Force, approve_pending
from tests.fixtures.worlds import ledger_entries

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md


@pytest.fixture
def force(two_clip_force):  # type: ignore[no-untyped-def]
    return two_clip_force


def search_ids(f: Force, user: str, **params) -> set[str]:
    r = f.http.get("/api/v1/clips", headers=f.as_(user), params=params)
    assert r.status_code == 200, r.text
    return {c["id"] for c in r.json()["items"]}


def test_each_role_sees_what_the_policy_allows(force) -> None:
    f, ids, _ = force
    assert search_ids(f, "pc_smith") == {ids["own"]}
    assert search_ids(f, "pc_jones") == set()
    assert search_ids(f, "eo_brown") == {ids["own"], ids["other"]}
    assert search_ids(f, "aud_white") == {ids["own"], ids["other"]}
    assert search_ids(f, "cps_green") == set()
    assert f.http.get("/api/v1/clips", headers=f.as_("adm_black")).status_code == 403
    assert f.http.get(f"/api/v1/clips/{ids['other']}", headers=f.as_("pc_smith")).status_code == 404
    assert f.http.get("/api/v1/clips").status_code == 401


def test_search_filters(force) -> None:
    f, ids, _ = force
    eo = "eo_brown"
    assert search_ids(f, eo, officer_id="PC1234") == {ids["own"]}
    assert search_ids(f, eo, q="BWV-7781") == {ids["own"]}
    assert search_ids(f, eo, **{"from": "2024-07-03T00:00:00Z", "to": "2024-07-04T00:00:00Z"}) == {
        ids["own"]
    }
    f.http.post(f"/api/v1/clips/{ids['other']}/tags", headers=f.as_(eo), json={"tag": "INC-42"})
    assert search_ids(f, eo, tag="INC-42") == {ids["other"]}
    first = f.http.get("/api/v1/clips", headers=f.as_(eo), params={"limit": 1}).json()
    assert len(first["items"]) == 1 and first["next_before"]
    params = {"limit": 1, "before": first["next_before"]}
    second = f.http.get("/api/v1/clips", headers=f.as_(eo), params=params).json()
    assert len(second["items"]) == 1 and second["next_before"] is None
    assert {first["items"][0]["id"], second["items"][0]["id"]} == {ids["own"], ids["other"]}


@sqlite_only
def test_playing_needs_a_reason_and_is_audited_once_per_viewing(force) -> None:
    f, ids, ctx = force
    url = f"/api/v1/clips/{ids['own']}/stream"
    r = f.http.get(url, headers=f.as_("pc_smith"))
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    assert ledger_entries(ctx, "clip.viewed") == []
    headers = {**f.as_("pc_smith"), "Range": "bytes=0-99"}
    r = f.http.get(url, headers=headers, params={"reason": "investigation: burglary 42"})
    assert r.status_code == 206 and len(r.content) == 100
    assert r.headers["content-range"].startswith("bytes 0-99/")
    assert r.headers["content-type"] == "video/mp4" and r.headers["etag"]
    size = int(r.headers["content-range"].rsplit("/", 1)[1])
    r2 = f.http.get(
        url,
        headers={**f.as_("pc_smith"), "Range": f"bytes={size - 10}-"},
        params={"reason": "investigation: burglary 42"},
    )
    assert r2.status_code == 206 and len(r2.content) == 10
    (viewed,) = ledger_entries(ctx, "clip.viewed")
    assert viewed["actor"] == "user:pc_smith" and viewed["reason"] == "investigation: burglary 42"
    assert viewed["subject"]["clip"] == ids["own"] and viewed["source_ip"] == "127.0.0.1"
    # If-Range with a stale validator gets the whole proxy, not a range of something else.
    r3 = f.http.get(
        url,
        headers={**headers, "If-Range": '"stale"'},
        params={"reason": "investigation: burglary 42"},
    )
    assert r3.status_code == 200 and len(r3.content) == size


@sqlite_only
def test_original_download_is_the_docked_bytes_and_audited(force, clip_with_sidecar) -> None:
    f, ids, ctx = force
    r = f.http.get(
        f"/api/v1/clips/{ids['own']}/original",
        headers=f.as_("eo_brown"),
        params={"reason": "disclosure"},
    )
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == clip_with_sidecar.sha256
    assert "attachment" in r.headers["content-disposition"]
    (d,) = ledger_entries(ctx, "clip.downloaded")
    assert d["sha256"] == clip_with_sidecar.sha256 and d["reason"] == "disclosure"


def test_auditor_plays_footage_only_with_an_explicit_grant(force) -> None:
    f, ids, ctx = force
    url = f"/api/v1/clips/{ids['other']}/stream"
    params = {"reason": "audit"}
    assert (
        f.http.get(f"/api/v1/clips/{ids['other']}", headers=f.as_("aud_white")).status_code == 200
    )
    assert f.http.get(url, headers=f.as_("aud_white"), params=params).status_code == 403
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    body = {
        "username": "aud_white",
        "clip_id": ids["other"],
        "reason": "complaint review 7",
        "expires_at": expires,
    }
    assert f.http.post("/api/v1/grants", headers=f.as_("eo_brown"), json=body).status_code == 403
    assert f.http.post("/api/v1/grants", headers=f.as_("adm_black"), json=body).status_code == 201
    # It opens nothing until a second administrator approves it (docs/accounts.md).
    assert f.http.get(url, headers=f.as_("aud_white"), params=params).status_code == 403
    assert approve_pending(ctx) == 1
    assert f.http.get(url, headers=f.as_("aud_white"), params=params).status_code == 200
    assert ledger_entries(ctx, "grant.created")[0]["grantee"] == "aud_white"
    # Admins manage, they do not watch.
    assert f.http.get(url, headers=f.as_("adm_black"), params=params).status_code == 403
    # A grant can be ended early; the auditor is refused again at once.
    grant_id = ledger_entries(ctx, "grant.created")[0]["subject"]["grant"]
    assert (
        f.http.delete(f"/api/v1/grants/{grant_id}", headers=f.as_("aud_white")).status_code == 403
    )
    assert (
        f.http.delete(f"/api/v1/grants/{grant_id}", headers=f.as_("adm_black")).status_code == 204
    )
    assert f.http.get(url, headers=f.as_("aud_white"), params=params).status_code == 403
    assert (
        f.http.delete(f"/api/v1/grants/{grant_id}", headers=f.as_("adm_black")).status_code == 409
    )
    assert ledger_entries(ctx, "grant.revoked")[0]["actor"] == "user:adm_black"


@sqlite_only
def test_clip_detail_has_hashes_integrity_and_custody_with_proofs(force) -> None:
    f, ids, ctx = force
    f.http.get(
        f"/api/v1/clips/{ids['own']}/stream",
        headers=f.as_("eo_brown"),
        params={"reason": "court preparation"},
    )
    d = f.http.get(f"/api/v1/clips/{ids['own']}", headers=f.as_("eo_brown")).json()
    assert d["integrity"]["status"] == "verified"
    assert d["officer_id"] == SIDECAR["officer_id"] and d["original"]["sha256"] == d["sha256"]
    assert {x["kind"] for x in d["derivatives"]} == {"proxy", "thumbnail"}
    types = [c["type"] for c in d["custody"]]
    assert types[:2] == ["upload.completed", "clip.ingested"] and "clip.viewed" in types
    proof = f.http.get(d["custody"][1]["proof"], headers=f.as_("aud_white"))
    assert proof.status_code == 200 and proof.json()["hashes"]


@sqlite_only
def test_tags_categories_bookmarks_are_recorded(force) -> None:
    f, ids, ctx = force
    clip = ids["own"]
    # The category decides retention: only an evidence officer sets it, never the officer
    # whose camera recorded the clip (complaint -> non-evidential would dispose of it).
    r = f.http.put(
        f"/api/v1/clips/{clip}/category",
        headers=f.as_("pc_smith"),
        json={"category": "non-evidential"},
    )
    assert r.status_code == 403
    r = f.http.put(
        f"/api/v1/clips/{clip}/category", headers=f.as_("eo_brown"), json={"category": "evidential"}
    )
    assert r.status_code == 204
    bad = f.http.put(
        f"/api/v1/clips/{clip}/category", headers=f.as_("eo_brown"), json={"category": "nope"}
    )
    assert bad.status_code == 422
    assert f.http.post(
        f"/api/v1/clips/{clip}/tags", headers=f.as_("pc_smith"), json={"tag": "INC-7"}
    ).json() == {"tags": ["INC-7"]}
    bm = f.http.post(
        f"/api/v1/clips/{clip}/bookmarks",
        headers=f.as_("pc_smith"),
        json={"at_ms": 1500, "note": "suspect enters"},
    )
    assert bm.status_code == 201
    assert (
        f.http.post(
            f"/api/v1/clips/{clip}/tags", headers=f.as_("aud_white"), json={"tag": "x"}
        ).status_code
        == 403
    )
    d = f.http.get(f"/api/v1/clips/{clip}", headers=f.as_("pc_smith")).json()
    assert d["category"] == "evidential" and d["tags"] == ["INC-7"]
    assert d["bookmarks"][0]["note"] == "suspect enters"
    assert [
        e["type"]
        for e in (
            ledger_entries(ctx, "clip.categorised")
            + ledger_entries(ctx, "clip.tagged")
            + ledger_entries(ctx, "clip.bookmarked")
        )
    ] == ["clip.categorised", "clip.tagged", "clip.bookmarked"]


def test_cases_exhibits_and_membership(force) -> None:
    f, ids, ctx = force
    assert (
        f.http.post(
            "/api/v1/cases", headers=f.as_("pc_smith"), json={"title": "x", "reference": "y"}
        ).status_code
        == 403
    )
    case = f.http.post(
        "/api/v1/cases",
        headers=f.as_("eo_brown"),
        json={"title": "R v Doe", "reference": "URN 01AB2345678"},
    ).json()
    r = f.http.post(
        f"/api/v1/cases/{case['id']}/items",
        headers=f.as_("eo_brown"),
        json={"clip_ids": [ids["own"], ids["other"], ids["own"]]},
    )
    assert [a["exhibit_ref"] for a in r.json()["added"]] == ["PC1234/1", "EX/2"]
    # A CPS lawyer added as a member sees the case and its clips; before that, nothing.
    assert f.http.get(f"/api/v1/cases/{case['id']}", headers=f.as_("cps_green")).status_code == 404
    assert (
        f.http.post(
            f"/api/v1/cases/{case['id']}/members",
            headers=f.as_("eo_brown"),
            json={"username": "cps_green"},
        ).status_code
        == 204
    )
    detail = f.http.get(f"/api/v1/cases/{case['id']}", headers=f.as_("cps_green")).json()
    assert len(detail["exhibits"]) == 2
    assert search_ids(f, "cps_green") == {ids["own"], ids["other"]}
    assert search_ids(f, "eo_brown", case_id=case["id"]) == {ids["own"], ids["other"]}


def test_auditor_reads_recent_access(force) -> None:
    f, ids, _ = force
    f.http.get(
        f"/api/v1/clips/{ids['own']}/stream",
        headers=f.as_("pc_smith"),
        params={"reason": "investigation"},
    )
    items = f.http.get("/api/v1/audit/access", headers=f.as_("aud_white")).json()["items"]
    assert any(i["type"] == "clip.viewed" and i["actor"] == "user:pc_smith" for i in items)
    assert f.http.get("/api/v1/audit/access", headers=f.as_("eo_brown")).status_code == 403


def test_the_access_log_filters_pages_exports_and_records_its_reading(force) -> None:
    """An auditor narrows the log by person, clip, entry type and time; pages through it;
    exports it as CSV (a reason that looks like a formula stays text); each reading is an
    `audit.log_read` entry with the filter; administrative actions are in the log."""
    f, ids, ctx = force
    aud = f.as_("aud_white")
    for reason in ("investigation", 'other: =HYPERLINK("http://x")', "audit"):
        f.http.get(
            f"/api/v1/clips/{ids['own']}/stream",
            headers=f.as_("eo_brown"),
            params={"reason": reason},
        )
    f.http.get(
        f"/api/v1/clips/{ids['other']}/stream",
        headers=f.as_("eo_brown"),
        params={"reason": "investigation"},
    )
    log = "/api/v1/audit/access"
    got = f.http.get(
        log, headers=aud, params={"person": "eo_brown", "clip": ids["own"], "type": "clip.viewed"}
    ).json()["items"]
    assert [i["reason"] for i in got] == ["audit", 'other: =HYPERLINK("http://x")', "investigation"]
    assert all(i["subject"]["clip"] == ids["own"] for i in got)
    # Paging: one at a time, newest first, to the end.
    seen, before = [], None
    while True:
        params = {
            "person": "eo_brown",
            "type": "clip.viewed",
            "limit": 1,
            **({"before": before} if before is not None else {}),
        }
        page = f.http.get(log, headers=aud, params=params).json()
        seen += [i["index"] for i in page["items"]]
        if page["next_before"] is None:
            break
        before = page["next_before"]
    assert len(seen) == 4 and seen == sorted(seen, reverse=True)
    # Time range: nothing before the store existed, everything up to tomorrow.
    assert f.http.get(log, headers=aud, params={"to": "2000-01-01T00:00:00Z"}).json()["items"] == []
    # Administrative actions are audited entries too (the force's accounts were made above).
    kinds = {i["type"] for i in f.http.get(log, headers=aud, params={"limit": 500}).json()["items"]}
    assert {"user.created", "device.created", "audit.log_read"} <= kinds
    # Bad filters are clear errors.
    bad = f.http.get(log, headers=aud, params={"type": "clip.ingested"})
    assert bad.status_code == 422 and "no access-log entry type" in bad.json()["detail"]
    assert f.http.get(log, headers=aud, params={"person": "nobody"}).status_code == 404
    # CSV: a header, one row per entry, formulas neutralised, recorded as an export.
    csv_resp = f.http.get(
        log + ".csv", headers=aud, params={"person": "eo_brown", "type": "clip.viewed"}
    )
    assert csv_resp.status_code == 200 and csv_resp.headers["content-type"].startswith("text/csv")
    import csv as csvlib
    import io

    rows = list(csvlib.DictReader(io.StringIO(csv_resp.text)))
    assert len(rows) == 4 and {r["event"] for r in rows} == {"Viewed"}
    assert 'other: =HYPERLINK(""http://x"")' in csv_resp.text  # quoted CSV, unchanged text
    from evidence.audit import _csv_row

    assert _csv_row(("=1+2", "@SUM(A1)", "plain")) == "'=1+2,'@SUM(A1),plain\r\n", (
        "a cell a spreadsheet would run as a formula is text"
    )
    assert f.http.get(log + ".csv", headers=f.as_("eo_brown")).status_code == 403
    reads = [
        e
        for e in (json.loads(raw) for _, raw in ctx.ledger.entries(0, ctx.ledger.size()))
        if e["type"] == "audit.log_read"
    ]
    assert reads[-1]["export"] is True and reads[-1]["filter"] == {
        "person": "eo_brown",
        "type": "clip.viewed",
    }
    assert reads[-1]["actor"] == "user:aud_white" and reads[-1]["source_ip"]
    assert any(r["filter"].get("clip") == ids["own"] for r in reads)


@sqlite_only
def test_a_10kb_range_header_on_footage_is_a_416_not_a_server_error(force) -> None:
    """Python will not turn over 4,300 digits into an int: the server must not try."""
    f, ids, _ = force
    reason = {"reason": "investigation: INC-9"}
    for route in ("stream", "original"):
        url = f"/api/v1/clips/{ids['own']}/{route}"
        size = int(
            f.http.get(url, headers={**f.as_("eo_brown"), "Range": "bytes=0-0"}, params=reason)
            .headers["content-range"]
            .rsplit("/", 1)[1]
        )
        for header in (
            "bytes=" + "1" * 5000 + "-",
            "bytes=-" + "7" * 10_000,
            "bytes=" + "1" * 5000 + "-" + "2" * 5000,
        ):
            r = f.http.get(url, headers={**f.as_("eo_brown"), "Range": header}, params=reason)
            if header.startswith("bytes=-"):  # the last 10^10000 bytes: all of them
                assert r.status_code == 206 and len(r.content) == size, (route, r.status_code)
            else:
                assert r.status_code == 416, (route, header[:12], r.status_code, r.text[:200])
                assert r.headers["content-range"] == f"bytes */{size}" and len(r.text) < 500


def test_access_records_are_for_auditors_and_notes_for_their_side(force) -> None:
    """The recording officer reading their clip's record must not learn of an inquiry into
    them (others' viewings with reasons and addresses, grants), nor read the CPS's notes;
    the CPS does not read the force's. Searching cannot reach the hidden notes either."""
    f, ids, ctx = force
    clip = ids["own"]
    eo = f.as_("eo_brown")
    case = f.http.post(
        "/api/v1/cases", headers=eo, json={"title": "R v Doe", "reference": "URN 9"}
    ).json()
    assert (
        f.http.post(
            f"/api/v1/cases/{case['id']}/items", headers=eo, json={"clip_ids": [clip]}
        ).status_code
        == 200
    )
    assert (
        f.http.post(
            f"/api/v1/cases/{case['id']}/members", headers=eo, json={"username": "cps_green"}
        ).status_code
        == 204
    )
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    assert (
        f.http.post(
            "/api/v1/grants",
            headers=f.as_("adm_black"),
            json={
                "username": "aud_white",
                "clip_id": clip,
                "reason": "PSD inquiry 12 into PC1234",
                "expires_at": expires,
            },
        ).status_code
        == 201
    )
    assert approve_pending(ctx) == 1
    inquiry = "complaint or misconduct review: PSD inquiry 12"
    for who, why in (
        ("aud_white", inquiry),
        ("pc_smith", "investigation: INC-1"),
        ("eo_brown", "court preparation"),
        ("cps_green", "charging decision"),
    ):
        r = f.http.get(
            f"/api/v1/clips/{clip}/stream",
            headers={**f.as_(who), "Range": "bytes=0-9"},
            params={"reason": why},
        )
        assert r.status_code == 206, (who, r.text)
    notes = {
        "pc_smith": "suspect enters left",
        "eo_brown": "ask CCTV for 00:03",
        "cps_green": "privileged: identification is weak",
    }
    for who, note in notes.items():
        r = f.http.post(
            f"/api/v1/clips/{clip}/bookmarks", headers=f.as_(who), json={"at_ms": 100, "note": note}
        )
        assert r.status_code == 201, (who, r.text)

    def record(who: str) -> tuple[dict, str]:
        r = f.http.get(f"/api/v1/clips/{clip}", headers=f.as_(who))
        assert r.status_code == 200, r.text
        return r.json(), r.text

    force_notes = {notes["pc_smith"], notes["eo_brown"]}
    for who in ("pc_smith", "eo_brown", "cps_green"):
        d, text = record(who)
        assert "PSD inquiry" not in text and "aud_white" not in text, who
        access = [c for c in d["custody"] if c["type"].startswith(("clip.viewed", "grant."))]
        assert [c["actor"] for c in access] == [f"user:{who}"], (who, access)
        seen = {b["note"] for b in d["bookmarks"]}
        assert seen == ({notes["cps_green"]} if who == "cps_green" else force_notes), who
        assert all(n not in text for n in notes.values() if n not in seen), who
        marked = [c for c in d["custody"] if c["type"] == "clip.bookmarked"]
        assert len(marked) == len(seen) and d["integrity"]["status"] == "verified"
    d, text = record("aud_white")
    viewers = {c["actor"] for c in d["custody"] if c["type"] == "clip.viewed"}
    assert viewers == {f"user:{w}" for w in ("aud_white", "pc_smith", "eo_brown", "cps_green")}
    assert "PSD inquiry 12 into PC1234" in text and "127.0.0.1" in text
    assert {b["note"] for b in d["bookmarks"]} == force_notes, "auditors are on the force's side"
    # Search matches only notes the searcher may read.
    assert search_ids(f, "pc_smith", q="identification is weak") == set()
    assert search_ids(f, "cps_green", q="identification is weak") == {clip}
    assert search_ids(f, "cps_green", q="ask CCTV") == set()
    # The permanent log commits to a note by its hash, never its words; whole entries (every
    # reason and address) are the auditors' to read.
    for e in ledger_entries(ctx, "clip.bookmarked"):
        assert "note" not in e and len(e["note_sha256"]) == 64 and e["side"] in ("cps", "force")
    assert f.http.get("/api/v1/ledger/entries", headers=eo).status_code == 403
    assert f.http.get("/api/v1/ledger/entries", headers=f.as_("aud_white")).status_code == 200


@sqlite_only
def test_a_forged_forwarded_address_is_not_written_into_the_ledger(force) -> None:
    """Behind a trusted proxy the client's address comes from X-Forwarded-For, i.e. from the
    client: the ledger keeps an address in normal form, or "invalid", never 10 KB of text."""
    f, ids, ctx = force
    url = f"/api/v1/clips/{ids['own']}/stream"
    for i, (forwarded, kept) in enumerate(
        (("x" * 10_000, "invalid"), ("2001:DB8:0:0::1", "2001:db8::1"), ("<script>", "invalid"))
    ):
        r = f.http.get(
            url,
            params={"reason": f"investigation: look {i}"},
            headers={**f.as_("eo_brown"), "Range": "bytes=0-0", "X-Forwarded-For": forwarded},
        )
        assert r.status_code == 206, r.text
        assert ledger_entries(ctx, "clip.viewed")[-1]["source_ip"] == kept
    # The same holds for every route that records an address, e.g. signing in.
    r = f.http.post(
        "/api/v1/auth/token",
        data={"username": "pc_smith", "password": PASSWORD},
        headers={"X-Forwarded-For": "y" * 10_000},
    )
    assert r.status_code == 200, r.text
    assert ledger_entries(ctx, "user.logged_in")[-1]["source_ip"] == "invalid"
