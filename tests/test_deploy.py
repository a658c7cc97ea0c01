"""The production profile's setup: `evidence storage init|check` against a real Ceph RGW, and
the deploy/ files checked against the code so they cannot rot (docker is not run here)."""

from __future__ import annotations

import itertools
import re
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from minio.objectlockconfig import DAYS, GOVERNANCE, ObjectLockConfig
from typer.testing import CliRunner

from cli.main import app
from evidence.config import Settings, get_settings
from evidence.storage.setup import check_storage, failures, init_storage
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.e2e  # a running store: see docs/testing.md

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _bucket() -> str:
    return f"deploy-{uuid.uuid4().hex[:16]}"


def _raw_client(server: S3Server) -> Minio:
    host = server.endpoint.split("://", 1)[1]
    return Minio(host, access_key=server.access_key, secret_key=server.secret_key, secure=False)


def _names(checks: list) -> dict[str, bool]:  # type: ignore[type-arg]
    return {c.name: c.ok for c in checks}


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The CLI reads settings from the environment (cached): clear the cache around a test."""
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def _s3_env(monkeypatch: pytest.MonkeyPatch, server: S3Server, bucket: str, tmp: Path) -> None:
    for name, value in {
        "EVIDENCE_DATA_DIR": str(tmp),
        "EVIDENCE_STORAGE_BACKEND": "s3",
        "EVIDENCE_S3_ENDPOINT": server.endpoint,
        "EVIDENCE_S3_ACCESS_KEY": server.access_key,
        "EVIDENCE_S3_SECRET_KEY": server.secret_key,
        "EVIDENCE_S3_BUCKET": bucket,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


# --- evidence storage init / check on S3 (Ceph RGW) --------------------------------------


@pytest.mark.s3
def test_init_creates_a_locked_versioned_bucket_and_is_idempotent(
    s3_server: S3Server, tmp_path: Path, cli_env: pytest.MonkeyPatch
) -> None:
    bucket = _bucket()
    _s3_env(cli_env, s3_server, bucket, tmp_path)
    first = CliRunner().invoke(app, ["storage", "init"])
    assert first.exit_code == 0, first.output
    assert f"created {bucket!r} with Object Lock" in first.output
    client = _raw_client(s3_server)
    assert client.get_bucket_versioning(bucket).status == "Enabled"
    client.get_object_lock_config(bucket)  # raises if Object Lock is not enabled

    again = CliRunner().invoke(app, ["storage", "init"])
    assert again.exit_code == 0, again.output
    assert "exists already; left as it is" in again.output

    check = CliRunner().invoke(app, ["storage", "check"])
    assert check.exit_code == 0, check.output
    lines = [ln for ln in check.output.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert [ln.split(":")[0] for ln in lines] == [
        "PASS  object lock mode",
        "PASS  bucket exists",
        "PASS  object lock",
        "PASS  versioning",
        "PASS  no default retention",
    ]


@pytest.mark.s3
def test_a_bucket_without_object_lock_is_refused(
    s3_server: S3Server, tmp_path: Path, cli_env: pytest.MonkeyPatch
) -> None:
    bucket = _bucket()
    _raw_client(s3_server).make_bucket(bucket)  # no Object Lock, no versioning
    _s3_env(cli_env, s3_server, bucket, tmp_path)
    for command in ("check", "init"):
        result = CliRunner().invoke(app, ["storage", command])
        assert result.exit_code == 1, result.output
        assert "FAIL  object lock: not enabled" in result.output
        assert f"storage {command} FAILED: object lock: not enabled" in result.output
        assert "FAIL  versioning: never enabled" in result.output
        assert "refuses to run on a bucket without Object Lock" in result.output
        assert "create a new one" in result.output and "evidence retention relock" in result.output


@pytest.mark.s3
def test_check_reports_a_missing_bucket_and_a_default_retention_rule(
    s3_server: S3Server, tmp_path: Path
) -> None:
    missing = s3_server.settings(_bucket(), tmp_path)
    bad = failures(check_storage(missing))
    assert [c.name for c in bad] == ["bucket exists"]
    assert "evidence storage init" in bad[0].detail

    settings = s3_server.settings(_bucket(), tmp_path)
    assert not failures(init_storage(settings))
    _raw_client(s3_server).set_object_lock_config(
        settings.s3_bucket, ObjectLockConfig(GOVERNANCE, 1, DAYS)
    )
    bad = failures(check_storage(settings))
    assert [c.name for c in bad] == ["no default retention"]
    assert "GOVERNANCE 1 Days" in bad[0].detail


def test_check_refuses_an_unknown_lock_mode_and_a_bad_endpoint(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        storage_backend="s3",
        object_lock_mode="strict",
        s3_endpoint="s3.example.org",
    )
    checks = check_storage(settings)
    assert _names(checks) == {"object lock mode": False, "bucket exists": False}
    assert "must look like http(s)://host:port" in checks[1].detail
    assert [c.name for c in failures(init_storage(settings))] == ["object lock mode"]


# --- local backend -------------------------------------------------------------------------


def test_local_check_says_the_store_enforces_retention(
    tmp_path: Path, cli_env: pytest.MonkeyPatch
) -> None:
    cli_env.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "var"))
    cli_env.setenv("EVIDENCE_STORAGE_BACKEND", "local")
    missing = CliRunner().invoke(app, ["storage", "check"])
    assert missing.exit_code == 1 and "evidence storage init" in missing.output

    assert CliRunner().invoke(app, ["storage", "init"]).exit_code == 0
    result = CliRunner().invoke(app, ["storage", "check"])
    assert result.exit_code == 0, result.output
    assert "PASS  retention enforced: by the local store itself" in result.output
    assert "PASS  directory writable" in result.output
    assert list((tmp_path / "var" / "objects").iterdir()), "init made the store's layout"


# --- the deploy files match the code --------------------------------------------------------


def _compose() -> dict:  # type: ignore[type-arg]
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _evidence_commands(service: dict) -> list[list[str]]:  # type: ignore[type-arg]
    """The `evidence` argument lists a compose service runs: its command (the image's
    entrypoint is `evidence`), or each `evidence ...` of an `sh -c` script."""
    command = service.get("command") or []
    if isinstance(command, str):
        command = shlex.split(command)
    if service.get("entrypoint") in (["sh", "-c"], ["/bin/sh", "-c"]):
        parts = [shlex.split(part) for part in re.split(r"&&|;", " ".join(command))]
        assert all(p[:1] == ["evidence"] for p in parts), f"not an evidence command: {parts}"
        return [p[1:] for p in parts]
    assert "entrypoint" not in service, "services run the image's `evidence` entrypoint"
    return [command] if command else []


def _check_cli(where: str, argv: list[str]) -> str:
    """Assert `evidence ARGV` names a real command with real options; returns the command."""
    words = list(itertools.takewhile(lambda w: not w.startswith("-"), argv))
    help_run = CliRunner().invoke(app, [*words, "--help"])
    assert help_run.exit_code == 0, f"{where}: evidence {' '.join(argv)}: {help_run.output}"
    for option in (w.split("=")[0] for w in argv if w.startswith("--")):
        assert option in help_run.output, f"{where}: {option} is not an option of {words}"
    return " ".join(words)


def test_every_compose_command_is_a_real_cli_command() -> None:
    services = _compose()["services"]
    ours = {
        name: s
        for name, s in services.items()
        if "build" in s or "<<" in s or str(s.get("image", "")).startswith("evidence")
    }
    assert {"init", "api", "worker", "beat"} <= set(ours), sorted(services)
    seen = []
    for name, service in ours.items():
        commands = _evidence_commands(service)
        assert commands, f"service {name} runs no evidence command"
        seen += [_check_cli(name, argv) for argv in commands]
    assert {"db upgrade", "storage init", "serve", "worker"} <= set(seen)
    beat = [s for s in ours.values() if "--beat" in s.get("command", [])]
    assert len(beat) == 1 and beat[0].get("deploy", {}).get("replicas", 1) == 1
    assert all(s["volumes"] == ["evidence-keys:/var/lib/evidence/keys"] for s in ours.values())


def test_every_k8s_container_runs_a_real_cli_command() -> None:
    yaml = pytest.importorskip("yaml")
    seen, beats = [], []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] not in ("Deployment", "Job"):
                continue
            pod = doc["spec"]["template"]["spec"]
            for c in pod["containers"]:
                where = f"{path.name}: {c['name']}"
                if c.get("command"):
                    assert c["command"][:2] == ["sh", "-c"], where
                    argvs = [shlex.split(p) for p in re.split(r"&&|;", c["command"][2])]
                    assert all(a[0] == "evidence" for a in argvs), where
                    seen += [_check_cli(where, a[1:]) for a in argvs]
                else:
                    seen.append(_check_cli(where, c["args"]))
                if "--beat" in c.get("args", []):
                    beats.append(doc)
    assert {"db upgrade", "storage init", "serve", "worker"} <= set(seen)
    assert len(beats) == 1
    assert beats[0]["spec"]["replicas"] == 1 and beats[0]["spec"]["strategy"]["type"] == "Recreate"


def test_the_compose_s3_server_is_ceph_rgw_with_the_stores_own_user() -> None:
    services = _compose()["services"]
    assert not [n for n, s in services.items() if "minio" in str(s.get("image", "")).lower()]
    s3 = services["s3"]
    assert s3["image"].startswith("quay.io/ceph/ceph:v")
    mounts = dict(reversed(v.split(":")[:2]) for v in s3["volumes"] if v.startswith("./"))
    assert s3["entrypoint"][0] in mounts
    for inside, outside in mounts.items():
        assert (DEPLOY / outside).is_file(), outside
    # rgw-single-node.sh runs ceph-up.sh and ceph-down.sh from its own directory.
    entry_dir = s3["entrypoint"][0].rsplit("/", 1)[0]
    assert {f"{entry_dir}/ceph-up.sh", f"{entry_dir}/ceph-down.sh"} <= set(mounts)
    # Its S3 user is made from the keys the store itself reads, and init waits for it.
    fields = {f"EVIDENCE_{name.upper()}" for name in Settings.model_fields}
    env = s3["environment"]
    for var, setting in (
        ("RGW_ACCESS_KEY", "EVIDENCE_S3_ACCESS_KEY"),
        ("RGW_SECRET_KEY", "EVIDENCE_S3_SECRET_KEY"),
    ):
        assert env[var].startswith("${" + setting + ":?") and setting in fields
    assert services["init"]["depends_on"]["s3"] == {"condition": "service_healthy"}
    example = (DEPLOY / "evidence.env.example").read_text()
    (endpoint,) = re.findall(r"^EVIDENCE_S3_ENDPOINT=(.*)$", example, flags=re.MULTILINE)
    assert endpoint == f"http://s3:{env['RGW_PORT']}"
    assert f"{env['RGW_PORT']}:{env['RGW_PORT']}" in s3["ports"]


def test_every_env_example_variable_is_a_setting() -> None:
    text = (DEPLOY / "evidence.env.example").read_text()
    names = re.findall(r"^#?\s*(EVIDENCE_[A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert len(names) >= 25, names
    fields = {f"EVIDENCE_{name.upper()}" for name in Settings.model_fields}
    assert sorted(set(names) - fields) == []
    # The settings production needs are all there.
    must = {
        "EVIDENCE_DATABASE_URL",
        "EVIDENCE_STORAGE_BACKEND",
        "EVIDENCE_S3_BUCKET",
        "EVIDENCE_OBJECT_LOCK_MODE",
        "EVIDENCE_BROKER_URL",
        "EVIDENCE_PUBLIC_URL",
        "EVIDENCE_IDENTITY_MODE",
        "EVIDENCE_OIDC_ISSUER",
        "EVIDENCE_TSA_URL",
        "EVIDENCE_RETENTION_RULES",
        "EVIDENCE_SCRUB_RATE_MB_PER_S",
        "EVIDENCE_DATA_DIR",
        "EVIDENCE_METRICS_TOKEN",
    }
    assert must <= set(names)


def test_every_env_example_value_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The values shown, active or commented out, are accepted by Settings as they stand."""
    text = (DEPLOY / "evidence.env.example").read_text()
    values = dict(re.findall(r"^#?\s*(EVIDENCE_[A-Z0-9_]+)=(.*)$", text, flags=re.MULTILINE))
    for name, value in values.items():
        monkeypatch.setenv(name, value[1:-1] if value[:1] == value[-1:] == "'" else value)
    settings = Settings()
    assert settings.storage_backend == "s3" and settings.identity_mode == "oidc"
    assert settings.retention_rules["non-evidential"].auto_dispose
    assert settings.retention_rules["violence"].keep_days is None
    assert "road traffic" in settings.categories
    assert settings.metrics_token is not None, "metrics are served to the scraper's token only"


def test_the_k8s_secrets_to_create_carry_the_metrics_token() -> None:
    """No Secret is shipped (tests/test_deploy_k8s.py); the one to create holds the token."""
    text = (DEPLOY / "k8s" / "config.yaml").read_text()
    (holds,) = re.findall(r"^#   evidence-secrets\s+(.*)$", text, flags=re.MULTILINE)
    assert "EVIDENCE_METRICS_TOKEN" in holds


def test_the_compose_healthcheck_path_exists_in_the_app(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app

    services = _compose()["services"]
    paths = set()
    for service in services.values():
        test = " ".join(map(str, service.get("healthcheck", {}).get("test", [])))
        paths |= set(re.findall(r"http://127\.0\.0\.1:8000(/[a-z/]*)", test))
    assert paths == {"/readyz"}
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200 and answer.json()["status"] == "ok", answer.text


def test_the_dockerfile_installs_ffmpeg_and_runs_as_a_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"apt-get install .*ffmpeg", text, flags=re.DOTALL)
    assert re.search(r"^USER (?!root)\S+", text, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["evidence"]' in text
    assert re.search(r"^RUN pip install --no-deps --no-build-isolation \.( |$)", text, re.M), (
        "the package, no extras, nothing but the locked dependencies"
    )
