"""Issue 11's "done when", end to end, as a force would run it.

A docking station watches a folder where camera storage is mounted. A card laid out the way
real cameras lay theirs out (an Axon Body 3, a Motorola VB400, a generic DCIM camera; no
sidecar files) is mounted there read-only. The store attributes each clip through the camera
register: a personal-issue camera and a pool camera checked out for one shift, to the right
officers, who see their clips in the browser; the clip nothing identifies lands in the
unattributed queue and an evidence officer attributes it with a reason; the ledger verifies;
and the continuity statement names officer and camera for each exhibit and how each was
established, re-attribution included.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.browser import screenshot, sign_in
from tests.fixtures.media import lavfi_inputs
from tests.fixtures.services import free_port, missing, wait_until

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

PERSONAL, POOL = "X6039A1B2", "VB400-0042"
PC_A, PC_B = "4711", "5822"
SHIFT = ("2026-12-01T07:00:00Z", "2026-12-01T19:00:00Z")
LABEL = "BWC-DOCK7"


def _ffmpeg(out: Path, *metadata: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        *lavfi_inputs("320x240", "15", 2),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
    ]
    for m in metadata:
        args += ["-metadata", m]
    subprocess.run([*args, str(out)], check=True)


def camera_card(root: Path) -> dict[str, Path]:
    """The card's files as three vendors write them; no sidecars anywhere."""
    files = {
        "axon": root
        / "Axon Body 3"
        / PERSONAL
        / "2026-12-01"
        / "AXON_Body_3_Video_2026-12-01_0930.mp4",
        "vb400": root / "VB400" / f"{POOL}_20261201_101500.mp4",
        "dcim": root / "DCIM" / "100MEDIA" / "FILE0001.MP4",
    }
    _ffmpeg(files["axon"], "creation_time=2026-12-01T09:30:00Z")
    _ffmpeg(files["vb400"], "creation_time=2026-12-01T10:15:00Z")
    _ffmpeg(files["dcim"])  # nothing identifies it: no tags, a generic name
    return files


@pytest.fixture
def mounted_card(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """An ext4 image holding the card, mounted read-only under the dock's watched root."""
    if shutil.which("mkfs.ext4") is None:
        missing("mkfs.ext4 (e2fsprogs) is not installed")
    staged = tmp_path / "card"
    files = camera_card(staged)
    image = tmp_path / "card.img"
    subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", LABEL, "-d", str(staged), str(image)], check=True)
    root = tmp_path / "media"
    mountpoint = root / "camera1"
    mountpoint.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-o", "loop,ro", str(image), str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        missing(f"cannot loop-mount here: {mounted.stderr.strip()}")
    names = {k: p.name for k, p in files.items()}
    try:
        yield root, image, names
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)


class Store:
    """`evidence up` (the embedded profile) with its own data directory."""

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
        self.env["EVIDENCE_DATA_DIR"] = str(tmp_path / "var")
        self.passwords: dict[str, str] = {}

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def person(self, name: str, role: str, officer_id: str | None = None) -> dict[str, str]:
        extra = ["--officer-id", officer_id] if officer_id else []
        link = (
            self.cli("admin", "create-user", name, "--role", role, *extra)
            .stdout.strip()
            .splitlines()[-1]
        )
        password = f"{name}'s own long password"
        enrolled = httpx.post(
            f"{self.api}/api/v1/auth/enrol",
            json={"token": link.rstrip("/").rsplit("/", 1)[-1], "password": password},
        )
        assert enrolled.status_code == 204, enrolled.text
        self.passwords[name] = password
        token = httpx.post(
            f"{self.api}/api/v1/auth/token", data={"username": name, "password": password}
        ).json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    def get(self, path: str, who: dict[str, str], **params: str) -> httpx.Response:
        return httpx.get(self.api + path, headers=who, params=params, timeout=60)


def _sha256(path: Path) -> str:
    with path.open("rb") as f:  # the whole card image, read in chunks
        return hashlib.file_digest(f, "sha256").hexdigest()


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _sign_in(page, store: Store, name: str) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, store.api, name, store.passwords[name])


def test_a_read_only_multi_vendor_card_is_docked_attributed_seen_and_stated(
    mounted_card, tmp_path: Path, open_page
) -> None:  # noqa: F811
    from playwright.sync_api import expect

    root, image, names = mounted_card
    image_before = _sha256(image)
    store = Store(tmp_path)
    up = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--port", str(store.port)],
        env=store.env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    dock = None
    try:
        wait_until(lambda: _healthy(store.api), 60, "evidence up")
        store.cli(
            "admin", "create-user", "admin1", "--role", "admin", stdin="an admin's password\n"
        )
        key = store.cli("admin", "create-device", "dock-custody-1").stdout.strip().splitlines()[-1]
        eo = store.person("eo_brown", "evidence_officer")
        auditor = store.person("aud_white", "auditor")
        store.person("pc_a", "officer", PC_A)
        store.person("pc_b", "officer", PC_B)
        # The register: a personal issue (open-ended) and a pool camera out for one shift.
        store.cli("admin", "register-camera", PERSONAL, "--make", "Axon", "--model", "Body 3")
        store.cli(
            "admin",
            "assign-camera",
            PERSONAL,
            "--officer-id",
            PC_A,
            "--from",
            "2026-11-01T00:00:00Z",
        )
        store.cli("admin", "register-camera", POOL, "--make", "Motorola", "--model", "VB400")
        store.cli(
            "admin",
            "assign-camera",
            POOL,
            "--officer-id",
            PC_B,
            "--from",
            SHIFT[0],
            "--to",
            SHIFT[1],
        )

        # The docking station runs all day: it notices the card and docks it.
        state = tmp_path / "dock-state"
        dock = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "dock",
                "--watch",
                str(root),
                "--api",
                store.api,
                "--device-key",
                key,
                "--state-dir",
                str(state),
                "--poll",
                "0.5",
                "--settle",
                "1",
            ],
            env=store.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

        def clips() -> list[dict]:
            return store.get("/api/v1/clips", eo, limit="50").json()["items"]

        wait_until(
            lambda: len([c for c in clips() if c["state"] in ("ready", "stored")]) == 3,
            180,
            "the watched card docked and processed",
        )
        os.killpg(dock.pid, signal.SIGTERM)
        report, _ = dock.communicate(timeout=60)
        assert dock.returncode == 0, report
        assert LABEL in report and "3" in report, report
        assert _sha256(image) == image_before, "the card is untouched"
        assert any(state.rglob("*.json")), "the dock kept its state on the docking station"

        # Attribution through the register, with how each was established.
        by_name = {c["filename"]: c for c in clips()}
        axon, vb400, dcim = (by_name[names[k]] for k in ("axon", "vb400", "dcim"))
        detail = {
            k: store.get(f"/api/v1/clips/{c['id']}", eo).json()
            for k, c in (("axon", axon), ("vb400", vb400), ("dcim", dcim))
        }
        assert (detail["axon"]["camera_serial"], detail["axon"]["officer_id"]) == (PERSONAL, PC_A)
        assert "personal issue" in detail["axon"]["officer_how"]
        assert "Axon" in detail["axon"]["camera_how"]
        assert (detail["vb400"]["camera_serial"], detail["vb400"]["officer_id"]) == (POOL, PC_B)
        assert "pool" in detail["vb400"]["officer_how"]
        assert detail["dcim"]["officer_id"] is None
        queue = store.get("/api/v1/clips/unattributed", eo).json()["items"]
        assert [c["id"] for c in queue] == [dcim["id"]]

        # Each officer sees their own clip in the browser, and nothing else.
        for officer, mine, theirs in (("pc_a", axon, vb400), ("pc_b", vb400, axon)):
            page = open_page().page
            _sign_in(page, store, officer)
            page.goto(store.api + "/ui/clips")
            expect(page.locator(f"[data-clip-id='{mine['id']}']").first).to_be_visible()
            assert page.locator(f"[data-clip-id='{theirs['id']}']").count() == 0
            assert page.locator(f"[data-clip-id='{dcim['id']}']").count() == 0

        # The evidence officer works through the unattributed queue in the browser.
        page = open_page().page
        _sign_in(page, store, "eo_brown")
        page.goto(store.api + "/ui/clips/unattributed")
        row = page.locator(f"[data-clip-id='{dcim['id']}']")
        expect(row).to_be_visible()
        row.get_by_role("link").first.click()
        page.fill("#attr-officer", PC_A)
        page.fill("#attr-reason", "PC 4711 confirms this is her spare camera, pocketbook p.12")
        page.get_by_role("button", name="Attribute").click()
        expect(page.locator(".flash--ok")).to_be_visible()
        expect(page.locator("#attribution")).to_contain_text("pocketbook p.12")
        screenshot(page, "camera-custody-attributed.png")
        assert store.get("/api/v1/clips/unattributed", eo).json()["items"] == []
        page = open_page().page
        _sign_in(page, store, "pc_a")
        page.goto(store.api + "/ui/clips")
        expect(page.locator(f"[data-clip-id='{dcim['id']}']").first).to_be_visible()

        # The ledger verifies, as anyone can check it.
        verify = subprocess.run(
            [sys.executable, "-m", "cli", "verify", "ledger", "--api", store.api],
            env={**store.env, "EVIDENCE_TOKEN": auditor["Authorization"].split()[1]},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr

        # The statement names officer and camera, how each was established, and the change.
        statement = _statement(store, eo, [axon["id"], vb400["id"], dcim["id"]], tmp_path)
        for needed in (
            PERSONAL,
            POOL,
            f"officer {PC_A}",
            f"officer {PC_B}",
            "personal issue",
            "pool",
            "pocketbook p.12",
            "Re-attributed",
            names["axon"],
        ):
            assert needed in statement, needed
        assert "None" not in statement
    finally:
        if dock is not None and dock.poll() is None:
            os.killpg(dock.pid, signal.SIGKILL)
        os.killpg(up.pid, signal.SIGTERM)
        up.communicate(timeout=60)


def _statement(store: Store, eo: dict[str, str], clip_ids: list[str], tmp_path: Path) -> str:
    """A case of the three, its bundle built by the embedded worker; the statement's text
    (the PDF's, through pdftotext when it is installed, and the HTML's)."""
    case = httpx.post(
        f"{store.api}/api/v1/cases",
        headers=eo,
        json={"title": "R v Custody", "reference": "URN-CAM-1"},
    ).json()
    assert (
        httpx.post(
            f"{store.api}/api/v1/cases/{case['id']}/items", headers=eo, json={"clip_ids": clip_ids}
        ).status_code
        == 200
    )
    bundle = httpx.post(
        f"{store.api}/api/v1/cases/{case['id']}/bundles", headers=eo, json={}
    ).json()
    wait_until(
        lambda: store.get(f"/api/v1/bundles/{bundle['id']}", eo).json()["state"] == "ready",
        120,
        "the bundle",
    )
    got = store.get(f"/api/v1/bundles/{bundle['id']}/download", eo, reason="court preparation")
    assert got.status_code == 200, got.text
    path = tmp_path / "bundle.zip"
    path.write_bytes(got.content)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        html = zf.read(next(n for n in names if n.endswith(".html"))).decode()
        pdf = zf.read(next(n for n in names if n.endswith(".pdf")))
        manifest = json.loads(zf.read("manifest.json"))
    assert {e["camera_serial"] for e in manifest["exhibits"]} >= {PERSONAL, POOL}
    text = html
    if shutil.which("pdftotext"):
        (tmp_path / "statement.pdf").write_bytes(pdf)
        text += subprocess.run(
            ["pdftotext", "-layout", str(tmp_path / "statement.pdf"), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "60",
                "-f",
                "1",
                "-l",
                "3",
                str(tmp_path / "statement.pdf"),
                str(artifacts / "camera-custody-statement"),
            ],
            check=True,
        )
    return text
