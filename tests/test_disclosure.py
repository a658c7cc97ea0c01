"""Disclosure to partners and the defence (docs/disclosure.md): organisations, shares with a
person or an organisation, external recipients who must sign in with a TOTP code, exhibits
given as their redacted copy only, and what the ledger records of it all."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from evidence import clock
from evidence.accounts.service import create_user
from evidence.bundles.service import build_bundle, bundles_of
from evidence.context import Context
from evidence.identity.totp import totp_code, totp_step
from evidence.redactions import make_redaction
from tests.fixtures.bundles import TAKE, pins, read_all, verify
from tests.fixtures.people import PASSWORD, login, principal

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

SECRET_REASON = "investigation: line of inquiry about the second suspect"
SECRET_NOTE = "suspect two arrives here: not yet disclosed"
WHY = {"reason": "disclosure: defence review"}


def entries(ctx: Context, type_: str) -> list[dict[str, Any]]:
    all_ = [json.loads(e) for _, e in ctx.ledger.entries(0, ctx.ledger.size())]
    return [e for e in all_ if e["type"] == type_]


def later(seconds: float) -> None:
    """Move the store's clock on (a TOTP code is accepted once per 30 s step)."""
    at = clock.now() + dt.timedelta(seconds=seconds)
    clock.set_clock(lambda: at)


def organisation(f, name: str, kind: str = "defence_firm") -> str:  # type: ignore[no-untyped-def]
    r = f.http.post(
        "/api/v1/organisations", headers=f.as_("adm_black"), json={"name": name, "kind": kind}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def external(ctx: Context, f, username: str, org_id: str | None) -> None:  # type: ignore[no-untyped-def]
    """An external recipient's account, put in `org_id` by an administrator over the API."""
    create_user(ctx, username, "external", PASSWORD)
    if org_id is not None:
        r = f.http.put(
            f"/api/v1/users/{username}/organisation",
            headers=f.as_("adm_black"),
            json={"organisation_id": org_id},
        )
        assert r.status_code == 200, r.text
    f.tokens[username] = login(f.http, username)  # password only: no second factor yet


SECRETS: dict[str, str] = {}


def signin_with_totp(f, username: str) -> None:  # type: ignore[no-untyped-def]
    r = f.http.post(
        "/api/v1/auth/token",
        data={
            "username": username,
            "password": PASSWORD,
            "totp": totp_code(SECRETS[username], totp_step(clock.now())),
        },
    )
    assert r.status_code == 200, r.text
    f.tokens[username] = r.json()["access_token"]


def enrol_totp(f, username: str) -> None:  # type: ignore[no-untyped-def]
    """Set up TOTP through the account API, then sign in again with a code."""
    started = f.http.post("/api/v1/account/totp", headers=f.as_(username))
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    code = totp_code(secret, totp_step(clock.now()))
    confirmed = f.http.post(
        "/api/v1/account/totp/confirm", headers=f.as_(username), json={"code": code}
    )
    assert confirmed.status_code == 200, confirmed.text
    SECRETS[username] = secret
    later(90)
    signin_with_totp(f, username)
    for name in ("eo_brown", "adm_black", "aud_white"):
        f.tokens[name] = login(f.http, name)  # their tokens were minted before the jump


def disclose(f, case_id: str, **body: Any):  # type: ignore[no-untyped-def]
    expires = (clock.now() + dt.timedelta(days=body.pop("days", 14))).isoformat()
    return f.http.post(
        f"/api/v1/cases/{case_id}/shares",
        headers=f.as_("eo_brown"),
        json={
            "expires_at": expires,
            "purpose": "defence case preparation",
            "legal_basis": "CPIA 1996 s.3 initial disclosure",
            **body,
        },
    )


def redact(ctx: Context, f, clip_id: str) -> str:  # type: ignore[no-untyped-def]
    box = {"x": 0, "y": 0, "w": 64, "h": 64, "start_ms": 0, "end_ms": 500}
    r = f.http.post(
        f"/api/v1/clips/{clip_id}/redactions",
        headers=f.as_("eo_brown"),
        json={"boxes": [box], "mute": [], "reason": "a bystander's face, not relevant"},
    )
    assert r.status_code == 202, r.text
    kind = r.json()["kind"]
    assert make_redaction(ctx, clip_id, kind)["state"] == "ready"  # the worker, in-process
    return kind


@pytest.fixture
def defence(shared_world):  # type: ignore[no-untyped-def]
    """Both clips as exhibits, a redacted copy of the first, a force note and a viewing reason
    on the second, a defence firm with one member (no TOTP yet)."""
    f, ctx, case_id, clip_ids = shared_world
    r = f.http.post(
        f"/api/v1/cases/{case_id}/items", headers=f.as_("eo_brown"), json={"clip_ids": clip_ids}
    )
    assert r.status_code == 200, r.text
    kind = redact(ctx, f, clip_ids[0])
    eo = f.as_("eo_brown")
    viewed = f.http.get(
        f"/api/v1/clips/{clip_ids[1]}/stream", headers=eo, params={"reason": SECRET_REASON}
    )
    assert viewed.status_code == 200
    noted = f.http.post(
        f"/api/v1/clips/{clip_ids[1]}/bookmarks",
        headers=eo,
        json={"at_ms": 0, "note": SECRET_NOTE},
    )
    assert noted.status_code == 201, noted.text
    firm = organisation(f, "Doe & Co Solicitors")
    external(ctx, f, "def_grey", firm)
    return f, ctx, case_id, clip_ids, kind, firm


def test_a_defence_recipient_needs_totp_and_gets_the_redacted_copy_only(
    defence, tmp_path: Path
) -> None:
    f, ctx, case_id, clip_ids, kind, firm = defence
    share = disclose(f, case_id, organisation_id=firm, redacted_only=[clip_ids[0]])
    assert share.status_code == 201, share.text
    assert share.json()["organisation"] == "Doe & Co Solicitors"
    assert share.json()["whole_case"] and share.json()["redacted_only"] == [clip_ids[0]]

    # Signed in with a password only: nothing, and an instruction to set up TOTP.
    me = f.as_("def_grey")
    refused = f.http.get(f"/api/v1/cases/{case_id}", headers=me)
    assert refused.status_code == 403
    assert "TOTP" in refused.json()["detail"] and "/ui/account" in refused.json()["detail"]
    assert f.http.get("/api/v1/clips", headers=me).status_code == 403
    stream = f.http.get(f"/api/v1/clips/{clip_ids[1]}/stream", headers=me, params=WHY)
    assert stream.status_code == 403

    enrol_totp(f, "def_grey")
    me = f.as_("def_grey")
    case = f.http.get(f"/api/v1/cases/{case_id}", headers=me)
    assert case.status_code == 200, case.text
    shown = {x["clip_id"]: x["original_available"] for x in case.json()["exhibits"]}
    assert shown == {clip_ids[0]: False, clip_ids[1]: True}
    assert case.json()["members"] == [], "the force's people are not the defence's business"

    # The redacted exhibit: its redacted copy plays; nothing made from the original does.
    red = f.http.get(
        f"/api/v1/clips/{clip_ids[0]}/stream", headers=me, params={**WHY, "kind": kind}
    )
    assert red.status_code == 200 and red.content
    for path, params in (
        ("stream", WHY),
        ("original", WHY),
        ("thumbnail", {}),
    ):
        r = f.http.get(f"/api/v1/clips/{clip_ids[0]}/{path}", headers=me, params=params)
        assert r.status_code == 403, (path, r.text)
    viewing = f.http.post(
        f"/api/v1/clips/{clip_ids[0]}/viewings",
        headers=me,
        json={"kind": "original", "reason": WHY["reason"]},
    )
    assert viewing.status_code == 403
    # The court bundle carries the original: not for them.
    b = f.http.post(f"/api/v1/cases/{case_id}/bundles", headers=f.as_("eo_brown"), json={})
    assert b.status_code == 202 and build_bundle(ctx, b.json()["id"]) == "ready"
    assert (
        bundles_of(ctx, principal(ctx, "def_grey", second_factor=True), case_id)[0]["may_download"]
        is False
    )
    got = f.http.get(f"/api/v1/bundles/{b.json()['id']}/download", headers=me, params=TAKE)
    assert got.status_code == 403
    # A bundle made for their share: the redacted copy in place of the withheld original,
    # verified as any bundle is, and the original's bytes nowhere in it.
    mine = f.http.post(
        f"/api/v1/cases/{case_id}/bundles",
        headers=f.as_("eo_brown"),
        json={"share_id": share.json()["id"]},
    )
    assert mine.status_code == 202, mine.text
    assert build_bundle(ctx, mine.json()["id"]) == "ready"
    taken = f.http.get(f"/api/v1/bundles/{mine.json()['id']}/download", headers=me, params=TAKE)
    assert taken.status_code == 200, taken.text
    path = tmp_path / "defence.zip"
    path.write_bytes(taken.content)
    code, report = verify(path, *pins(ctx))
    assert code == 0, report
    members = read_all(path)
    manifest = json.loads(members["manifest.json"])
    [withheld] = [x for x in manifest["exhibits"] if x["clip_id"] == clip_ids[0]]
    assert withheld["file"] is None and withheld["withheld"]
    carried = [d["file"] for d in withheld["derivatives"] if d["file"]]
    assert carried and all(kind in name for name in carried), "its redacted copy, nothing else"
    original = ctx.store.open(f"originals/{withheld['sha256']}")
    head = next(iter(original))[:4096]
    assert not any(head in data for data in members.values()), "no original bytes"
    statement = members["statement/continuity.html"].decode()
    assert "Doe &amp; Co Solicitors (defence firm, all its members)" in statement
    assert "defence case preparation" in statement and "CPIA 1996 s.3" in statement
    assert "as its redacted copy only" in statement
    assert "carries the redacted copy and the original" in statement
    # Another recipient's share bundle is not theirs.
    cps = f.http.get(
        f"/api/v1/bundles/{mine.json()['id']}/download", headers=f.as_("cps_green"), params=TAKE
    )
    assert cps.status_code in (403, 404)
    # The other exhibit was disclosed whole.
    assert (
        f.http.get(f"/api/v1/clips/{clip_ids[1]}/original", headers=me, params=WHY).status_code
        == 200
    )

    # The ledger: the share with its organisation, purpose and basis; each view through it.
    [created] = [
        e for e in entries(ctx, "share.created") if e["subject"]["share"] == share.json()["id"]
    ]
    assert created["organisation"] == "Doe & Co Solicitors"
    assert created["organisation_kind"] == "defence_firm"
    assert created["purpose"] == "defence case preparation"
    assert created["legal_basis"] == "CPIA 1996 s.3 initial disclosure"
    assert created["redacted_only"] == [clip_ids[0]] and created["exhibits"] == "all"
    views = [e for e in entries(ctx, "clip.viewed") if e["actor"] == "user:def_grey"]
    assert views and all(v["subject"]["share"] == share.json()["id"] for v in views)
    assert all(v["organisation"] == "Doe & Co Solicitors" for v in views)
    assert {v["object"] for v in views} == {f"derived/{clip_ids[0]}/{kind}"}
    downloads = [e for e in entries(ctx, "clip.downloaded") if e["actor"] == "user:def_grey"]
    assert [d["subject"]["clip"] for d in downloads] == [clip_ids[1]]
    assert downloads[0]["purpose"] == "defence case preparation"
    assert entries(ctx, "case.accessed")[-1]["organisation"] == "Doe & Co Solicitors"


def test_others_reasons_notes_and_disclosures_do_not_reach_an_external_recipient(
    defence,
) -> None:
    f, ctx, case_id, clip_ids, _, firm = defence
    council = organisation(f, "Borough Council", "local_authority")
    assert disclose(f, case_id, organisation_id=council).status_code == 201
    assert disclose(f, case_id, organisation_id=firm).status_code == 201
    enrol_totp(f, "def_grey")
    detail = f.http.get(f"/api/v1/clips/{clip_ids[1]}", headers=f.as_("def_grey"))
    assert detail.status_code == 200, detail.text
    text = detail.text
    assert SECRET_REASON not in text and SECRET_NOTE not in text
    assert "Borough Council" not in text, "who else it was disclosed to is not theirs to know"
    assert "eo_brown" not in text
    # The force still reads its own note.
    assert SECRET_NOTE in f.http.get(f"/api/v1/clips/{clip_ids[1]}", headers=f.as_("eo_brown")).text


def test_wrong_organisation_revoked_and_expired_shares_open_nothing(defence) -> None:
    f, ctx, case_id, clip_ids, _, firm = defence
    other = organisation(f, "Roe Legal LLP")
    external(ctx, f, "def_blue", other)
    share = disclose(f, case_id, organisation_id=firm, days=2)
    assert share.status_code == 201
    enrol_totp(f, "def_grey")
    enrol_totp(f, "def_blue")

    def sees(who: str) -> int:
        return f.http.get(f"/api/v1/cases/{case_id}", headers=f.as_(who)).status_code

    assert (sees("def_grey"), sees("def_blue")) == (200, 404), "another firm sees nothing"
    assert f.http.get(f"/api/v1/clips/{clip_ids[0]}", headers=f.as_("def_blue")).status_code == 404
    # Revoked: gone at once.
    r = f.http.delete(f"/api/v1/shares/{share.json()['id']}", headers=f.as_("eo_brown"))
    assert r.status_code == 204 and sees("def_grey") == 404
    revoked = entries(ctx, "share.revoked")[-1]
    assert revoked["subject"]["organisation"] == firm and revoked["purpose"]
    # A share with one person, of one chosen exhibit: the rest of the case stays shut.
    one = disclose(f, case_id, username="def_blue", clip_ids=[clip_ids[1]], days=1)
    assert one.status_code == 201, one.text
    case = f.http.get(f"/api/v1/cases/{case_id}", headers=f.as_("def_blue")).json()
    assert [x["clip_id"] for x in case["exhibits"]] == [clip_ids[1]] and case["items"] == 1
    listed = f.http.get("/api/v1/cases", headers=f.as_("def_blue")).json()["items"]
    assert [(c["id"], c["items"]) for c in listed] == [(case_id, 1)], "no count of the rest"
    assert f.http.get(f"/api/v1/clips/{clip_ids[0]}", headers=f.as_("def_blue")).status_code == 404
    # Expired: two days on, nothing.
    later(2 * 86400)
    signin_with_totp(f, "def_blue")
    assert sees("def_blue") == 404


def test_shares_check_their_recipient_and_bound_their_text(defence) -> None:
    f, _, case_id, clip_ids, _, firm = defence
    assert disclose(f, case_id).status_code == 422, "nobody named"
    assert disclose(f, case_id, username="def_grey", organisation_id=firm).status_code == 422
    assert disclose(f, case_id, username="pc_smith").status_code == 404
    assert disclose(f, case_id, organisation_id="no-such-org").status_code == 404
    assert disclose(f, case_id, username="def_grey", purpose="x" * 201).status_code == 422
    assert disclose(f, case_id, username="def_grey", legal_basis="").status_code == 422
    assert (
        disclose(
            f, case_id, username="def_grey", clip_ids=[clip_ids[1]], redacted_only=[clip_ids[0]]
        ).status_code
        == 422
    ), "redacted-only must be among the shared exhibits"
    # Organisations are the administrators' to keep.
    r = f.http.post(
        "/api/v1/organisations",
        headers=f.as_("eo_brown"),
        json={"name": "Any Firm", "kind": "defence_firm"},
    )
    assert r.status_code == 403
    bad = f.http.post(
        "/api/v1/organisations",
        headers=f.as_("adm_black"),
        json={"name": "Any Firm", "kind": "pirates"},
    )
    assert bad.status_code == 422 and "defence_firm" in bad.json()["detail"]


def test_a_watermarked_copy_names_the_recipient_is_reproducible_and_theirs_alone(
    defence, tmp_path: Path
) -> None:
    from evidence.cases.models import watermark_kind
    from evidence.cases.watermarks import make_watermarks
    from evidence.media.derivatives import Recipe
    from evidence.media.runner import ffmpeg_binary, sha256_file

    f, ctx, case_id, clip_ids, kind, firm = defence
    council = organisation(f, "Borough Council", "local_authority")
    external(ctx, f, "la_brown", council)
    share = disclose(f, case_id, organisation_id=firm, redacted_only=[clip_ids[0]], watermark=True)
    assert share.status_code == 201 and share.json()["watermark"] is True
    other = disclose(f, case_id, organisation_id=council)
    assert other.status_code == 201
    made = make_watermarks(ctx, share.json()["id"])  # the worker's job, in-process
    assert {m["clip_id"] for m in made} == set(clip_ids)
    assert make_watermarks(ctx, share.json()["id"]) == [], "made once"
    wm = watermark_kind(share.json()["id"])

    # The entry: the recipe, the text naming the firm and the share, the input and the font.
    created = [e for e in entries(ctx, "derivative.created") if e["kind"] == wm]
    assert len(created) == 2
    by_clip = {e["subject"]["clip"]: e for e in created}
    red = by_clip[clip_ids[0]]
    assert red["watermark"]["made_from"] == kind, "the redacted copy, never the original"
    assert by_clip[clip_ids[1]]["watermark"]["made_from"] == "original"
    assert "Doe & Co Solicitors" in red["watermark"]["text"]
    assert share.json()["id"][:8] in red["watermark"]["text"]
    assert any("drawtext" in a and "DejaVuSans-Bold.ttf" in a for a in red["recipe"]["args"])
    with ctx.db.session() as s:
        from evidence.clips.models import Derivative

        source = s.query(Derivative).filter_by(clip_id=clip_ids[0], kind=kind).one()
    assert red["recipe"]["input_sha256"] == source.sha256

    # Reproducible: the recipe run again on the redacted copy makes the same bytes.
    src = tmp_path / "input.mp4"
    with src.open("wb") as out:
        for chunk in ctx.store.open(source.key):
            out.write(chunk)
    again = tmp_path / "again.mp4"
    recipe = Recipe(
        **{k: v for k, v in red["recipe"].items() if k != "args"}, args=tuple(red["recipe"]["args"])
    )
    import subprocess

    subprocess.run(recipe.argv(src, again, ffmpeg_binary()), check=True, capture_output=True)
    assert sha256_file(again) == red["sha256"] != source.sha256

    # Theirs alone: the firm plays it; the council may not, nor sees its entry.
    enrol_totp(f, "def_grey")
    enrol_totp(f, "la_brown")
    params = {**WHY, "kind": wm}
    mine = f.http.get(
        f"/api/v1/clips/{clip_ids[0]}/stream", headers=f.as_("def_grey"), params=params
    )
    assert mine.status_code == 200 and mine.content
    theirs = f.http.get(
        f"/api/v1/clips/{clip_ids[1]}/stream", headers=f.as_("la_brown"), params=params
    )
    assert theirs.status_code == 403
    detail = f.http.get(f"/api/v1/clips/{clip_ids[1]}", headers=f.as_("la_brown"))
    at = detail.text.find("Doe &")
    assert detail.status_code == 200 and at < 0, detail.text[max(0, at - 600) : at + 100]


REDACTION_REASON = "a bystander's face, not relevant"  # `redact` above


def _free_text(entry: dict[str, Any]) -> list[str]:
    """Any field of a ledger entry as a recipient got it that holds the force's free text or
    names who asked (the recipe is ffmpeg's plan, not a person's words)."""
    from evidence.access import RECIPIENT_WITHHELD_KEYS

    found = [k for k in entry if k in RECIPIENT_WITHHELD_KEYS]
    for key, value in entry.items():
        if isinstance(value, dict) and key != "recipe":
            found += [f"{key}.{k}" for k in value if k in RECIPIENT_WITHHELD_KEYS]
    return found


@pytest.mark.parametrize("who", ["def_grey", "cps_green"])
def test_a_recipient_reads_no_force_free_text_and_still_verifies_each_entry(
    defence, who: str
) -> None:
    """A redacted copy's entry carries the redaction's reason and who asked for it: a
    recipient (external or CPS) gets the entry without them, says so, and checks it by its
    leaf hash and inclusion proof against the signed checkpoint."""
    import base64

    from evidence.ledger import merkle
    from evidence.ledger.note import NoteVerifier, open_checkpoint

    f, ctx, case_id, clip_ids, kind, firm = defence
    if who == "def_grey":
        assert disclose(f, case_id, organisation_id=firm).status_code == 201
        enrol_totp(f, "def_grey")
    else:
        assert disclose(f, case_id, username="cps_green").status_code == 201
    me = f.as_(who)
    # Something of theirs in the timeline too: their own viewing keeps its reason.
    assert (
        f.http.get(f"/api/v1/clips/{clip_ids[0]}/stream", headers=me, params=WHY).status_code == 200
    )
    detail = f.http.get(f"/api/v1/clips/{clip_ids[0]}", headers=me)
    assert detail.status_code == 200, detail.text
    assert REDACTION_REASON not in detail.text and SECRET_REASON not in detail.text
    custody = detail.json()["custody"]
    made = [c for c in custody if c["type"] == "derivative.created" and c["entry"]["kind"] == kind]
    assert made, "the redacted copy's entry is in their timeline"
    entry = made[0]
    assert {"redaction.reason", "redaction.requested_by"} <= set(entry["withheld"])
    assert entry["entry"]["sha256"] and entry["entry"]["redaction"]["boxes"], "facts kept"
    for item in custody:
        if item["entry"].get("actor") != f"user:{who}":
            assert _free_text(item["entry"]) == [], item
    own = [c for c in custody if c["type"] == "clip.viewed" and c["actor"] == f"user:{who}"]
    assert own and own[0]["entry"]["reason"] == WHY["reason"], "their own reason is theirs"
    # The force still reads the whole entry.
    force = f.http.get(f"/api/v1/clips/{clip_ids[0]}", headers=f.as_("eo_brown")).json()
    assert REDACTION_REASON in json.dumps(force["custody"])

    # Verifiable with what they got: the leaf hash (it covers the whole entry, so it is not
    # the hash of the shortened one) and its inclusion proof up to the signed checkpoint.
    key = f.http.get("/api/v1/ledger/key").text.strip()
    cp = open_checkpoint(f.http.get("/api/v1/ledger/checkpoint").text, NoteVerifier.from_vkey(key))
    assert entry["index"] < cp.size
    proof = f.http.get(
        "/api/v1/ledger/proofs/inclusion",
        headers=me,
        params={"index": entry["index"], "tree_size": cp.size},
    )
    assert proof.status_code == 200, proof.text
    leaf = base64.b64decode(entry["leaf_hash"])
    merkle.verify_inclusion(
        leaf,
        entry["index"],
        cp.size,
        [base64.b64decode(h) for h in proof.json()["hashes"]],
        cp.root_hash,
    )
    shortened = json.dumps(entry["entry"], separators=(",", ":")).encode()
    assert merkle.leaf_hash(shortened) != leaf, "the leaf hash is the full entry's"


def test_a_recipient_reads_no_reason_for_a_re_attribution(defence) -> None:
    """Why an evidence officer re-attributed a clip is the force's free text."""
    f, ctx, case_id, clip_ids, _, firm = defence
    secret = "complaint under review against the first officer"
    r = f.http.post(
        f"/api/v1/clips/{clip_ids[1]}/attribution",
        headers=f.as_("eo_brown"),
        json={"officer_id": "PC5678", "reason": secret},
    )
    assert r.status_code == 200, r.text
    assert disclose(f, case_id, organisation_id=firm).status_code == 201
    enrol_totp(f, "def_grey")
    for path in ("", "/attribution"):
        got = f.http.get(f"/api/v1/clips/{clip_ids[1]}{path}", headers=f.as_("def_grey"))
        assert got.status_code == 200, got.text
        assert secret not in got.text
    history = f.http.get(f"/api/v1/clips/{clip_ids[1]}/attribution", headers=f.as_("eo_brown"))
    assert secret in history.text
