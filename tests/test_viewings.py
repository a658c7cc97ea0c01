"""Viewings: access is checked and ledgered once when a viewing is opened; its Range requests
are then served from the signed URL alone, which cannot be stretched in time or to another
object (evidence/viewings.py, api/viewing.py, docs/media.md "Viewings").

The first tests serve a real object of a real store through the API app under uvicorn, with
no database it could reach; the last ones open viewings through the running API of a store
with docked clips and a bundle."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from evidence.context import Context
from evidence.viewings import LIFETIME, ROUTE, Grant, sign
from tests.fixtures.api import running_api
from tests.fixtures.databases import make_settings
from tests.fixtures.people import PASSWORD
from tests.fixtures.worlds import ledger_entries

BYTES = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and 4 bytes: more than one read chunk


NO_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:9/none"
"""A database no query can reach: a viewing's requests are served without one."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Context, httpx.Client]]:
    """The whole API app under uvicorn, its store holding two proxies, its database away."""
    ctx = Context(make_settings(tmp_path, NO_DATABASE))
    ctx.store.put("derivatives/c1/proxy.mp4", io.BytesIO(BYTES))
    ctx.store.put("derivatives/c2/proxy.mp4", io.BytesIO(b"another clip's proxy"))
    with running_api(ctx.settings) as base, httpx.Client(base_url=base) as http:
        yield ctx, http


def _grant(key: str = "derivatives/c1/proxy.mp4", **changes: Any) -> Grant:
    g = Grant(
        key=key,
        subject="clip:c1:proxy",
        sha256=hashlib.sha256(BYTES).hexdigest(),
        size=len(BYTES),
        media_type="video/mp4",
        filename=None,
        viewer="u1",
        expires=int(time.time() + LIFETIME.total_seconds()),
    )
    return replace(g, **changes)


def test_ranges_whole_and_head_are_served_from_the_token(served) -> None:
    ctx, http = served
    url = ROUTE + sign(ctx.viewing_key, _grant())
    r = http.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == BYTES[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(BYTES)}"
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["referrer-policy"] == "no-referrer"  # the URL is a capability
    etag = r.headers["etag"]
    assert etag == f'"{hashlib.sha256(BYTES).hexdigest()}"'
    # The last bytes, across the store's 1 MiB read chunk.
    r = http.get(url, headers={"Range": "bytes=1048000-"})
    assert r.status_code == 206 and r.content == BYTES[1048000:]
    r = http.get(url)
    assert r.status_code == 200 and r.content == BYTES
    # If-Range with a stale validator: the whole object, never a range of other bytes.
    r = http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and len(r.content) == len(BYTES)
    r = http.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert r.status_code == 206 and r.content == BYTES[:10]
    r = http.head(url)
    assert r.status_code == 200 and r.headers["content-length"] == str(len(BYTES))
    r = http.get(url, headers={"Range": f"bytes={len(BYTES)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(BYTES)}"
    assert http.post(url).status_code == 405


def test_an_original_is_a_named_download(served) -> None:
    ctx, http = served
    url = ROUTE + sign(ctx.viewing_key, _grant(filename="BWV 7781/clip.mp4"))
    r = http.get(url)
    assert r.headers["content-disposition"] == 'attachment; filename="BWV7781clip.mp4"'


def test_an_expired_viewing_is_refused(served) -> None:
    ctx, http = served
    url = ROUTE + sign(ctx.viewing_key, _grant(expires=int(time.time()) - 1))
    r = http.get(url, headers={"Range": "bytes=0-9"})
    assert r.status_code == 403
    problem = r.json()
    assert problem["title"] == "Viewing refused" and "expired" in problem["detail"]
    assert "open the footage again" in problem["detail"]


def test_an_altered_token_is_refused(served) -> None:
    ctx, http = served
    token = sign(ctx.viewing_key, _grant())
    body, _, mac = token.partition(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for bad in (f"{body}.{flipped}", body, token + "x", "", "not-a-token", token[:-1]):
        r = http.get(ROUTE + bad)
        assert r.status_code == 403, bad
        assert r.json()["title"] == "Viewing refused"


def test_a_token_cannot_be_widened_to_another_object_or_time(served) -> None:
    ctx, http = served
    token = sign(ctx.viewing_key, _grant())
    body, _, mac = token.partition(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for field, value in (
        ("k", "derivatives/c2/proxy.mp4"),  # another clip's object
        ("x", payload["x"] + 86400),  # a longer life
        ("z", payload["z"] * 2),  # past the end
        ("u", "someone-else"),
    ):
        forged = base64.urlsafe_b64encode(
            json.dumps({**payload, field: value}, separators=(",", ":"), sort_keys=True).encode()
        )
        r = http.get(f"{ROUTE}{forged.rstrip(b'=').decode()}.{mac}")
        assert r.status_code == 403, field
    # A token signed by another store's key is refused too.
    other = sign(b"k" * 32, _grant(key="derivatives/c2/proxy.mp4"))
    assert http.get(ROUTE + other).status_code == 403


def test_the_viewing_key_is_made_once_and_private(served) -> None:
    ctx, _ = served
    path = ctx.settings.secrets_dir() / "viewing.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert Context(ctx.settings).viewing_key == ctx.viewing_key


def test_behind_nginx_the_file_is_handed_over_with_x_accel_redirect(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, NO_DATABASE, viewing_accel_redirect="/_footage")
    ctx = Context(settings)
    ctx.store.put("derivatives/c1/proxy.mp4", io.BytesIO(BYTES))
    with running_api(settings) as base, httpx.Client(base_url=base) as http:
        r = http.get(ROUTE + sign(ctx.viewing_key, _grant()), headers={"Range": "bytes=0-9"})
        assert r.status_code == 200 and r.content == b""
        assert r.headers["x-accel-redirect"] == "/_footage/derivatives/c1/proxy.mp4"
        assert r.headers["etag"] == f'"{hashlib.sha256(BYTES).hexdigest()}"'
        assert r.headers["cache-control"] == "private, no-store"
        # The token is checked before anything is handed to nginx.
        bad = http.get(ROUTE + sign(b"k" * 32, _grant()))
        assert bad.status_code == 403 and "x-accel-redirect" not in bad.headers


@pytest.mark.s3
def test_on_s3_a_viewing_redirects_to_a_presigned_url(
    s3_server, s3_bucket: str, tmp_path: Path
) -> None:
    ctx = Context(s3_server.settings(s3_bucket, tmp_path / "var"))
    ctx.store.put("derivatives/c1/proxy.mp4", io.BytesIO(BYTES))
    with running_api(ctx.settings) as base, httpx.Client(base_url=base) as http:
        r = http.get(ROUTE + sign(ctx.viewing_key, _grant()))
        assert r.status_code == 307 and r.headers["cache-control"] == "private, no-store"
        bad = http.get(ROUTE + sign(b"k" * 32, _grant()))
        assert bad.status_code == 403
    got = httpx.get(r.headers["location"], headers={"Range": "bytes=5-14"})
    assert got.status_code == 206 and got.content == BYTES[5:15]


# -- through the running API ----------------------------------------------------------------


@pytest.fixture
def force(two_clip_force):  # type: ignore[no-untyped-def]
    return two_clip_force


@pytest.mark.e2e
def test_one_ledger_entry_for_a_viewing_and_its_many_ranges(force) -> None:
    f, ids, ctx = force
    opened = f.http.post(
        f"/api/v1/clips/{ids['own']}/viewings",
        headers=f.as_("pc_smith"),
        json={"reason": "investigation: burglary 42"},
    )
    assert opened.status_code == 201, opened.text
    v = opened.json()
    assert opened.headers["location"] == v["url"] and v["media_type"] == "video/mp4"
    (viewed,) = ledger_entries(ctx, "clip.viewed")
    assert viewed["actor"] == "user:pc_smith" and viewed["reason"] == "investigation: burglary 42"
    assert viewed["subject"]["clip"] == ids["own"] and viewed["sha256"] == v["sha256"]
    size, got = v["size"], b""
    for start in range(0, size, 64 * 1024):  # as a player reads, with no credentials at all
        r = f.http.get(v["url"], headers={"Range": f"bytes={start}-{start + 64 * 1024 - 1}"})
        assert r.status_code == 206
        got += r.content
    assert hashlib.sha256(got).hexdigest() == v["sha256"] and len(got) == size
    assert len(ledger_entries(ctx, "clip.viewed")) == 1  # the viewing, not its Range requests
    # The original is another viewing and another entry, a named download.
    r = f.http.post(
        f"/api/v1/clips/{ids['own']}/viewings",
        headers=f.as_("eo_brown"),
        json={"kind": "original", "reason": "disclosure"},
    )
    assert r.status_code == 201
    got = f.http.get(r.json()["url"])
    assert "attachment" in got.headers["content-disposition"]
    (d,) = ledger_entries(ctx, "clip.downloaded")
    assert d["sha256"] == hashlib.sha256(got.content).hexdigest() == r.json()["sha256"]


@pytest.mark.e2e
def test_a_viewing_needs_rights_and_a_reason(force) -> None:
    f, ids, ctx = force
    url = f"/api/v1/clips/{ids['other']}/viewings"
    reason = {"reason": "investigation: burglary 42"}
    assert f.http.post(url, json=reason).status_code == 401
    assert f.http.post(url, headers=f.as_("pc_smith"), json=reason).status_code == 404
    assert f.http.post(url, headers=f.as_("aud_white"), json=reason).status_code == 403
    assert f.http.post(url, headers=f.as_("adm_black"), json=reason).status_code == 403
    r = f.http.post(url, headers=f.as_("eo_brown"), json={"reason": "curiosity"})
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    r = f.http.post(url, headers=f.as_("eo_brown"), json={**reason, "kind": "thumbnail"})
    assert r.status_code == 422
    assert ledger_entries(ctx, "clip.viewed") == []


@pytest.mark.e2e
def test_the_ui_player_is_sent_to_a_viewing(force) -> None:
    f, ids, ctx = force
    ui = httpx.Client(base_url=f.http.base_url)
    form = ui.get("/ui/login").text
    nonce = re.search(r'name="nonce" value="([^"]+)"', form)
    assert nonce, "the sign-in form has its nonce"
    signed_in = ui.post(
        "/ui/login",
        data={
            "username": "pc_smith",
            "password": PASSWORD,
            "acknowledge": "yes",
            "nonce": nonce[1],
        },
    )
    assert signed_in.status_code == 303, signed_in.text[:300]
    r = ui.get(f"/ui/clips/{ids['own']}/stream", params={"reason": "investigation: burglary 42"})
    assert r.status_code == 307 and r.headers["location"].startswith(ROUTE)
    r = ui.get(r.headers["location"], headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100
    assert len(ledger_entries(ctx, "clip.viewed")) == 1
    ui.close()


@pytest.mark.e2e
def test_a_bundle_download_is_one_viewing(bundled) -> None:
    f, ctx, _, bundle_id, path = bundled
    url = f"/api/v1/bundles/{bundle_id}/viewings"
    assert f.http.post(url, headers=f.as_("pc_jones"), json={"reason": "audit"}).status_code in (
        403,
        404,
    )
    before = ctx.ledger.size()
    r = f.http.post(url, headers=f.as_("cps_green"), json={"reason": "disclosure"})
    # (the world's own download was for "court preparation": this is another viewing)
    assert r.status_code == 201, r.text
    link = r.json()["url"]
    whole = path.read_bytes()
    half = len(whole) // 2
    first = f.http.get(link, headers={"Range": f"bytes=0-{half - 1}"})
    rest = f.http.get(link, headers={"Range": f"bytes={half}-"})  # a resumed download
    assert first.status_code == rest.status_code == 206
    assert first.content + rest.content == whole
    assert 'filename="bundle-' in first.headers["content-disposition"]
    new = [json.loads(raw) for _, raw in ctx.ledger.entries(before, ctx.ledger.size())]
    assert [e["type"] for e in new] == ["bundle.downloaded"]
    assert new[0]["reason"] == "disclosure" and new[0]["actor"] == "user:cps_green"
