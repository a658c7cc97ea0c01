"""`evidence verify ledger` catches edits, deletions, reordering and truncation done
behind the database's back, and names the first bad entry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from evidence.accounts.service import create_user
from evidence.context import Context
from evidence.ledger import merkle
from evidence.verify.ledger import ApiSource, verify_ledger
from evidence.verify.ledger_db import DatabaseSource
from evidence.verify.report import Report
from tests.fixtures.api import running_api
from tests.fixtures.people import PASSWORD, login

N = 20


@pytest.fixture
def filled(ctx: Context) -> Context:
    for i in range(N):
        ctx.ledger.append("test.event", actor="user:tester", subject={"clip": f"c{i}"}, n=i)
    return ctx


def run_verify(ctx: Context, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["verify", "ledger", "--db", ctx.db.url, "--key", ctx.ledger.verifier_key, *extra]
    )
    return result.exit_code, result.output


def behind_the_back(ctx: Context, *statements: str, params: dict | None = None) -> None:
    """Disable the append-only triggers, as an attacker with database access could."""
    with ctx.db.engine.begin() as conn:
        if ctx.db.dialect == "postgresql":
            for t in ("ledger_entries", "ledger_refs", "ledger_nodes", "checkpoints"):
                conn.execute(text(f"ALTER TABLE {t} DISABLE TRIGGER USER"))
        else:
            for t in ("ledger_entries", "ledger_refs", "ledger_nodes", "checkpoints"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {t}_no_update"))
                conn.execute(text(f"DROP TRIGGER IF EXISTS {t}_no_delete"))
        for sql in statements:
            conn.execute(text(sql), params or {})


def test_untouched_ledger_verifies(filled: Context) -> None:
    code, out = run_verify(filled)
    assert code == 0, out
    assert f"{N} entries read" in out and "OK: the ledger verifies" in out


def test_edited_entry_is_named(filled: Context) -> None:
    behind_the_back(
        filled,
        "UPDATE ledger_entries SET entry = :e WHERE idx = 7",
        params={"e": b'{"type":"forged"}'},
    )
    code, out = run_verify(filled)
    assert code == 1
    assert "entry 7: its bytes do not hash to the stored leaf hash" in out


def test_edit_with_every_hash_recomputed_is_pinpointed_by_signed_checkpoints(
    filled: Context,
) -> None:
    """The attacker rewrites entry 11 and recomputes leaf, chain and tree columns after it.

    Only the signatures they cannot forge are left to catch it."""
    rows = filled.ledger.entries(0, N)
    forged = [e if i != 11 else e.replace(b'"n":11', b'"n":99') for i, e in rows]
    stmts, params = [], {}
    chain = bytes(32)
    tree = merkle.InMemoryTree()
    for i, e in enumerate(forged):
        leaf = merkle.leaf_hash(e)
        chain = hashlib.sha256(chain + leaf).digest()
        tree.append(leaf)
        stmts.append(
            f"UPDATE ledger_entries SET entry = :e{i}, leaf_hash = :l{i}, "
            f"chain_hash = :c{i} WHERE idx = {i}"
        )
        params.update({f"e{i}": e, f"l{i}": leaf, f"c{i}": chain})
    for (level, pos), h in tree.nodes().items():
        if level > 0:
            stmts.append(
                f"UPDATE ledger_nodes SET hash = :n{level}_{pos} "
                f"WHERE level = {level} AND position = {pos}"
            )
            params[f"n{level}_{pos}"] = h
    behind_the_back(filled, *stmts, params=params)
    code, out = run_verify(filled)
    assert code == 1
    assert f"root at size {N}" in out
    assert "first bad entry: entry 11 differs from what was signed" in out


def test_deleted_entry_is_named(filled: Context) -> None:
    behind_the_back(
        filled, "DELETE FROM ledger_refs WHERE idx = 5", "DELETE FROM ledger_entries WHERE idx = 5"
    )
    code, out = run_verify(filled)
    assert code == 1
    assert "entry 5 is missing" in out


def test_reordered_entries_are_named(filled: Context) -> None:
    behind_the_back(
        filled,
        "DELETE FROM ledger_refs WHERE idx IN (3, 4)",
        "UPDATE ledger_entries SET idx = 1000 WHERE idx = 3",
        "UPDATE ledger_entries SET idx = 3 WHERE idx = 4",
        "UPDATE ledger_entries SET idx = 4 WHERE idx = 1000",
    )
    code, out = run_verify(filled)
    assert code == 1
    assert "entry 3: chain hash breaks here" in out


def test_truncated_tail_is_caught_by_the_latest_checkpoint(filled: Context) -> None:
    behind_the_back(
        filled,
        f"DELETE FROM ledger_refs WHERE idx >= {N - 3}",
        f"DELETE FROM ledger_entries WHERE idx >= {N - 3}",
    )
    code, out = run_verify(filled)
    assert code == 1
    assert f"entry {N - 3} onwards removed" in out


def test_truncation_with_checkpoints_removed_is_caught_by_a_saved_checkpoint(
    filled: Context, tmp_path: Path
) -> None:
    saved = tmp_path / "checkpoint.txt"
    saved.write_text(filled.ledger.latest_checkpoint())
    cut = N - 4
    behind_the_back(
        filled,
        f"DELETE FROM ledger_refs WHERE idx >= {cut}",
        f"DELETE FROM ledger_entries WHERE idx >= {cut}",
        f"DELETE FROM ledger_nodes WHERE position * (1 << level) + (1 << level) > {cut}"
        if filled.db.dialect == "postgresql"
        else f"DELETE FROM ledger_nodes WHERE position * (1 << level) + (1 << level) > {cut}",
        f"DELETE FROM checkpoints WHERE tree_size > {cut}",
    )
    code, out = run_verify(filled)
    assert code == 0, "without a saved checkpoint a clean truncation is invisible"
    code, out = run_verify(filled, "--checkpoint", str(saved))
    assert code == 1
    assert f"entries from index {cut} were removed" in out


def test_saved_checkpoint_proves_the_log_only_grew(filled: Context, tmp_path: Path) -> None:
    saved = tmp_path / "checkpoint.txt"
    saved.write_text(filled.ledger.latest_checkpoint())
    for i in range(7):
        filled.ledger.append("later", actor="system:test", subject={})
    code, out = run_verify(filled, "--checkpoint", str(saved))
    assert code == 0, out
    assert f"PASS  consistency {N} -> {N + 7}" in out


def test_wrong_key_fails(filled: Context) -> None:
    from evidence.ledger.note import NoteSigner

    other = NoteSigner.generate(filled.ledger.origin).verifier_key()
    result = CliRunner().invoke(app, ["verify", "ledger", "--db", filled.db.url, "--key", other])
    assert result.exit_code == 1
    assert "FAIL  latest checkpoint signature" in result.output


def auditor_token(ctx: Context, url: str) -> str:
    create_user(ctx, "auditor1", "auditor", PASSWORD)
    import httpx

    return login(httpx.Client(base_url=url), "auditor1")


def test_verify_over_the_api_matches(filled: Context, tmp_path: Path) -> None:
    saved = filled.ledger.checkpoint_covering(5)
    with running_api(filled.settings) as url:
        token = auditor_token(filled, url)
        size = filled.ledger.size()
        report = verify_ledger(
            ApiSource(url, token), Report(), key=filled.ledger.verifier_key, saved_checkpoint=saved
        )
        assert report.ok, [c.line() for c in report.checks]
        assert any(c.name == f"consistency 5 -> {size}" and c.ok for c in report.checks)
        (tmp_path / "cp").write_text(saved)
        result = CliRunner().invoke(
            app,
            [
                "verify",
                "ledger",
                "--api",
                url,
                "--checkpoint",
                str(tmp_path / "cp"),
                "--token",
                token,
            ],
        )
        assert result.exit_code == 0, result.output
        assert "verifier key taken from" in result.output
        # Refusals show the server's own words and what to do, not a guess about the network.
        import httpx

        for bad_token in (None, "an-expired-or-forged-token"):
            headers = {"Authorization": f"Bearer {bad_token}"} if bad_token else {}
            said = httpx.get(f"{url}/api/v1/ledger/entries?start=0&end=1", headers=headers).json()[
                "detail"
            ]
            args = ["verify", "ledger", "--api", url] + (
                ["--token", bad_token] if bad_token else []
            )
            refused = CliRunner().invoke(app, args)
            assert refused.exit_code == 1 and "HTTP 401" in refused.output
            assert said in refused.output and "sign in again" in refused.output
            assert "check the URL" not in refused.output


def test_api_verify_pinpoints_a_recomputed_edit(filled: Context) -> None:
    rows = filled.ledger.entries(0, N)
    forged = [e if i != 16 else e.replace(b'"n":16', b'"n":61') for i, e in rows]
    behind_the_back(
        filled, "UPDATE ledger_entries SET entry = :e WHERE idx = 16", params={"e": forged[16]}
    )
    with running_api(filled.settings) as url:
        token = auditor_token(filled, url)
        report = verify_ledger(ApiSource(url, token), Report(), key=filled.ledger.verifier_key)
    assert not report.ok
    assert report.failures[-1].detail == "entry 16 differs from what was signed"


def test_database_source_reads_rows_in_index_order(filled: Context) -> None:
    source = DatabaseSource(filled.db.url, filled.ledger.verifier_key)
    assert [r.index for r in source.rows(N)] == list(range(N))
    source.close()


@pytest.mark.parametrize("readers", [1, 3])
def test_database_source_pages_read_ahead_give_the_same_rows_and_catch_the_same_gap(
    filled: Context, monkeypatch: pytest.MonkeyPatch, readers: int
) -> None:
    """Pages of 3 rows read ahead by 1 or 3 threads: every row once, in index order; a
    missing entry is still named, and stopping at it ends the readers (no hang)."""
    monkeypatch.setattr(DatabaseSource, "BATCH", 3)
    monkeypatch.setattr(DatabaseSource, "READERS", readers)
    source = DatabaseSource(filled.db.url, filled.ledger.verifier_key)
    rows = list(source.rows(N))
    assert [r.index for r in rows] == list(range(N))
    assert [r.entry for r in rows] == [e for _, e in filled.ledger.entries(0, N)]
    assert [r.index for r in source.rows(7)] == list(range(7))  # a last page cut short
    source.close()
    behind_the_back(
        filled, "DELETE FROM ledger_refs WHERE idx = 5", "DELETE FROM ledger_entries WHERE idx = 5"
    )
    code, out = run_verify(filled)
    assert code == 1
    assert "entry 5 is missing" in out
