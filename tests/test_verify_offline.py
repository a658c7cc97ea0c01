"""The offline verifier is offline: importing it loads no database, web, queue or settings
code, so a court expert can run it with cryptography and these few modules (docs/architecture.md).

Each check runs in a fresh interpreter: this test process has long since imported everything.
The layer contracts in pyproject.toml ([tool.importlinter], `lint-imports`) say the same
statically, for imports inside functions too; this test checks what really loads.
`verify_alone` checks a real bundle with nothing of the store but ALLOWED_OWN's files
(tests/test_bundles.py, the bundle with a timestamp token).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

VERIFIER = ("evidence.verify.bundle", "evidence.verify.ledger")
# What checking a bundle's RFC 3161 token adds (imported only for a bundle that carries one).
TOKEN_CHECK = "evidence.ledger.rfc3161"

# Nothing of the server: its database, web framework, task queue, settings or storage.
FORBIDDEN = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "fastapi",
    "starlette",
    "uvicorn",
    "celery",
    "kombu",
    "redis",
    "pydantic",
    "pydantic_settings",
    "typer",
    "httpx",  # only `ApiSource` (the ledger read over HTTP) needs it, and imports it itself
    "minio",
    "reportlab",
    "api",
    "workers",
)

# The whole of the store's own code the verifier may load: the modules a court expert installs.
ALLOWED_OWN = {
    "evidence",
    "evidence.errors",
    "evidence.bundles",
    "evidence.bundles.layout",
    "evidence.bundles.verify_proofs",
    "evidence.ledger",
    "evidence.ledger.chain",
    "evidence.ledger.merkle",
    "evidence.ledger.note",
    "evidence.ledger.rfc3161",
    "evidence.verify",
    "evidence.verify.bundle",
    "evidence.verify.ledger",
    "evidence.verify.report",
}

PROBE = """
import json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    __import__(name)
import evidence
print(json.dumps({
    "file": evidence.__file__,
    "loaded": sorted(set(sys.modules) - before),
    "total": len(sys.modules),
}))
"""


def _load(*modules: str) -> dict[str, object]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert Path(str(result["file"])).resolve().is_relative_to(ROOT), result["file"]
    return result


def _forbidden(loaded: list[str]) -> list[str]:
    """The forbidden packages among `loaded`, by top-level name."""
    return sorted({m.split(".")[0] for m in loaded} & set(FORBIDDEN))


@pytest.mark.parametrize(
    "modules", [VERIFIER, (*VERIFIER, TOKEN_CHECK)], ids=["verifier", "with-token-check"]
)
def test_importing_the_verifier_loads_nothing_of_the_server(modules: tuple[str, ...]) -> None:
    result = _load(*modules)
    loaded = list(result["loaded"])  # type: ignore[call-overload]
    print(f"import {', '.join(modules)}: {len(loaded)} new modules, {result['total']} in all")
    assert _forbidden(loaded) == []
    own = {m for m in loaded if m == "evidence" or m.startswith("evidence.")}
    assert own <= ALLOWED_OWN, sorted(own - ALLOWED_OWN)
    if TOKEN_CHECK not in modules:  # rfc3161-client only when a bundle carries a token
        assert TOKEN_CHECK not in own and "rfc3161_client" not in {m.split(".")[0] for m in loaded}


ALONE = """
import json, sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
args = json.loads(sys.argv[2])
from evidence.verify.bundle import verify_bundle
from evidence.verify.report import Report

report = verify_bundle(
    Path(args["bundle"]),
    Report(),
    ledger_key=args["key"],
    bundle_key_pem=Path(args["bundle_key"]).read_bytes(),
    tsa_ca_pem=Path(args["tsa_ca"]).read_bytes() if args["tsa_ca"] else None,
)
import evidence
print(json.dumps({
    "file": evidence.__file__,
    "ok": report.ok,
    "lines": [c.line() for c in report.checks],
    "loaded": sorted(sys.modules),
}))
"""


def install_alone(to: Path) -> Path:
    """ALLOWED_OWN's files, and no other file of the store, under `to`: a court expert's copy."""
    for name in ALLOWED_OWN:
        src = ROOT.joinpath(*name.split("."))
        src = src / "__init__.py" if src.is_dir() else src.with_suffix(".py")
        dst = to / src.relative_to(ROOT)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    return to


def verify_alone(
    bundle: Path, where: Path, *, key: str, bundle_key: Path, tsa_ca: Path | None = None
) -> list[str]:
    """Verify `bundle` in a fresh, isolated interpreter that has only the verifier's modules of
    the store (its third-party packages are there, and must stay unloaded); the report's lines.
    Fails if the bundle does not verify or the verifier loaded anything of the server."""
    court = install_alone(where)
    args = {"bundle": str(bundle), "key": key, "bundle_key": str(bundle_key)}
    args["tsa_ca"] = str(tsa_ca) if tsa_ca else None
    done = subprocess.run(
        [sys.executable, "-I", "-c", ALONE, str(court), json.dumps(args)],
        cwd=court,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert Path(result["file"]).resolve().is_relative_to(court.resolve()), result["file"]
    assert result["ok"], result["lines"]
    assert _forbidden(result["loaded"]) == []
    own = {m for m in result["loaded"] if m == "evidence" or m.startswith("evidence.")}
    assert own <= ALLOWED_OWN, sorted(own - ALLOWED_OWN)
    return result["lines"]
