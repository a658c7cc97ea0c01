"""The restore drill of docs/backup.md, for real: ingest a clip, save the checkpoint, back up
with the documented commands (sqlite3, cp -a, tar | gpg), wipe the data directory, restore
with the documented commands, and prove with `evidence verify ledger --checkpoint` and
`evidence scrub`, run as the operator would run them. Then what the proof catches: an object
altered in the backup, and a database restored from a backup older than the saved checkpoint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from evidence.accounts.service import create_device, create_user
from evidence.config import Settings
from evidence.context import Context
from evidence.db import database_for
from evidence.ingest.service import process_upload
from evidence.migrate import upgrade
from tests.fixtures.api import running_api
from tests.fixtures.ingest import Dock
from tests.fixtures.media import Clip as ClipFile

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

PASSPHRASE = "drill passphrase kept somewhere else"


def sh(command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one documented shell command exactly as written in docs/backup.md."""
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def evidence(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The `evidence` command in a fresh process, configured only by EVIDENCE_DATA_DIR."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env["EVIDENCE_DATA_DIR"] = str(cwd / "var")
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(autouse=True)
def _stop_gpg_agents(tmp_path: Path) -> Iterator[None]:
    """gpg starts an agent per home directory that outlives the command; stop each one this
    test started, so that no test leaves a process behind."""
    yield
    for home in tmp_path.rglob("gnupg"):
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30
        )


def gpg_env(root: Path) -> dict[str, str]:
    home = root / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    (root / "passphrase").write_text(PASSPHRASE)
    return {**os.environ, "GNUPGHOME": str(home)}


GPG = "gpg --batch --pinentry-mode loopback --passphrase-file ../passphrase"


def back_up(site: Path) -> None:
    """docs/backup.md "Back up", steps 2-4 (step 1, the checkpoint, is the caller's)."""
    sh("mkdir -p backup", site)
    sh("sqlite3 var/evidence.db \".backup 'backup/evidence.db'\"", site)
    sh("cp -a var/objects backup/", site)
    sh(
        f"tar -C var -cf - keys | {GPG} --symmetric --cipher-algo AES256 -o backup/keys.tar.gpg",
        site,
        gpg_env(site.parent),
    )


def restore(site: Path) -> None:
    """docs/backup.md "Restore", embedded profile, into an empty data directory."""
    sh("mkdir -p var", site)
    sh(f"{GPG} -d backup/keys.tar.gpg | tar -C var -xf -", site, gpg_env(site.parent))
    sh("sqlite3 var/evidence.db \".restore 'backup/evidence.db'\"", site)
    sh("cp -a backup/objects var/", site)


@dataclass
class Drill:
    site: Path  # the working directory: var/ (the data), backup/, checkpoints
    clip_sha256: str
    clip_id: str
    derived: list[str]


def db_url(site: Path) -> str:
    """The embedded profile's database: `sqlite:///{data dir}/evidence.db`."""
    return f"sqlite:///{(site / 'var').resolve()}/evidence.db"


def wipe(site: Path, url: str) -> None:
    """Lose the data directory, as a dead disk would (closing our own handles on it first)."""
    database_for(url).dispose()
    database_for.cache_clear()
    shutil.rmtree(site / "var")
    assert not (site / "var").exists()


@pytest.fixture(scope="module")
def drill_made(tmp_path_factory: pytest.TempPathFactory, clip_mov: ClipFile) -> Drill:
    """The drill up to its backup, made once for the module: a clip ingested and processed,
    the checkpoint saved, the backup taken with the documented commands. Each test works on
    its own copy (`drill`), so what one test wipes or alters no other test sees."""
    root = tmp_path_factory.mktemp("drill")
    site = root / "site"
    site.mkdir()
    url = db_url(site)
    settings = Settings(data_dir=site / "var", database_url=url, storage_backend="local")
    upgrade(url)
    ctx = Context(settings)
    key = create_device(ctx, None, "dock-1").key
    create_user(ctx, "audrey", "auditor", "correct horse battery staple")
    with running_api(settings) as api:
        http = httpx.Client(base_url=api, timeout=30)
        done = Dock(http, key).dock(clip_mov)
        assert process_upload(ctx, done["id"]) == "stored"
        # Step 1: the checkpoint, saved apart from the backup, before the dump.
        checkpoint = http.get("/api/v1/ledger/checkpoint")
        assert checkpoint.status_code == 200
        (site / "saved-checkpoint.txt").write_text(checkpoint.text)
        http.close()
    derived = sorted(
        str(p.relative_to(site / "var" / "objects"))
        for p in (site / "var" / "objects" / "derived").rglob("*")
        if p.is_file()
    )
    assert len(derived) == 2  # proxy and thumbnail
    back_up(site)
    # Closed before any copy is taken: the copies are of a database nobody has open.
    database_for(url).dispose()
    database_for.cache_clear()
    subprocess.run(
        ["gpgconf", "--homedir", str(root / "gnupg"), "--kill", "all"],
        capture_output=True,
        timeout=30,
    )
    return Drill(site, clip_mov.sha256, done["clip_id"], derived)


@pytest.fixture
def drill(tmp_path: Path, drill_made: Drill) -> Iterator[Drill]:
    """A private copy of the drill's site (var/, backup/, the saved checkpoint)."""
    site = tmp_path / "site"
    shutil.copytree(drill_made.site, site, symlinks=True)
    yield Drill(site, drill_made.clip_sha256, drill_made.clip_id, drill_made.derived)
    database_for(db_url(site)).dispose()
    database_for.cache_clear()


def test_backup_wipe_restore_and_prove(drill: Drill) -> None:
    site = drill.site
    wipe(site, db_url(site))
    restore(site)
    assert (site / "var" / "keys" / "ledger.key").stat().st_mode & 0o777 == 0o600

    url = db_url(site)
    verified = evidence(
        ["verify", "ledger", "--db", url, "--checkpoint", "saved-checkpoint.txt"], site
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK: the ledger verifies" in verified.stdout
    assert "saved checkpoint signature" in verified.stdout

    scrubbed = evidence(["scrub"], site)
    assert scrubbed.returncode == 0, scrubbed.stdout + scrubbed.stderr
    assert "checked 3 objects" in scrubbed.stdout and "0 failures" in scrubbed.stdout
    assert "OK: every stored object matches its recorded SHA-256" in scrubbed.stdout
    assert "scrubbed 3/3 objects" in scrubbed.stderr
    # The restored original is the docked clip, byte for byte.
    original = site / "var" / "objects" / "originals" / drill.clip_sha256
    assert shutil.which("sha256sum")
    assert sh(f"sha256sum {original}", site).stdout.split()[0] == drill.clip_sha256


def test_an_object_altered_in_the_backup_is_named_by_the_scrub(drill: Drill) -> None:
    site = drill.site
    proxy = next(k for k in drill.derived if "/proxy" in k)
    altered = site / "backup" / "objects" / proxy
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    altered.chmod(0o644)
    altered.write_bytes(bytes(data))
    wipe(site, db_url(site))
    restore(site)
    url = db_url(site)
    verified = evidence(
        ["verify", "ledger", "--db", url, "--checkpoint", "saved-checkpoint.txt"], site
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr  # the ledger is intact
    scrubbed = evidence(["scrub"], site)
    assert scrubbed.returncode == 1, scrubbed.stdout + scrubbed.stderr
    assert f"FAILED {proxy}: clip {drill.clip_id}: mismatch" in scrubbed.stdout
    assert "restore the object from backup: docs/backup.md" in scrubbed.stderr


def test_a_database_older_than_the_saved_checkpoint_fails_verification(drill: Drill) -> None:
    site = drill.site
    # Life goes on after the backup: more entries, and a newer checkpoint saved.
    url = db_url(site)
    ctx = Context(Settings(data_dir=site / "var", database_url=url, storage_backend="local"))
    for n in range(3):
        create_user(ctx, f"late{n}", "officer", "correct horse battery staple")
    size = ctx.ledger.size()
    (site / "newer-checkpoint.txt").write_text(ctx.ledger.latest_checkpoint())
    # The disk dies; the only backup is the older one.
    wipe(site, url)
    restore(site)
    verified = evidence(
        ["verify", "ledger", "--db", url, "--checkpoint", "newer-checkpoint.txt"], site
    )
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "log only grew" in verified.stdout + verified.stderr
    assert f"the saved checkpoint has {size} entries" in verified.stdout + verified.stderr
    # The older checkpoint still verifies: it says exactly which backup this is.
    ok = evidence(["verify", "ledger", "--db", url, "--checkpoint", "saved-checkpoint.txt"], site)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_postgres_dump_and_restore_proves_the_ledger(tmp_path: Path, postgres_server) -> None:
    """The production database half: pg_dump -Fc, a new database, pg_restore, verify."""
    source = postgres_server.create_database()
    upgrade(source)
    settings = Settings(data_dir=tmp_path / "var", database_url=source, storage_backend="local")
    ctx = Context(settings)
    for n in range(3):
        create_user(ctx, f"user{n}", "officer", "correct horse battery staple")
    (tmp_path / "saved-checkpoint.txt").write_text(ctx.ledger.latest_checkpoint())
    plain = source.replace("+psycopg", "")
    sh("mkdir -p backup", tmp_path)
    sh(f"pg_dump -Fc --no-owner -f backup/evidence.dump '{plain}'", tmp_path)
    target = postgres_server.create_database()  # new and empty, as `createdb` makes it
    sh(
        f"pg_restore --no-owner --exit-on-error -d '{target.replace('+psycopg', '')}' "
        "backup/evidence.dump",
        tmp_path,
    )
    # EVIDENCE_DATA_DIR=var: the verifier pins var/keys/ledger.pub.
    verified = evidence(
        [
            "verify",
            "ledger",
            "--db",
            target.replace("+psycopg", ""),
            "--checkpoint",
            "saved-checkpoint.txt",
        ],
        tmp_path,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK: the ledger verifies" in verified.stdout
    # The append-only triggers came back with the dump.
    restored = Context(settings.model_copy(update={"database_url": target}))
    with pytest.raises(DBAPIError, match="append-only"), restored.db.write_session() as s:
        s.execute(text("DELETE FROM ledger_entries"))
