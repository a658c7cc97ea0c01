"""RFC 3161 trusted time on checkpoints, against a real TSA (`openssl ts -reply` over HTTP)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from evidence.context import Context
from evidence.errors import TimestampInvalid, TimestampUnavailable
from evidence.ledger.entries import parse
from evidence.ledger.rfc3161 import verify_token
from evidence.timestamps import (
    ENTRY_TYPE,
    request_timestamp,
    timestamp_checkpoint,
    timestamp_if_grown,
    token_for,
)
from tests.fixtures.databases import make_settings
from tests.fixtures.tsa import TSA, TSAs


def _ctx(tmp_path: Path, url: str, server: TSA | None, **extra: object) -> Context:
    if server is None:
        return Context(make_settings(tmp_path, url, **extra))
    return Context(
        make_settings(tmp_path, url, tsa_url=server.url, tsa_ca_file=server.ca_pem, **extra)
    )


def _log_something(ctx: Context, n: int = 3) -> None:
    for i in range(n):
        ctx.ledger.append("test.event", actor="system:test", subject={"clip": f"c{i}"})


def _openssl_verify(
    tmp_path: Path, data: bytes, token: bytes, ca: Path
) -> subprocess.CompletedProcess[str]:
    """Exactly what a bundle's VERIFY.txt tells an auditor to run."""
    (tmp_path / "checkpoint.txt").write_bytes(data)
    (tmp_path / "checkpoint.tsr").write_bytes(token)
    return subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            "checkpoint.txt",
            "-in",
            "checkpoint.tsr",
            "-CAfile",
            str(ca),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_checkpoint_is_timestamped_stored_and_logged(
    tmp_path: Path, database_url: str, tsa: TSAs
) -> None:
    ctx = _ctx(tmp_path, database_url, tsa.good)
    _log_something(ctx)
    note = ctx.ledger.latest_checkpoint()

    stamp = timestamp_checkpoint(ctx)

    assert stamp is not None and stamp.tree_size == 3
    assert token_for(ctx, 3) == stamp.token
    assert token_for(ctx, 2) is None
    info = verify_token(stamp.token, note.encode(), tsa.good.ca_pem.read_bytes())
    assert info.gen_time == stamp.gen_time
    assert "Evidence Test TSA good" in info.tsa_name
    # Vouched for in the ledger: the entry after the stamped checkpoint names the token.
    assert ctx.ledger.size() == 4
    ((_, raw),) = ctx.ledger.entries(3, 4)
    entry = parse(raw)
    assert entry["type"] == ENTRY_TYPE
    assert entry["subject"] == {"checkpoint": "3"}
    assert entry["tree_size"] == 3 and entry["tsa"] == tsa.good.url
    assert entry["token_sha256"] == hashlib.sha256(stamp.token).hexdigest()
    assert entry["gen_time"].endswith("Z")
    # Idempotent: asking again returns the stored token, no second request, no second entry.
    assert timestamp_checkpoint(ctx, 3) == stamp
    assert ctx.ledger.size() == 4


def test_token_verifies_with_openssl_alone(tmp_path: Path, sqlite_url: str, tsa: TSAs) -> None:
    ctx = _ctx(tmp_path, sqlite_url, tsa.good)
    _log_something(ctx)
    note = ctx.ledger.latest_checkpoint().encode()
    stamp = timestamp_checkpoint(ctx)
    assert stamp is not None

    ok = _openssl_verify(tmp_path, note, stamp.token, tsa.good.ca_pem)
    assert ok.returncode == 0, ok.stderr
    assert "Verification: OK" in ok.stdout

    tampered = note.replace(b"\n3\n", b"\n4\n")
    bad = _openssl_verify(tmp_path, tampered, stamp.token, tsa.good.ca_pem)
    assert bad.returncode != 0 and "FAILED" in bad.stdout


def test_token_over_different_data_fails(tmp_path: Path, sqlite_url: str, tsa: TSAs) -> None:
    ctx = _ctx(tmp_path, sqlite_url, tsa.good)
    token = request_timestamp(ctx.settings, b"checkpoint A\n")
    ca = tsa.good.ca_pem.read_bytes()
    verify_token(token, b"checkpoint A\n", ca)
    with pytest.raises(TimestampInvalid, match="different data"):
        verify_token(token, b"checkpoint B\n", ca)
    with pytest.raises(TimestampInvalid):
        verify_token(token[:-1] + bytes([token[-1] ^ 1]), b"checkpoint A\n", ca)
    with pytest.raises(TimestampInvalid, match="DER"):
        verify_token(b"not a token", b"checkpoint A\n", ca)


def test_wrong_root_fails(tmp_path: Path, sqlite_url: str, tsa: TSAs) -> None:
    ctx = _ctx(tmp_path, sqlite_url, tsa.good)
    token = request_timestamp(ctx.settings, b"data\n")
    with pytest.raises(TimestampInvalid, match="does not verify"):
        verify_token(token, b"data\n", tsa.other_ca_pem.read_bytes())
    assert _openssl_verify(tmp_path, b"data\n", token, tsa.other_ca_pem).returncode != 0
    # The TSA itself is checked against the configured root: a TSA under another root is refused.
    wrong_root = _ctx(
        tmp_path, sqlite_url, None, tsa_url=tsa.good.url, tsa_ca_file=tsa.other_ca_pem
    )
    with pytest.raises(TimestampInvalid):
        request_timestamp(wrong_root.settings, b"data\n")


def test_tsa_without_critical_eku_is_refused(tmp_path: Path, sqlite_url: str, tsa: TSAs) -> None:
    # Control: the bad TSA's re-signing path, with the good certificate, is accepted; so
    # what is refused below is the certificate's non-critical EKU, nothing else.
    control = _ctx(tmp_path, sqlite_url, tsa.resigned_good)
    token = request_timestamp(control.settings, b"data\n")
    verify_token(token, b"data\n", tsa.good.ca_pem.read_bytes())

    ctx = _ctx(tmp_path, sqlite_url, tsa.bad_eku)
    _log_something(ctx)
    with pytest.raises(TimestampInvalid):
        request_timestamp(ctx.settings, b"data\n")
    with pytest.raises(TimestampInvalid):
        timestamp_checkpoint(ctx)
    assert token_for(ctx, 3) is None and ctx.ledger.size() == 3  # nothing stored
    # openssl agrees the certificate is unfit for time-stamping.
    import httpx
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    query = TimestampRequestBuilder().data(b"x\n").hash_algorithm(HashAlgorithm.SHA256).build()
    reply = httpx.post(
        tsa.bad_eku.url,
        content=query.as_bytes(),
        headers={"Content-Type": "application/timestamp-query"},
    ).content
    assert _openssl_verify(tmp_path, b"x\n", reply, tsa.bad_eku.ca_pem).returncode != 0


def test_tsa_down_is_a_clear_error_and_stores_nothing(
    tmp_path: Path, sqlite_url: str, tsa: TSAs
) -> None:
    ctx = _ctx(
        tmp_path,
        sqlite_url,
        None,
        tsa_url=tsa.down_url,
        tsa_ca_file=tsa.good.ca_pem,
        tsa_timeout_seconds=2,
    )
    _log_something(ctx)
    with pytest.raises(TimestampUnavailable, match="unreachable"):
        timestamp_checkpoint(ctx)
    assert token_for(ctx, 3) is None and ctx.ledger.size() == 3


def test_no_tsa_configured_is_off(tmp_path: Path, sqlite_url: str) -> None:
    ctx = _ctx(tmp_path, sqlite_url, None)
    _log_something(ctx)
    assert timestamp_checkpoint(ctx) is None
    assert timestamp_if_grown(ctx) is None


def test_scheduler_stamps_only_when_the_log_grew(
    tmp_path: Path, sqlite_url: str, tsa: TSAs
) -> None:
    ctx = _ctx(tmp_path, sqlite_url, tsa.good)
    assert timestamp_if_grown(ctx) is None  # empty log
    _log_something(ctx, 2)
    first = timestamp_if_grown(ctx)
    assert first is not None and first.tree_size == 2
    # Only our own checkpoint.timestamped entry since: nothing to do.
    assert timestamp_if_grown(ctx) is None
    _log_something(ctx, 1)
    second = timestamp_if_grown(ctx)
    assert second is not None and second.tree_size == 4  # 2 events + stamp entry + 1 event
    assert token_for(ctx, 2) == first.token


def test_table_refuses_update_and_delete(tmp_path: Path, database_url: str, tsa: TSAs) -> None:
    ctx = _ctx(tmp_path, database_url, tsa.good)
    _log_something(ctx, 1)
    stamp = timestamp_checkpoint(ctx)
    assert stamp is not None
    for sql in (
        "UPDATE checkpoint_timestamps SET tsa = 'elsewhere'",
        "UPDATE checkpoint_timestamps SET token = token",
        "DELETE FROM checkpoint_timestamps",
    ):
        with pytest.raises(DBAPIError, match="append-only"), ctx.db.write_session() as s:
            s.execute(text(sql))
    assert token_for(ctx, 1) == stamp.token


def test_unknown_size_is_not_found(tmp_path: Path, sqlite_url: str, tsa: TSAs) -> None:
    from evidence.errors import NotFound

    ctx = _ctx(tmp_path, sqlite_url, tsa.good)
    with pytest.raises(NotFound):
        timestamp_checkpoint(ctx)
    _log_something(ctx, 1)
    with pytest.raises(NotFound):
        timestamp_checkpoint(ctx, 7)


def test_entry_is_canonical_json_without_floats(tmp_path: Path, sqlite_url: str, tsa: TSAs) -> None:
    ctx = _ctx(tmp_path, sqlite_url, tsa.good)
    _log_something(ctx, 1)
    timestamp_checkpoint(ctx)
    ((_, raw),) = ctx.ledger.entries(1, 2)
    entry = json.loads(raw)
    assert isinstance(entry["tsa_serial"], str)
    assert not any(isinstance(v, float) for v in entry.values())
