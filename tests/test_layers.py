"""The layers (docs/architecture.md): the core, evidence/, imports none of the outer
packages (api, workers, cli), not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "evidence"
OUTER = {"api", "workers", "cli"}


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_core_imports_no_outer_package() -> None:
    found = {
        f"{path.relative_to(CORE.parent)}: {name}"
        for path in CORE.rglob("*.py")
        for name in _imported(ast.parse(path.read_text(), str(path)))
        if name.split(".")[0] in OUTER
    }
    assert not found, sorted(found)
