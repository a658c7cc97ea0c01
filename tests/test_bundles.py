"""Court bundles: a CPS user downloads one over HTTP; it verifies with our verifier AND with
coreutils and openssl alone (exactly as VERIFY.txt says); tampering is caught and named."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cli.main import app
from evidence.bundles import layout
from evidence.bundles import manifest as mf
from evidence.bundles.keys import public_pem
from evidence.bundles.models import Bundle, BundleState
from evidence.bundles.service import build_bundle
from evidence.context import Context
from evidence.ledger.note import NoteSigner
from tests.conftest import sqlite_only
from tests.fixtures.api import running_api
from tests.fixtures.bundles import (
    TAKE,
    pins,
    read_all,
    rewrite,
    unzip,
    verify,
    with_sums,
)
from tests.fixtures.verifier import verify_alone

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md


def test_cps_downloads_a_bundle_that_verifies_with_and_without_our_code(
    bundled, tmp_path: Path
) -> None:
    f, ctx, case_id, bundle_id, path = bundled
    code, out = verify(path, *pins(ctx))
    assert code == 0, out
    assert "PASS  manifest signature" in out and "PASS  checkpoint signature" in out
    assert "NOTE  no RFC 3161 timestamp token" in out  # no TSA configured in this test
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        m = json.loads(zf.read(layout.MANIFEST))
        for info in zf.infolist():
            if info.filename.startswith("media/"):
                assert info.compress_type == zipfile.ZIP_STORED, info.filename
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert zf.read("statement/continuity.pdf").startswith(b"%PDF")
        html = zf.read("statement/continuity.html").decode()
        verify_txt = zf.read("VERIFY.txt").decode()
    for fixed in (
        layout.MANIFEST,
        layout.SIGNATURE,
        layout.SIGNING_KEY,
        layout.SUMS,
        layout.CHECKPOINT,
        layout.LEDGER_KEY,
        layout.ENTRIES,
        "statement/continuity.html",
        "VERIFY.txt",
    ):
        assert fixed in names
    refs = [e["exhibit_ref"] for e in m["exhibits"]]
    assert len(refs) == 2 and all(r in html for r in refs)
    assert "Viewed" in html and "Priya Green (CPS lawyer)" in html, (
        "the CPS view is an access listed"
    )
    assert all(e["derivatives"] and e["derivatives"][0]["recipe"] for e in m["exhibits"])
    # Without our code, exactly as VERIFY.txt says.
    sums = "sha256sum -c SHA256SUMS"
    sig = (
        "openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin -in manifest.json "
        "-sigfile manifest.json.sig"
    )
    assert sums in verify_txt and sig in verify_txt
    where = unzip(path, tmp_path / "unzipped")
    for cmd in (sums, sig):
        done = subprocess.run(cmd.split(), cwd=where, capture_output=True, text=True)
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
    # Range works; the download is in the ledger with who took it, their role, why and from
    # where, once: a resumed range of the same download for the same reason is not another.
    part = f.http.get(
        f"/api/v1/bundles/{bundle_id}/download",
        params=TAKE,
        headers={**f.as_("cps_green"), "Range": "bytes=0-3"},
    )
    assert part.status_code == 206 and part.content == b"PK\x03\x04"
    downloads = [json.loads(e) for _, e in ctx.ledger.entries_about(f"bundle:{bundle_id}")]
    downloads = [e for e in downloads if e["type"] == "bundle.downloaded"]
    assert len(downloads) == 1, downloads
    (taken,) = downloads
    assert (taken["actor"], taken["role"], taken["reason"]) == (
        "user:cps_green",
        "cps",
        "court preparation: first hearing",
    )
    assert taken["source_ip"]
    # Another reason is another access, recorded.
    assert (
        f.http.get(
            f"/api/v1/bundles/{bundle_id}/download",
            headers=f.as_("cps_green"),
            params={"reason": "disclosure"},
        ).status_code
        == 200
    )
    downloads = [json.loads(e) for _, e in ctx.ledger.entries_about(f"bundle:{bundle_id}")]
    assert [e["reason"] for e in downloads if e["type"] == "bundle.downloaded"] == [
        "court preparation: first hearing",
        "disclosure",
    ]
    assert build_bundle(ctx, bundle_id) == "ready", "a repeated task leaves a ready bundle alone"
    exported = [
        json.loads(e)
        for _, e in ctx.ledger.entries_about(f"bundle:{bundle_id}")
        if json.loads(e)["type"] == "bundle.exported"
    ]
    assert len(exported) == 1 and exported[0]["built_at"]


def test_the_continuity_statement_reads_as_a_statement_a_court_accepts(
    bundled, tmp_path: Path
) -> None:
    """The MG11 shape: the s.9 declaration, the maker by name, role and number, a signature
    and date, the case and exhibit references and "Page x of y" on every page, the exhibit
    list first (original names, camera serial, officer by name, SHA-256), each exhibit's
    continuity in UK time with people named, the technical detail in an appendix; never a
    Python None or raw JSON; PDF and HTML say the same; the PDF embeds its fonts, has a real
    creation date and metadata, and is A4. A PNG of its first page is kept as an artifact."""
    _, ctx, _, _, path = bundled
    where = unzip(path, tmp_path / "unzipped")
    pdf = where / "statement" / "continuity.pdf"
    html = (where / "statement" / "continuity.html").read_text()
    m = json.loads((where / layout.MANIFEST).read_text())

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    text = run("pdftotext", "-layout", str(pdf), "-")
    pages = text.count("\f") or 1
    flat = " ".join(text.split())
    assert "is true to the best of my knowledge and belief" in flat
    assert f"consisting of {pages} page" in flat and f"consisting of {pages} page" in " ".join(
        html.split()
    )
    assert "Statement of" in flat and "DC Sam Brown" in flat and "evidence officer" in flat
    for n in range(1, pages + 1):
        assert f"Page {n} of {pages}" in text
    assert text.count(f"Case {m['case']['reference']}") >= pages, "the case reference on every page"
    assert text.count("Signature:") >= pages
    exhibit_list = flat.index("Exhibit list")
    assert exhibit_list < flat.index("continuity", exhibit_list), "the exhibit list comes first"
    for ex in m["exhibits"]:
        assert ex["exhibit_ref"] in flat and ex["sha256"][:16] in flat.replace(" ", "")
        assert ex["original_filename"] in flat
    assert "BWV-7781-0042" in flat.replace(" ", "") and "PC Dana Smith (officer PC1234)" in flat
    assert "Priya Green (CPS lawyer)" in flat and "charging decision" in flat, (
        "the CPS view, by name"
    )
    assert "(UTC+00:00)" in flat or "(UTC+01:00)" in flat, "UK time with its offset"
    appendix = flat.split("Appendix A: technical detail")[-1]
    assert "ffmpeg" in appendix
    assert "remux (H.264 High yuv420p" in appendix, "how each proxy was made, and why"
    for bad in ("None", "{'", '{"', "user:", "clip.viewed"):
        assert bad not in flat, bad
        assert bad not in html.split("</style>")[1], bad
    fonts = run("pdffonts", str(pdf)).splitlines()[2:]
    assert fonts and all(" yes " in line for line in fonts), fonts  # every font embedded
    info = run("pdfinfo", str(pdf))
    assert "Page size:      595.28 x 841.89 pts (A4)" in info or "595.276 x 841.89" in info, info
    assert (
        "Title:           Continuity statement, case" in info
        and "Author:          DC Sam Brown" in info
    )
    assert "2000" not in next(line for line in info.splitlines() if line.startswith("CreationDate"))
    artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    run(
        "pdftoppm",
        "-png",
        "-r",
        "60",
        "-f",
        "1",
        "-l",
        "2",
        str(pdf),
        str(artifacts / "statement-page"),
    )
    assert (artifacts / "statement-page-1.png").stat().st_size > 10_000


def test_bundle_access_follows_the_share(bundled) -> None:
    f, ctx, case_id, bundle_id, _ = bundled
    assert f.http.get(f"/api/v1/bundles/{bundle_id}", headers=f.as_("pc_smith")).status_code == 403
    assert (
        f.http.post(f"/api/v1/cases/{case_id}/bundles", headers=f.as_("cps_green")).status_code
        == 403
    )
    share_id = f.http.get(f"/api/v1/cases/{case_id}/shares", headers=f.as_("eo_brown")).json()[
        "items"
    ][0]["id"]
    f.http.delete(f"/api/v1/shares/{share_id}", headers=f.as_("eo_brown"))
    assert (
        f.http.get(f"/api/v1/bundles/{bundle_id}/download", headers=f.as_("cps_green")).status_code
        == 404
    )


def test_rebuilding_gives_the_same_bytes(bundled, tmp_path: Path) -> None:
    """Pinned to the ledger size at request: the log has grown since, the bundle does not."""
    f, ctx, _, bundle_id, path = bundled
    with ctx.db.write_session() as s:
        b = s.get(Bundle, bundle_id)
        first_sha, b.state = b.sha256, BundleState.failed.value
    ctx.store.delete(f"bundles/{bundle_id}.zip")
    assert build_bundle(ctx, bundle_id) == "ready"
    again = tmp_path / "again.zip"
    with again.open("wb") as out:
        for chunk in ctx.store.open(f"bundles/{bundle_id}.zip"):
            out.write(chunk)
    with zipfile.ZipFile(path) as a, zipfile.ZipFile(again) as b2:
        assert a.read(layout.MANIFEST) == b2.read(layout.MANIFEST)
    with ctx.db.session() as s:
        assert s.get(Bundle, bundle_id).sha256 == first_sha, "the whole ZIP is reproducible"


# -- tampering ----------------------------------------------------------------------------


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def failed(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL")]


@sqlite_only
def test_tampering_is_caught_and_named(bundled, tmp_path: Path) -> None:
    _, ctx, _, _, path = bundled
    members = read_all(path)
    m = json.loads(members[layout.MANIFEST])
    ex1, ex2 = m["exhibits"]
    lines = members[layout.ENTRIES].decode().splitlines()
    row = next(json.loads(line) for line in lines if json.loads(line)["hashes"])
    row_tampered = dict(
        row,
        hashes=[base64.b64encode(flip(base64.b64decode(row["hashes"][0]), 0)).decode()]
        + row["hashes"][1:],
    )
    entries_tampered = (
        "\n".join(
            json.dumps(row_tampered, sort_keys=True)
            if json.loads(x)["index"] == row["index"]
            else x
            for x in lines
        ).encode()
        + b"\n"
    )
    cp = members[layout.CHECKPOINT].decode().split("\n")
    cp[1] = str(int(cp[1]) + 1)  # claim a bigger tree
    other = NoteSigner.generate(ctx.settings.ledger_origin)
    cases: dict[str, tuple[dict[str, bytes | None], list[str]]] = {
        "media byte": (
            {ex1["file"]: flip(members[ex1["file"]], 1000)},
            [f"SHA256SUMS {ex1['file']}", f"exhibit {ex1['exhibit_ref']} media"],
        ),
        "manifest byte": (
            {
                layout.MANIFEST: members[layout.MANIFEST].replace(
                    b'"exhibit_ref": "', b'"exhibit_ref": "X', 1
                )
            },
            ["manifest signature", f"SHA256SUMS {layout.MANIFEST}"],
        ),
        "proof hash": (
            {layout.ENTRIES: entries_tampered},
            [f"inclusion ledger entry {row['index']}"],
        ),
        "checkpoint": ({layout.CHECKPOINT: "\n".join(cp).encode()}, ["checkpoint signature"]),
        "exhibit removed": (
            {ex2["file"]: None},
            [f"SHA256SUMS {ex2['file']}", f"exhibit {ex2['exhibit_ref']} media"],
        ),
        "exhibits swapped": (
            {ex1["file"]: members[ex2["file"]], ex2["file"]: members[ex1["file"]]},
            [f"exhibit {ex1['exhibit_ref']} media", f"exhibit {ex2['exhibit_ref']} media"],
        ),
        # Another key signing the same manifest (SHA256SUMS recomputed): the signed manifest's
        # own file list names the key file, and the pinned force key does not match.
        "signing key replaced": (
            _resigned(members, m, rewrite_manifest=False),
            [f"manifest file {layout.SIGNING_KEY}", "bundle signing key pinned"],
        ),
        # Another ledger key: the checkpoint (signed by the real key) no longer verifies.
        "ledger key replaced": (
            with_sums(members, {layout.LEDGER_KEY: (other.verifier_key() + "\n").encode()}),
            ["checkpoint signature"],
        ),
    }
    for name, (changes, expected) in cases.items():
        bad = rewrite(path, tmp_path / f"{name.replace(' ', '-')}.zip", changes)
        code, out = verify(bad, *pins(ctx))
        assert code != 0, (name, out)
        for what in expected:
            assert any(what in line for line in failed(out)), (name, what, out)
        assert "bundle verification FAILED" in out


def test_a_bundle_damaged_in_place_fails_naming_the_member_without_a_traceback(
    bundled, tmp_path: Path
) -> None:
    """A bit flipped inside a stored member (a bad disk, a bad copy) makes zipfile raise
    BadZipFile (bad CRC-32) on reading it: the verifier reports a FAIL naming that member and
    exits 1, as a court expert's command line must, never a Python traceback."""
    _, ctx, _, _, path = bundled
    with zipfile.ZipFile(path) as zf:
        info = next(
            i for i in zf.infolist() if i.filename.startswith("media/") and i.file_size > 1000
        )
    damaged = tmp_path / "damaged.zip"
    data = bytearray(path.read_bytes())
    # The local header is 30 bytes plus the name and the extra field; the data follows it.
    name_len, extra_len = (
        int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"),
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little"),
    )
    at = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    data[at] ^= 0xFF
    damaged.write_bytes(bytes(data))
    run = subprocess.run(
        [sys.executable, "-m", "cli", "verify", "bundle", str(damaged), *pins(ctx)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert f"FAIL  ZIP member {info.filename}: damaged in this copy" in run.stdout
    assert "obtain the bundle again" in run.stdout
    assert verify(path, *pins(ctx))[0] == 0, "the undamaged copy still verifies"


def _resigned(
    members: dict[str, bytes], m: dict, *, rewrite_manifest: bool
) -> dict[str, bytes | None]:
    """Sign with a key of the forger's own; optionally fix manifest.json's file list too."""
    key = Ed25519PrivateKey.generate()
    pem = public_pem(key.public_key())
    manifest = members[layout.MANIFEST]
    if rewrite_manifest:
        m = json.loads(manifest)
        for f in m["files"]:
            if f["path"] == layout.SIGNING_KEY:
                f.update(sha256=hashlib.sha256(pem).hexdigest(), size=len(pem))
        manifest = mf.render_manifest(m)
    changes = {
        layout.SIGNING_KEY: pem,
        layout.MANIFEST: manifest,
        layout.SIGNATURE: key.sign(manifest),
    }
    return with_sums(members, changes)


@sqlite_only
def test_a_fully_resigned_bundle_is_caught_only_by_the_pinned_bundle_key(
    bundled, tmp_path: Path
) -> None:
    """A forger who re-signs the manifest with their own key and fixes every hash makes a
    bundle that is internally consistent: nothing inside it can tell. A court must pin the
    force's published bundle key (--bundle-key), and then the replacement is caught."""
    _, ctx, _, _, path = bundled
    members = read_all(path)
    forged = rewrite(
        path,
        tmp_path / "forged.zip",
        _resigned(members, json.loads(members[layout.MANIFEST]), rewrite_manifest=True),
    )
    code, out = verify(forged, "--key", ctx.ledger.verifier_key)
    assert code == 0, out
    assert "NOTE  bundle signing key not pinned" in out
    code, out = verify(forged, *pins(ctx))
    assert code != 0 and any("bundle signing key pinned" in line for line in failed(out)), out


@sqlite_only
def test_a_replaced_ledger_key_is_caught_by_the_pin(bundled, tmp_path: Path) -> None:
    _, ctx, _, _, path = bundled
    members = read_all(path)
    other = NoteSigner.generate(ctx.settings.ledger_origin).verifier_key()
    bad = rewrite(
        path, tmp_path / "k.zip", with_sums(members, {layout.LEDGER_KEY: (other + "\n").encode()})
    )
    code, out = verify(bad, "--key", ctx.ledger.verifier_key)
    assert code != 0 and any("ledger key pinned" in line for line in failed(out)), out
    code, out = verify(path)  # unpinned: passes, but says what it could not check
    assert code == 0 and "NOTE  ledger key not pinned" in out


@sqlite_only
def test_the_live_log_only_grew_since_the_bundle(bundled, tmp_path: Path) -> None:
    f, ctx, _, _, path = bundled
    saved = tmp_path / "checkpoint.txt"
    with zipfile.ZipFile(path) as zf:
        saved.write_bytes(zf.read(layout.CHECKPOINT))
    size_then = int(saved.read_text().split("\n")[1])
    assert ctx.ledger.size() > size_then, "downloads and the export came after the pin"
    with running_api(ctx.settings) as url:
        import httpx

        from tests.fixtures.people import login

        token = login(httpx.Client(base_url=url), "aud_white")
        result = CliRunner().invoke(
            app,
            [
                "verify",
                "ledger",
                "--api",
                url,
                "--checkpoint",
                str(saved),
                "--token",
                token,
                "--key",
                ctx.ledger.verifier_key,
            ],
        )
    assert result.exit_code == 0, result.output
    assert f"consistency {size_then} -> " in result.output


def test_the_worker_task_is_registered_under_the_name_the_api_sends(tmp_path: Path) -> None:
    import workers.tasks  # noqa: F401  (registers the tasks, as the worker does at start)
    from evidence import queue
    from evidence.config import Settings
    from workers.app import make_celery

    assert queue.BUILD_BUNDLE in make_celery(Settings(data_dir=tmp_path)).tasks


@sqlite_only
def test_a_bundle_carries_the_checkpoint_timestamp(bundled, tsa, tmp_path: Path) -> None:
    """With a TSA configured the pinned checkpoint is stamped; the token checks with our
    verifier (given the TSA root) and with `openssl ts -verify` exactly as VERIFY.txt says."""
    f, ctx, case_id, _, _ = bundled
    worker = Context(
        ctx.settings.model_copy(update={"tsa_url": tsa.good.url, "tsa_ca_file": tsa.good.ca_pem})
    )
    bundle_id = f.http.post(f"/api/v1/cases/{case_id}/bundles", headers=f.as_("eo_brown")).json()[
        "id"
    ]
    assert build_bundle(worker, bundle_id) == "ready"
    path = tmp_path / "stamped.zip"
    path.write_bytes(
        f.http.get(
            f"/api/v1/bundles/{bundle_id}/download", headers=f.as_("cps_green"), params=TAKE
        ).content
    )
    code, out = verify(path, *pins(ctx), "--tsa-ca", str(tsa.good.ca_pem))
    assert code == 0 and "PASS  timestamp token" in out, out
    # The same with nothing of the store but the verifier's own modules (a court expert's copy).
    lines = verify_alone(
        path,
        tmp_path / "court",
        key=ctx.ledger.verifier_key,
        bundle_key=ctx.settings.secrets_dir() / "bundle.pub.pem",
        tsa_ca=tsa.good.ca_pem,
    )
    assert lines == [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    # Without --tsa-ca the bundled CA is used, and the report says where the root came from.
    code, out = verify(path, *pins(ctx))
    assert code == 0 and "PASS  timestamp token" in out, out
    assert f"NOTE  the TSA root came from the bundle ({layout.TSA_CA})" in out, out
    # An independently obtained root that did not issue the TSA's certificate: refused.
    code, out = verify(path, *pins(ctx), "--tsa-ca", str(tsa.other_ca_pem))
    assert code != 0 and any("timestamp token" in line for line in failed(out)), out
    where = unzip(path, tmp_path / "stamped")
    assert (where / layout.TSA_CA).read_bytes() == tsa.good.ca_pem.read_bytes()
    with zipfile.ZipFile(path) as zf:
        listed = {f["path"] for f in json.loads(zf.read(layout.MANIFEST))["files"]}
        assert layout.TSA_CA in listed and f"  {layout.TSA_CA}\n" in zf.read(layout.SUMS).decode()
    verify_txt = (where / "VERIFY.txt").read_text()
    cmd = (
        "openssl ts -verify -in ledger/checkpoint.tsr -data ledger/checkpoint.txt"
        " -CAfile ledger/tsa-ca.pem"
    )
    assert cmd in verify_txt
    assert "Do NOT trust ledger/tsa-ca.pem because it is in this bundle" in verify_txt
    assert "TSA operator's website" in verify_txt
    done = subprocess.run(cmd.split(), cwd=where, capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout, done.stderr)
    members = read_all(path)
    bad = rewrite(
        path,
        tmp_path / "tsr.zip",
        with_sums(
            members, {layout.TOKEN: flip(members[layout.TOKEN], len(members[layout.TOKEN]) - 10)}
        ),
    )
    code, out = verify(bad, *pins(ctx), "--tsa-ca", str(tsa.good.ca_pem))
    assert code != 0 and any("timestamp token" in line for line in failed(out)), out


# -- exhibit references ----------------------------------------------------------------------


def _rebuild(ctx, bundle_id: str, into: Path) -> bytes:
    """Build a bundle again from scratch (as a retried task would) and return its manifest."""
    with ctx.db.write_session() as s:
        s.get(Bundle, bundle_id).state = BundleState.failed.value
    ctx.store.delete(f"bundles/{bundle_id}.zip")
    assert build_bundle(ctx, bundle_id) == "ready"
    with into.open("wb") as out:
        for chunk in ctx.store.open(f"bundles/{bundle_id}.zip"):
            out.write(chunk)
    with zipfile.ZipFile(into) as zf:
        return zf.read(layout.MANIFEST)


@sqlite_only
def test_an_exhibit_ref_edited_after_the_request_leaves_the_bundle_as_it_was(
    bundled, tmp_path: Path
) -> None:
    """The reference comes from the ledger as pinned, so a rebuild is byte-identical; a bundle
    requested after the edit shows the new reference. Bad, taken or unauthorised edits are
    refused."""
    f, ctx, case_id, bundle_id, path = bundled
    with zipfile.ZipFile(path) as zf:
        first = zf.read(layout.MANIFEST)
    ex, other = json.loads(first)["exhibits"]
    eo = f.as_("eo_brown")
    url = f"/api/v1/cases/{case_id}/items/{{}}"
    for bad in ("", "x" * 33, "JS/1; DROP", "<b>"):
        r = f.http.patch(url.format(ex["clip_id"]), headers=eo, json={"exhibit_ref": bad})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", bad
    r = f.http.patch(
        url.format(ex["clip_id"]), headers=eo, json={"exhibit_ref": other["exhibit_ref"].lower()}
    )
    assert r.status_code == 409, r.text
    assert (
        f.http.patch(
            url.format("no-such-clip"), headers=eo, json={"exhibit_ref": "A/1"}
        ).status_code
        == 404
    )
    for who in ("cps_green", "pc_smith", "aud_white"):
        r = f.http.patch(url.format(ex["clip_id"]), headers=f.as_(who), json={"exhibit_ref": "A/1"})
        assert r.status_code == 403, who

    r = f.http.patch(url.format(ex["clip_id"]), headers=eo, json={"exhibit_ref": "JS/2"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "clip_id": ex["clip_id"],
        "exhibit_ref": "JS/2",
        "previous_ref": ex["exhibit_ref"],
    }
    (entry,) = [
        json.loads(e)
        for _, e in ctx.ledger.entries_about(f"clip:{ex['clip_id']}")
        if json.loads(e)["type"] == "exhibit.referenced"
    ]
    assert entry["previous_ref"] == ex["exhibit_ref"] and entry["exhibit_ref"] == "JS/2"
    assert entry["subject"]["case"] == case_id and entry["actor"] == "user:eo_brown"
    assert _rebuild(ctx, bundle_id, tmp_path / "again.zip") == first

    new_id = f.http.post(f"/api/v1/cases/{case_id}/bundles", headers=eo).json()["id"]
    assert build_bundle(ctx, new_id) == "ready"
    newer = tmp_path / "newer.zip"
    newer.write_bytes(
        f.http.get(f"/api/v1/bundles/{new_id}/download", headers=eo, params=TAKE).content
    )
    with zipfile.ZipFile(newer) as zf:
        m = json.loads(zf.read(layout.MANIFEST))
    (edited,) = [e for e in m["exhibits"] if e["clip_id"] == ex["clip_id"]]
    assert edited["exhibit_ref"] == "JS/2" and edited["file"].startswith("media/JS-2/")
    assert verify(newer, *pins(ctx))[0] == 0


def _grant(f, ctx, clip_id: str | None = None, case_id: str | None = None):  # type: ignore[no-untyped-def]
    """A footage grant for aud_white, asked for by one administrator and approved by another."""
    import datetime as dt

    from tests.fixtures.people import approve_pending

    body = {
        "username": "aud_white",
        "reason": "complaint review 7",
        "expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
        "clip_id": clip_id,
        "case_id": case_id,
    }
    r = f.http.post("/api/v1/grants", headers=f.as_("adm_black"), json=body)
    assert r.status_code == 201, r.text
    assert approve_pending(ctx) == 1
    return r.json()["id"]


def test_an_auditor_takes_a_bundle_only_with_footage_access_to_every_exhibit(bundled) -> None:
    """A bundle carries the originals: the auditor who may not play a clip may not take it
    in a ZIP either. The bundle's record (state, hashes) stays readable, as the clip's does."""
    f, ctx, case_id, bundle_id, _ = bundled
    aud = f.as_("aud_white")
    clip_ids = [
        e["clip_id"] for e in f.http.get(f"/api/v1/cases/{case_id}", headers=aud).json()["exhibits"]
    ]
    url = f"/api/v1/bundles/{bundle_id}/download?reason=audit"
    before = ctx.ledger.size()
    assert f.http.get(f"/api/v1/bundles/{bundle_id}", headers=aud).status_code == 200
    r = f.http.get(url, headers=aud)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert f.http.get(url, headers={**aud, "Range": "bytes=0-3"}).status_code == 403
    # A grant for one exhibit is not a grant for the bundle of two.
    _grant(f, ctx, clip_id=clip_ids[0])
    assert f.http.get(url, headers=aud).status_code == 403
    downloads = [json.loads(e) for _, e in ctx.ledger.entries(before, ctx.ledger.size())]
    assert not [e for e in downloads if e["type"] == "bundle.downloaded"], "nothing was taken"
    # A grant for the case covers every exhibit: then the auditor may take it, recorded.
    _grant(f, ctx, case_id=case_id)
    got = f.http.get(url, headers=aud)
    assert got.status_code == 200 and got.content.startswith(b"PK")
    last = json.loads(ctx.ledger.entries(ctx.ledger.size() - 1, ctx.ledger.size())[0][1])
    assert last["type"] == "bundle.downloaded" and last["actor"] == "user:aud_white"


def test_a_garbage_range_is_refused_or_ignored_and_never_stored(bundled) -> None:
    """A 10 KB Range header is a 416 (or, in a unit other than bytes, ignored: 200), never a
    500, and no ledger entry; the client's text never reaches the ledger."""
    f, ctx, _, bundle_id, path = bundled
    url = f"/api/v1/bundles/{bundle_id}/download?reason=audit"
    cps = f.as_("cps_green")
    size = path.stat().st_size
    before = ctx.ledger.size()
    for header in (
        "bytes=" + "9" * 10_000,
        "bytes=" + "1" * 5000 + "-" + "2" * 5000,
        "bytes=" + "x" * 10_000,
        "bytes=-0" + ",0-1" * 2500,
    ):
        r = f.http.get(url, headers={**cps, "Range": header})
        assert r.status_code == 416, (header[:20], r.status_code, r.text[:200])
        assert r.headers["content-range"] == f"bytes */{size}"
        assert len(r.text) < 500, "the problem quotes at most the header's start"
    assert ctx.ledger.size() == before, "a refused range is no download"
    # Positions past any object: to the end of the ZIP, as HTTP says.
    tail = f.http.get(url, headers={**cps, "Range": "bytes=4-" + "9" * 10_000})
    assert tail.status_code == 206 and len(tail.content) == size - 4
    whole = f.http.get(url, headers={**cps, "Range": "x" * 10_000 + "=0-1"})
    assert whole.status_code == 200 and len(whole.content) == size
    stale = f.http.get(url, headers={**cps, "Range": "bytes=0-3", "If-Range": '"' + "0" * 64 + '"'})
    assert stale.status_code == 200 and len(stale.content) == size
    entries = [json.loads(e) for _, e in ctx.ledger.entries(before, ctx.ledger.size())]
    taken = [e for e in entries if e["type"] == "bundle.downloaded"]
    assert len(taken) == 1 and taken[0]["reason"] == "audit", "three requests, one download"
    assert all(len(json.dumps(e)) < 2000 for e in entries)


def test_ten_requests_for_an_unchanged_case_store_one_bundle(bundled) -> None:
    """Each request is recorded, but the same exhibits and options get the bundle already
    made (viewings since change nothing the court receives); a new exhibit reference, other
    options or a failed build make a new one."""
    f, ctx, case_id, bundle_id, _ = bundled
    eo = f.as_("eo_brown")
    clip_id = f.http.get(f"/api/v1/cases/{case_id}", headers=eo).json()["exhibits"][0]["clip_id"]
    url = f"/api/v1/cases/{case_id}/bundles"
    before = ctx.ledger.size()
    for i in range(10):
        f.http.get(
            f"/api/v1/clips/{clip_id}/stream",
            headers=eo,
            params={"reason": f"court preparation: look {i}"},
        )
        r = f.http.post(url, headers=eo, json={"include_proxies": True})
        assert r.status_code == 200, r.text
        assert r.json() == {"id": bundle_id, "state": "ready", "reused": True}
        assert r.headers["location"] == f"/api/v1/bundles/{bundle_id}"
    with ctx.db.session() as s:
        assert s.query(Bundle).filter(Bundle.case_id == case_id).count() == 1
    assert sum(1 for o in ctx.store.list("bundles/")) == 1, "one stored copy of the footage"
    asked = [json.loads(e) for _, e in ctx.ledger.entries(before, ctx.ledger.size())]
    asked = [e for e in asked if e["type"] == "bundle.requested"]
    assert len(asked) == 10 and all(
        e["reused"] and e["subject"]["bundle"] == bundle_id for e in asked
    )

    # Other options: another bundle; asked again while queued, the same queued one.
    other = f.http.post(url, headers=eo, json={})
    assert other.status_code == 202 and not other.json()["reused"]
    again = f.http.post(url, headers=eo, json={})
    assert again.status_code == 200 and again.json()["id"] == other.json()["id"]
    assert again.json()["state"] == "queued"
    # A changed exhibit reference is changed evidence: a new bundle.
    f.http.patch(
        f"/api/v1/cases/{case_id}/items/{clip_id}", headers=eo, json={"exhibit_ref": "JS/9"}
    )
    changed = f.http.post(url, headers=eo, json={"include_proxies": True})
    assert changed.status_code == 202 and changed.json()["id"] != bundle_id
    # A failed build is never handed out again.
    with ctx.db.write_session() as s:
        s.get(Bundle, changed.json()["id"]).state = BundleState.failed.value
    retry = f.http.post(url, headers=eo, json={"include_proxies": True})
    assert retry.status_code == 202 and retry.json()["id"] != changed.json()["id"]
