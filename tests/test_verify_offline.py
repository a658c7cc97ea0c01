"""The offline verifier is offline: importing it loads no database, web, queue or settings
code, so a court expert can run it with cryptography and these few modules (docs/architecture.md).

Each check runs in a fresh interpreter: this test process has long since imported everything.
The layer contracts in pyproject.toml ([tool.importlinter], `lint-imports`) say the same
statically, for imports inside functions too; this test checks what really loads.
`verify_alone` (tests/fixtures/verifier.py) checks a real bundle with nothing of the store
but ALLOWED_OWN's files (tests/test_bundles.py, the bundle with a timestamp token).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.verifier import ALLOWED_OWN, ROOT, forbidden

VERIFIER = ("evidence.verify.bundle", "evidence.verify.ledger")
# What checking a bundle's RFC 3161 token adds (imported only for a bundle that carries one).
TOKEN_CHECK = "evidence.ledger.rfc3161"

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


@pytest.mark.parametrize(
    "modules", [VERIFIER, (*VERIFIER, TOKEN_CHECK)], ids=["verifier", "with-token-check"]
)
def test_importing_the_verifier_loads_nothing_of_the_server(modules: tuple[str, ...]) -> None:
    result = _load(*modules)
    loaded = list(result["loaded"])  # type: ignore[call-overload]
    print(f"import {', '.join(modules)}: {len(loaded)} new modules, {result['total']} in all")
    assert forbidden(loaded) == []
    own = {m for m in loaded if m == "evidence" or m.startswith("evidence.")}
    assert own <= ALLOWED_OWN, sorted(own - ALLOWED_OWN)
    if TOKEN_CHECK not in modules:  # rfc3161-client only when a bundle carries a token
        assert TOKEN_CHECK not in own and "rfc3161_client" not in {m.split(".")[0] for m in loaded}
