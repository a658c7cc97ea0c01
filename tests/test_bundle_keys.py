"""Keys a court can pin: the force publishes every bundle-signing key it has used with its
validity period; a rotation keeps the history (in the keys dir and in the ledger), and a
bundle verifies against the key of its time and no other."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from cli.main import app
from evidence.bundles import keys, layout
from evidence.bundles import manifest as mf
from evidence.bundles.service import build_bundle
from tests.conftest import sqlite_only
from tests.fixtures.bundles import read_all, rewrite, verify, with_sums

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md


@pytest.fixture
def cli_env(bundled, monkeypatch: pytest.MonkeyPatch):
    """`evidence admin` pointed at the bundled world's data dir and database."""
    f, ctx, case_id, bundle_id, path = bundled
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("EVIDENCE_DATABASE_URL", ctx.db.url)
    from evidence.config import get_settings

    get_settings.cache_clear()
    yield bundled
    get_settings.cache_clear()


def openssl_key_id(pem: str, tmp_path: Path) -> str:
    """The fingerprint as a court computes it: DER SubjectPublicKeyInfo, SHA-256, by openssl."""
    src = tmp_path / "k.pem"
    src.write_text(pem)
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(src), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    return hashlib.sha256(der).hexdigest()


def new_bundle(f, ctx, case_id: str, path: Path) -> Path:
    """Another bundle of the case (other options, so not the reused one), built and taken."""
    r = f.http.post(
        f"/api/v1/cases/{case_id}/bundles",
        headers=f.as_("eo_brown"),
        json={"include_proxies": False},
    )
    assert r.status_code == 202, r.text
    assert build_bundle(ctx, r.json()["id"]) == "ready"
    got = f.http.get(
        f"/api/v1/bundles/{r.json()['id']}/download",
        headers=f.as_("cps_green"),
        params={"reason": "court preparation"},
    )
    assert got.status_code == 200, got.text
    path.write_bytes(got.content)
    return path


def test_the_published_key_is_the_one_bundles_carry(bundled, tmp_path: Path) -> None:
    f, ctx, _, _, path = bundled
    anonymous = f.http.get("/api/v1/bundles/key")  # no credentials: a court has no account
    assert anonymous.status_code == 200 and anonymous.headers["content-type"].startswith(
        "text/plain"
    )
    carried = read_all(path)[layout.SIGNING_KEY].decode()
    assert anonymous.text == carried
    listed = f.http.get("/api/v1/bundles/keys").json()["keys"]
    assert len(listed) == 1 and listed[0]["public_pem"] == carried
    assert listed[0]["valid_until"] is None and listed[0]["valid_from"]
    assert listed[0]["key_id"] == openssl_key_id(carried, tmp_path)


def test_rotation_keeps_older_bundles_verifiable_against_the_key_of_their_time(
    cli_env, tmp_path: Path
) -> None:
    f, ctx, case_id, _, first = cli_env
    old = f.http.get("/api/v1/bundles/keys").json()["keys"][0]

    rotated = CliRunner().invoke(app, ["admin", "rotate-key", "bundle"])
    assert rotated.exit_code == 0, rotated.output
    assert f"{old['key_id']} -> " in rotated.output and "retired" in rotated.output

    history = f.http.get("/api/v1/bundles/keys").json()["keys"]
    assert [k["key_id"] for k in history][0] == old["key_id"] and len(history) == 2
    assert (
        history[0]["valid_until"] == history[1]["valid_from"] and history[1]["valid_until"] is None
    )
    current = f.http.get("/api/v1/bundles/key").text
    assert history[1]["public_pem"] == current != old["public_pem"]
    # The rotation is in the tamper-evident log too, with both key ids.
    entries = [json.loads(e) for _, e in ctx.ledger.entries(0, ctx.ledger.size())]
    rotation = [e for e in entries if e["type"] == "key.rotated"]
    assert len(rotation) == 1 and rotation[0]["old_key_id"] == old["key_id"]
    assert rotation[0]["new_key_id"] == history[1]["key_id"]
    # The old private key is kept aside (0600), not deleted.
    retired = list((ctx.settings.secrets_dir() / keys.RETIRED_DIR).iterdir())
    assert len(retired) == 1 and retired[0].stat().st_mode & 0o077 == 0
    assert (
        serialization.load_pem_private_key(retired[0].read_bytes(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
        == old["public_pem"]
    )

    second = new_bundle(f, ctx, case_id, tmp_path / "second.zip")
    assert read_all(second)[layout.SIGNING_KEY].decode() == current

    served = tmp_path / "keys.json"
    served.write_text(f.http.get("/api/v1/bundles/keys").text)
    both_pem = tmp_path / "both.pem"
    both_pem.write_text(old["public_pem"] + current)
    only_new = tmp_path / "new.pem"
    only_new.write_text(current)
    ledger = ["--key", ctx.ledger.verifier_key]

    for bundle, key in ((first, history[0]), (second, history[1])):
        code, out = verify(bundle, *ledger, "--bundle-key", str(served))
        assert code == 0, out
        assert f"PASS  bundle signing key pinned: is the published force key {key['key_id']}" in out
        assert f"valid from {key['valid_from']}" in out and "PASS  bundle key validity" in out
        code, out = verify(bundle, *ledger, "--bundle-key", str(both_pem))
        assert code == 0 and key["key_id"] in out, out

    code, out = verify(first, *ledger, "--bundle-key", str(only_new))
    assert code != 0, out
    assert f"(key id {history[0]['key_id']}) is NOT among the 1 pinned bundle key(s)" in out

    # Whoever kept the retired key cannot sign a bundle of a later ledger state with it.
    members = read_all(second)
    old_key = serialization.load_pem_private_key(retired[0].read_bytes(), None)
    pem = old["public_pem"].encode()
    m = json.loads(members[layout.MANIFEST])
    for entry in m["files"]:
        if entry["path"] == layout.SIGNING_KEY:
            entry.update(sha256=hashlib.sha256(pem).hexdigest(), size=len(pem))
    manifest = mf.render_manifest(m)
    late = rewrite(
        second,
        tmp_path / "late.zip",
        with_sums(
            members,
            {
                layout.SIGNING_KEY: pem,
                layout.MANIFEST: manifest,
                layout.SIGNATURE: old_key.sign(manifest),
            },
        ),
    )
    code, out = verify(late, *ledger, "--bundle-key", str(served))
    assert code != 0 and "FAIL  bundle key validity" in out and "a retired key signed it" in out, (
        out
    )


@sqlite_only
def test_a_pinned_key_file_without_a_key_is_named(bundled, tmp_path: Path) -> None:
    _, ctx, _, _, path = bundled
    empty = tmp_path / "empty.pem"
    empty.write_text("not a key\n")
    code, out = verify(path, "--key", ctx.ledger.verifier_key, "--bundle-key", str(empty))
    assert code != 0 and "holds no public key" in out, out


def test_a_rotation_stopped_after_the_key_swap_is_recorded_by_the_next_load(tmp_path: Path) -> None:
    """The new key in place but not yet in the history (the process was killed): whoever
    loads the key next records it, and ends the old one's validity."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    old = keys.public_pem(keys.load_or_create_bundle_key(tmp_path).public_key())
    swapped = Ed25519PrivateKey.generate()
    (tmp_path / keys.KEY_NAME).write_bytes(
        keys._private_pem(swapped)
    )  # as rotate_bundle_key's swap
    new = keys.public_pem(keys.load_or_create_bundle_key(tmp_path).public_key())
    assert new == keys.public_pem(swapped.public_key()) != old
    history = keys.published_keys(tmp_path)
    assert [k["key_id"] for k in history] == [keys.key_id(old), keys.key_id(new)]
    assert (
        history[0]["valid_until"] == history[1]["valid_from"] and history[1]["valid_until"] is None
    )
    assert (tmp_path / keys.PUBLIC_NAME).read_bytes() == new


def test_a_process_still_holding_the_old_key_does_not_reopen_it(tmp_path: Path) -> None:
    """A worker that read the old key just before a rotation records it after: the history
    and the published PEM stay as the rotation left them."""
    old = keys.public_pem(keys.load_or_create_bundle_key(tmp_path).public_key())
    rotation = keys.rotate_bundle_key(tmp_path)
    before = (tmp_path / keys.HISTORY_NAME).read_bytes()
    keys._record_current(tmp_path, old, rotation.at)  # what that worker's load ends with
    assert (tmp_path / keys.HISTORY_NAME).read_bytes() == before
    assert keys.key_id((tmp_path / keys.PUBLIC_NAME).read_bytes()) == rotation.new_key_id
    assert rotation.retired_private_key.exists() and (tmp_path / keys.KEY_NAME).exists()


def test_only_the_bundle_key_rotates_from_the_command_line() -> None:
    """The ledger key is the log's identity: the command refuses and says why, touching nothing."""
    result = CliRunner().invoke(app, ["admin", "rotate-key", "ledger"])
    assert result.exit_code != 0
    assert "cannot rotate 'ledger'" in result.output and "log's identity" in result.output


@sqlite_only
def test_a_manifest_creation_time_must_fall_within_the_key_period(bundled, tmp_path: Path) -> None:
    """Today's manifests carry no build time (rebuilds give the same bytes); one that does is
    checked against the matched key's whole validity period, and a time before the key
    existed is named."""
    f, ctx, _, _, path = bundled
    served = tmp_path / "keys.json"
    served.write_text(f.http.get("/api/v1/bundles/keys").text)
    (key,) = json.loads(served.read_text())["keys"]
    signer = keys.load_or_create_bundle_key(ctx.settings.secrets_dir())  # the force's own key
    members = read_all(path)
    for created, verdict in (
        (
            "2001-01-01T00:00:00.000000Z",
            "FAIL  bundle key validity: made 2001-01-01T00:00:00.000000Z, OUTSIDE",
        ),
        (key["valid_from"], f"PASS  bundle key validity: made {key['valid_from']}, within"),
    ):
        m = json.loads(members[layout.MANIFEST])
        m["created_at"] = created
        manifest = mf.render_manifest(m)
        dated = rewrite(
            path,
            tmp_path / "dated.zip",
            with_sums(
                members, {layout.MANIFEST: manifest, layout.SIGNATURE: signer.sign(manifest)}
            ),
        )
        code, out = verify(dated, "--key", ctx.ledger.verifier_key, "--bundle-key", str(served))
        assert verdict in out and (code == 0) == verdict.startswith("PASS"), out


def test_the_new_key_is_dated_as_the_rotation_whoever_records_it(tmp_path: Path) -> None:
    """Another process may load the new key before the rotating one records it: the key
    file is dated exactly at the rotation, so both would write the same period."""
    keys.load_or_create_bundle_key(tmp_path)
    rotation = keys.rotate_bundle_key(tmp_path)
    assert keys._made_at(tmp_path / keys.KEY_NAME) == rotation.at
    history = keys.published_keys(tmp_path)
    assert history[0]["valid_until"] == history[1]["valid_from"] == rotation.at
