"""Clip search (docs/search.md): free text through an index on each engine, kept in step by
the database when tags, notes and names change; the access rule per person; keyset paging
that walks every clip exactly once. Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools

import pytest
from sqlalchemy import delete, update

from evidence.access import Principal
from evidence.accounts.models import Role
from evidence.accounts.service import create_user
from evidence.cameras import service as cameras
from evidence.cameras.models import ClipName
from evidence.cases import service as cases
from evidence.cases.models import CaseItem
from evidence.clips import fulltext, service
from evidence.clips.models import Bookmark, Clip
from evidence.clips.paging import COUNT_CAP
from evidence.clips.service import SearchFilters
from evidence.context import Context
from evidence.errors import InvalidInput
from tests.fixtures.people import PASSWORD

START = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
_serial = itertools.count()


def person(ctx: Context, name: str, role: str, officer_id: str | None = None) -> Principal:
    user = create_user(ctx, name, role, PASSWORD, officer_id=officer_id)
    return Principal(user.id, user.username, Role(role), officer_id)


def add_clip(
    ctx: Context,
    *,
    officer: str | None = "PC1",
    filename: str | None = None,
    recorded_at: dt.datetime | None = START,
    serial: str | None = "AXON-0001",
    names: tuple[str, ...] = (),
) -> str:
    """A stored clip row as ingest leaves it (its bytes are not this module's subject)."""
    n = next(_serial)
    clip = Clip(
        sha256=hashlib.sha256(f"clip {n}".encode()).hexdigest(),
        size=1000 + n,
        state="ready",
        filename=filename or f"clip_{n:04d}.mp4",
        officer_id=officer,
        camera_serial=serial,
        recorded_at=recorded_at,
        ingested_at=START,
    )
    with ctx.db.write_session() as s:
        s.add(clip)
        s.flush()
        for name in names:
            s.add(ClipName(clip_id=clip.id, filename=name, first_docked_at=START))
        return clip.id


def exhibit(ctx: Context, by: Principal, case_id: str, clip_ids: list[str]) -> None:
    """Clips put in a case (as cases.add_items does, without the storage holds it places on
    originals, which these rows have none of)."""
    with ctx.db.write_session() as s:
        for clip_id in clip_ids:
            s.add(CaseItem(case_id=case_id, clip_id=clip_id, added_by=by.user_id, added_at=START))


def found(ctx: Context, who: Principal, text: str | None = None, **filters) -> set[str]:
    page = service.search(ctx, who, SearchFilters(text=text, **filters), limit=100)
    assert page.next_before is None  # every test here fits one page
    return {c["id"] for c in page.items}


def walk(ctx: Context, who: Principal, limit: int, **filters) -> list[str]:
    """Every page, following next_before until it is None."""
    ids, before = [], None
    for _ in range(1000):
        page = service.search(ctx, who, SearchFilters(**filters), before=before, limit=limit)
        assert len(page.items) <= limit
        ids += [c["id"] for c in page.items]
        before = page.next_before
        if before is None:
            return ids
    raise AssertionError("paging did not end")


# Text few clips hold is looked up by the matching ids, text many hold (more than FEW) is
# tested clip by clip on PostgreSQL: FEW = 0 takes every search here down the second path.
@pytest.mark.parametrize("few", [fulltext.FEW, 0], ids=["few matches", "many matches"])
def test_free_text_finds_by_file_name_docked_name_tag_note_and_camera_serial(
    ctx: Context, few: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fulltext, "FEW", few)
    eo = person(ctx, "eo", "evidence_officer")
    cps = person(ctx, "cps", "cps")
    by_name = add_clip(ctx, filename="AXON_20260301_Burglary.MP4", serial="X6039A1B2")
    by_twin = add_clip(ctx, names=("Copy of FIGHT outside pub.mp4",))
    by_tag = add_clip(ctx)
    by_note = add_clip(ctx)
    other = add_clip(ctx, serial="BWV-7781")
    service.add_tag(ctx, eo, by_tag, "INC-2026-0042")
    service.add_bookmark(ctx, eo, by_note, 1000, "suspect drops the knife by the bins")

    assert found(ctx, eo, "burglary") == {by_name}  # any case, part of a name
    assert found(ctx, eo, "fight OUTSIDE") == {by_twin}  # a name it was docked under later
    assert found(ctx, eo, "2026-0042") == {by_tag}
    assert found(ctx, eo, "the knife") == {by_note}
    assert found(ctx, eo, "BWV-7781") == {other}
    assert found(ctx, eo, "X6039") == {by_name}
    with ctx.db.session() as s:
        sha256 = s.get(Clip, other).sha256  # type: ignore[union-attr]
    assert found(ctx, eo, sha256.upper()) == {other}
    assert found(ctx, eo, other) == {other}
    # Wildcards and quotes are text, never query syntax, on either engine.
    assert found(ctx, eo, "%%%") == set()
    assert found(ctx, eo, '"knife" OR *') == set()
    # A force note is not the CPS's to read, so it finds nothing for them either.
    cases_case = cases.create_case(ctx, eo, "R v Knife", "URN 1")
    exhibit(ctx, eo, cases_case["id"], [by_note])
    cases.add_member(ctx, eo, cases_case["id"], "cps")
    assert found(ctx, cps) == {by_note}
    assert found(ctx, cps, "the knife") == set()
    service.add_bookmark(ctx, cps, by_note, 2000, "weak identification: privileged")
    assert found(ctx, cps, "weak identification") == {by_note}
    assert found(ctx, eo, "weak identification") == set()


def test_the_index_is_kept_in_step_after_edits_and_deletes(ctx: Context) -> None:
    eo = person(ctx, "eo", "evidence_officer")
    clip = add_clip(ctx, serial="AXON-1111", names=("first_name.mp4",))
    service.add_tag(ctx, eo, clip, "INC-7")
    service.add_tag(ctx, eo, clip, "domestic")
    service.add_bookmark(ctx, eo, clip, 0, "car arrives")
    assert found(ctx, eo, "INC-7") == found(ctx, eo, "car arrives") == {clip}

    service.remove_tag(ctx, eo, clip, "INC-7")
    assert found(ctx, eo, "INC-7") == set()
    assert found(ctx, eo, "domestic") == {clip}  # the clip's other tag stays found

    # No service edits a note, re-attributes by hand or forgets a name today; a restore or
    # a fix by hand may, and the database keeps the index in step whoever writes.
    with ctx.db.write_session() as s:
        s.execute(update(Bookmark).where(Bookmark.clip_id == clip).values(note="van leaves"))
        s.execute(update(Clip).where(Clip.id == clip).values(camera_serial="AXON-2222"))
        s.execute(delete(ClipName).where(ClipName.clip_id == clip))
    assert found(ctx, eo, "car arrives") == set()
    assert found(ctx, eo, "van leaves") == {clip}
    assert found(ctx, eo, "AXON-1111") == set()
    assert found(ctx, eo, "AXON-2222") == {clip}
    assert found(ctx, eo, "first_name") == set()

    with ctx.db.write_session() as s:
        s.execute(delete(Bookmark).where(Bookmark.clip_id == clip))
    assert found(ctx, eo, "van leaves") == set()


def test_free_text_needs_three_characters_and_says_so(ctx: Context) -> None:
    eo = person(ctx, "eo", "evidence_officer")
    for short in ("ab", " x ", "%"):
        with pytest.raises(InvalidInput, match="at least 3 characters"):
            service.search(ctx, eo, SearchFilters(text=short))
    with pytest.raises(InvalidInput, match="control characters"):
        service.search(ctx, eo, SearchFilters(text="clip\x00' OR 1=1"))


def test_an_officer_sees_their_own_clips_and_their_cases_only(ctx: Context) -> None:
    eo = person(ctx, "eo", "evidence_officer")
    smith = person(ctx, "smith", "officer", "PC1")
    jones = person(ctx, "jones", "officer", "PC2")
    mine = [add_clip(ctx, officer="PC1", filename=f"smith_{i}.mp4") for i in range(3)]
    theirs = [add_clip(ctx, officer="PC2", filename=f"jones_{i}.mp4") for i in range(3)]
    unattributed = add_clip(ctx, officer=None, filename="nobody.mp4")
    case = cases.create_case(ctx, eo, "R v Jones", "URN 2")
    # One of Jones's clips, and one of Smith's own, are in a case Smith works on.
    exhibit(ctx, eo, case["id"], [theirs[0], mine[0]])
    cases.add_member(ctx, eo, case["id"], "smith")

    assert found(ctx, smith) == {*mine, theirs[0]}  # own once, though also in the case
    assert found(ctx, jones) == set(theirs)
    assert found(ctx, eo) == {*mine, *theirs, unattributed}
    assert found(ctx, smith, "jones_") == {theirs[0]}
    assert found(ctx, smith, officer_id="PC2") == {theirs[0]}
    assert found(ctx, smith, case_id=case["id"]) == {theirs[0], mine[0]}
    assert found(ctx, jones, "nobody") == set()
    # Paging merges the two parts of the rule without repeating or losing a clip.
    assert sorted(walk(ctx, smith, 1)) == sorted([*mine, theirs[0]])


def test_keyset_paging_walks_every_clip_once_newest_first(ctx: Context) -> None:
    eo = person(ctx, "eo", "evidence_officer")
    smith = person(ctx, "smith", "officer", "PC1")
    ids = []
    for i in range(23):
        # Ties on the recording time (three clips a minute) and clips with none at all.
        at = None if i % 7 == 3 else START + dt.timedelta(minutes=i // 3)
        ids.append((at, add_clip(ctx, officer="PC1" if i % 2 else "PC2", recorded_at=at)))
    case = cases.create_case(ctx, eo, "R v Paging", "URN 3")
    in_case = [clip for _, clip in ids[::4]]
    exhibit(ctx, eo, case["id"], in_case)
    cases.add_member(ctx, eo, case["id"], "smith")

    dated = sorted(((at, c) for at, c in ids if at), reverse=True)
    expected = [c for _, c in dated] + sorted((c for at, c in ids if at is None), reverse=True)
    for limit in (1, 4, 5, 23, 100):
        assert walk(ctx, eo, limit) == expected, limit
    visible = {c for at, c in ids if ids.index((at, c)) % 2} | set(in_case)
    assert walk(ctx, smith, 3) == [c for c in expected if c in visible]
    until = START + dt.timedelta(minutes=4)
    assert walk(ctx, eo, 2, recorded_to=until) == [
        c for at, c in sorted(((at, c) for at, c in ids if at and at < until), reverse=True)
    ]


def test_a_cursor_it_did_not_give_out_is_refused_and_the_queue_counts(ctx: Context) -> None:
    eo = person(ctx, "eo", "evidence_officer")
    for bad in ("not-a-cursor", "W10", "WyJ4IiwgMV0"):
        with pytest.raises(InvalidInput, match="next_before"):
            service.search(ctx, eo, SearchFilters(), before=bad)
    with pytest.raises(InvalidInput, match="limit"):
        service.search(ctx, eo, SearchFilters(), limit=101)
    assert COUNT_CAP == 1000  # the UI prints "1,000+" beyond it
    add_clip(ctx)
    add_clip(ctx, officer=None)
    add_clip(ctx, officer=None, recorded_at=None)
    queue = cameras.unattributed_clips(ctx, eo, limit=1, count=True)
    assert queue.count == 2 and len(queue.items) == 1 and queue.next_before


def test_the_api_and_the_ui_page_by_cursor(ctx: Context) -> None:
    """Over HTTP: GET /api/v1/clips and /clips/unattributed answer items and next_before; the
    UI's lists link "Older →" and "← Newest", and say why two characters find nothing."""
    import re

    import httpx

    from api.ui.session import LOGIN_COOKIE
    from tests.fixtures.api import running_api
    from tests.fixtures.people import make_force

    mine = [
        add_clip(ctx, officer="PC1234", recorded_at=START + dt.timedelta(hours=i))
        for i in range(30)
    ]
    waiting = [add_clip(ctx, officer=None) for _ in range(3)]
    with running_api(ctx.settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        f = make_force(ctx, http)
        ids, before = [], None
        while True:
            params = {"limit": 7, **({"before": before} if before else {})}
            r = http.get("/api/v1/clips", headers=f.as_("pc_smith"), params=params)
            assert r.status_code == 200, r.text
            ids += [c["id"] for c in r.json()["items"]]
            before = r.json()["next_before"]
            if before is None:
                break
        assert ids == mine[::-1]  # newest first, each once
        short = http.get("/api/v1/clips", headers=f.as_("eo_brown"), params={"q": "ab"})
        assert short.status_code == 400 and "at least 3 characters" in short.json()["detail"]
        bad = http.get("/api/v1/clips", headers=f.as_("eo_brown"), params={"before": "x"})
        assert bad.status_code == 400 and "next_before" in bad.json()["detail"]
        assert (
            http.get("/api/v1/clips", headers=f.as_("eo_brown"), params={"limit": 101}).status_code
            == 422
        )
        queue = http.get(
            "/api/v1/clips/unattributed", headers=f.as_("eo_brown"), params={"limit": 2}
        )
        rest = http.get(
            "/api/v1/clips/unattributed",
            headers=f.as_("eo_brown"),
            params={"limit": 2, "before": queue.json()["next_before"]},
        )
        assert {c["id"] for c in queue.json()["items"] + rest.json()["items"]} == set(waiting)
        assert rest.json()["next_before"] is None

        with httpx.Client(base_url=url, timeout=30) as browser:
            browser.get("/ui/login")
            signed = browser.post(
                "/ui/login",
                data={
                    "username": "pc_smith",
                    "password": PASSWORD,
                    "acknowledge": "yes",
                    "nonce": browser.cookies.get(LOGIN_COOKIE, ""),
                    "next": "",
                },
            )
            assert signed.status_code == 303
            first = browser.get("/ui/clips").text
            assert first.count("data-clip-id=") >= 24 and "Older →" in first
            older = re.search(r'href="(/ui/clips\?[^"]*before=[^"]+)" rel="next"', first)
            assert older is not None
            second = browser.get(older.group(1).replace("&amp;", "&")).text
            assert "← Newest" in second and 'rel="next"' not in second
            listed = set(re.findall(r'data-clip-id="([^"]+)"', first + second))
            assert listed == set(mine)
            assert "at least 3 characters" in browser.get("/ui/clips", params={"q": "ab"}).text
