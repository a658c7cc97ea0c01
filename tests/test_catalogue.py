"""The one catalogue of ledger entry types (evidence/ledger/catalogue.py): every entry the
code writes is listed, with a reader's label, and every reader groups entries by it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from evidence.ledger import catalogue
from evidence.ledger.catalogue import CATALOGUE, Kind

REPO = Path(__file__).resolve().parents[1]
WRITERS = ("append", "append_in")


def written_types() -> dict[str, set[str]]:
    """Every literal entry type passed to the ledger's append/append_in in the code, and
    the constants modules name them by (e.g. redactions.REQUESTED), with where."""
    found: dict[str, set[str]] = {}
    for root in ("evidence", "api", "workers", "evidence_dock"):
        for path in (REPO / root).rglob("*.py") if (REPO / root).exists() else ():
            tree = ast.parse(path.read_text(), str(path))
            constants = {
                t.id: node.value.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Assign)
                for t in node.targets
                if isinstance(t, ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            }
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in WRITERS
                ):
                    continue
                for arg in node.args[:2]:  # append(type, ...) or append_in(session, type, ...)
                    for value in _strings(arg, constants):
                        if "." in value and " " not in value and "<" not in value:
                            found.setdefault(value, set()).add(str(path.relative_to(REPO)))
    return found


def _strings(arg: ast.expr, constants: dict[str, str]) -> list[str]:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.Name) and arg.id in constants:
        return [constants[arg.id]]
    if isinstance(arg, ast.IfExp):  # "approval.approved" if approve else "approval.refused"
        return _strings(arg.body, constants) + _strings(arg.orelse, constants)
    return []


def test_every_entry_the_code_writes_is_in_the_catalogue() -> None:
    written = written_types()
    assert len(written) >= 40, sorted(written)  # the walk found the writers
    unknown = {t: sorted(where) for t, where in written.items() if t not in CATALOGUE}
    assert not unknown, f"add these to evidence/ledger/catalogue.py: {unknown}"
    for expected in (
        "clip.ingested",
        "approval.refused",
        "redaction.requested",
        "bundle.downloaded",
    ):
        assert expected in written


def test_each_type_has_its_own_readable_label() -> None:
    labels = [t.label for t in CATALOGUE.values()]
    assert len(labels) == len(set(labels)), "two types read the same"
    for t in CATALOGUE.values():
        assert t.label and t.label[0].isupper() and "." not in t.label.split()[0], t
    assert catalogue.label("clip.downloaded") == "Original downloaded"
    assert catalogue.label("a.type_from_a_newer_store") == "a.type_from_a_newer_store"


def test_readers_group_by_the_catalogue() -> None:
    """The statement's accesses, the access log and the alerts take their types from it."""
    from evidence import audit
    from evidence.accounts.alerts import ALERT_TYPES
    from evidence.bundles.manifest import ACCESS_TYPES

    assert set(ACCESS_TYPES) == {t for t, e in CATALOGUE.items() if e.kind == Kind.access}
    assert "clip.thumbnail_viewed" in ACCESS_TYPES, "a thumbnail shown is an access, not custody"
    assert "clip.original_downloaded" not in CATALOGUE, "never written"
    assert set(ACCESS_TYPES) <= set(audit.ACCESS_TYPES)
    for privileged in (
        "user.created",
        "device.created",
        "grant.created",
        "hold.placed",
        "disposal.approved",
        "audit.log_read",
    ):
        assert privileged in audit.ACCESS_TYPES
    assert set(ALERT_TYPES) <= set(CATALOGUE)
    with pytest.raises(LookupError, match="upload.created"):
        catalogue.require_listed(("upload.created",))
