"""VERIFY.txt is a complete recipe: every command it gives, run exactly as written in an
unzipped bundle with standard tools only (a plain shell, coreutils, xxd, openssl, the
system's python3; no project code on the path), passes; and each check does catch damage."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from evidence.bundles import layout
from tests.fixtures.bundles import unzip

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

# No project code: the system's tools only, and no PYTHONPATH.
PLAIN = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8"}


def recipe(folder: Path) -> list[str]:
    """The commands of VERIFY.txt ("$ " lines), less the evidence store's own verifier."""
    lines = (folder / "VERIFY.txt").read_text(encoding="utf-8").splitlines()
    commands = [line.strip()[2:] for line in lines if line.strip().startswith("$ ")]
    return [c for c in commands if not c.startswith("evidence ")]


def run(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=folder, env=PLAIN, capture_output=True, text=True
    )


def test_every_command_of_verify_txt_passes_with_standard_tools(bundled, tmp_path: Path) -> None:
    f, ctx, _, _, path = bundled
    folder = unzip(path, tmp_path / "bundle")
    commands = recipe(folder)
    for expected in (
        "sha256sum -c SHA256SUMS",
        "openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin -in manifest.json "
        "-sigfile manifest.json.sig",
        "openssl pkeyutl -verify -pubin -inkey ledger-key.pem -rawin -in checkpoint.body "
        "-sigfile checkpoint.sig",
        "python3 verify_proofs.py",
    ):
        assert expected in commands, (expected, commands)
    outputs = {}
    for command in commands:
        done = run(command, folder)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        outputs[command] = done.stdout
    assert outputs[commands[1]].strip() == "Signature Verified Successfully"
    fingerprint = outputs[
        "openssl pkey -pubin -in signing-key.pem -outform DER | sha256sum"
    ].split()[0]
    assert fingerprint == f.http.get("/api/v1/bundles/keys").json()["keys"][0]["key_id"]
    cut = (folder / "checkpoint.body").read_text()
    assert cut == ctx.ledger.checkpoint_covering(int(cut.split("\n")[1])).split("\n\n")[0] + "\n"
    proofs = outputs["python3 verify_proofs.py"].splitlines()
    entries = (folder / layout.ENTRIES).read_text().splitlines()
    assert len(proofs) == len(entries) + 1 and all(p.startswith("OK") for p in proofs)
    assert proofs[-1].startswith(f"OK: all {len(entries)} entries are included")


def test_the_recipe_catches_a_changed_entry_and_a_changed_checkpoint(
    bundled, tmp_path: Path
) -> None:
    _, _, _, _, path = bundled
    folder = unzip(path, tmp_path / "bundle")
    commands = recipe(folder)
    entries = (folder / layout.ENTRIES).read_text().splitlines()
    row = json.loads(entries[1])
    entry = json.loads(base64.b64decode(row["entry"]))
    entry["actor"] = "user:someone_else"  # a rewritten history, its old proof kept
    row["entry"] = base64.b64encode(json.dumps(entry).encode()).decode()
    entries[1] = json.dumps(row, sort_keys=True)
    (folder / layout.ENTRIES).write_text("\n".join(entries) + "\n")
    done = run("python3 verify_proofs.py", folder)
    assert done.returncode == 1, done.stdout
    assert f"FAIL  entry {row['index']}: its proof leads to another root" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("FAILED: 1 of ")

    # A checkpoint claiming another size no longer carries the ledger key's signature.
    note = (folder / layout.CHECKPOINT).read_text().split("\n")
    note[1] = str(int(note[1]) + 1)
    (folder / layout.CHECKPOINT).write_text("\n".join(note))
    results = {c: run(c, folder) for c in commands if "checkpoint" in c or "ledger-key" in c}
    check = results[
        "openssl pkeyutl -verify -pubin -inkey ledger-key.pem -rawin -in checkpoint.body "
        "-sigfile checkpoint.sig"
    ]
    assert check.returncode != 0 and "Signature Verification Failure" in check.stdout + check.stderr
