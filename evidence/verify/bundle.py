"""Offline verification of a court bundle: no network, no database, only the ZIP.

Checks, each one line in the report: SHA256SUMS (every listed file, nothing unlisted),
the manifest's signature (and, with a pin, that the signer is the force's bundle key),
every file the manifest lists, every exhibit's media, the ledger checkpoint's signature
(with a pin, that it is the force's ledger key), every ledger entry's inclusion proof,
that each exhibit's `clip.ingested` entry vouches for its hash and size, and the
checkpoint's timestamp token when there is one. Members are hashed in chunks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.bundles import layout
from evidence.errors import EvidenceError
from evidence.ledger import merkle
from evidence.ledger.note import Checkpoint, NoteVerifier, open_checkpoint
from evidence.verify.report import Report

CHUNK = 1024 * 1024


def verify_bundle(
    path: Path,
    report: Report,
    *,
    ledger_key: str | None = None,
    bundle_key_pem: bytes | None = None,
    tsa_ca_pem: bytes | None = None,
) -> Report:
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.add("bundle readable", False, f"{path}: {exc}")
        return report
    with zf:
        hashes = _hash_members(zf, report)
        _check_sums(zf, hashes, report)
        manifest, matched = _check_signature(zf, report, bundle_key_pem)
        if manifest is None:
            return report
        _check_listed_files(manifest, hashes, report)
        cp = _check_checkpoint(zf, manifest, report, ledger_key)
        entries = _check_entries(zf, cp, report) if cp else {}
        if matched is not None:
            _check_validity(matched, manifest, entries, report)
        _check_exhibits(manifest, hashes, entries, report)
        _check_token(zf, report, tsa_ca_pem)
    return report


DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)
"""What reading a member of a ZIP damaged in place raises: a bad CRC-32, a broken deflate
stream, a truncated file, an unknown compression method."""


def _read(zf: zipfile.ZipFile, name: str) -> bytes | None:
    try:
        return zf.read(name)  # only small members (text, keys) are read whole
    except KeyError:
        return None
    except DAMAGE:
        return None  # already reported by _hash_members, which reads every member first


def _hash_members(zf: zipfile.ZipFile, report: Report) -> dict[str, tuple[str, int]]:
    """sha256 and size of every member, read in chunks (media can be gigabytes). A member
    the ZIP itself cannot give back intact is a failure named after it, never a crash."""
    out = {}
    for info in zf.infolist():
        if info.is_dir():
            continue
        digest, n = hashlib.sha256(), 0
        try:
            with zf.open(info) as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    n += len(chunk)
        except DAMAGE as exc:
            report.add(
                f"ZIP member {info.filename}",
                False,
                f"damaged in this copy of the bundle ({exc}); obtain the bundle again "
                "from its source: nothing in a damaged copy can be relied on",
            )
            continue
        out[info.filename] = (digest.hexdigest(), n)
    return out


def _check_sums(zf: zipfile.ZipFile, hashes: dict[str, tuple[str, int]], report: Report) -> None:
    text = _read(zf, layout.SUMS)
    if text is None:
        report.add("SHA256SUMS", False, "missing")
        return
    listed: dict[str, str] = {}
    for line in text.decode(errors="replace").splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            report.add("SHA256SUMS", False, f"malformed line {line[:80]!r}")
            continue
        listed[name.lstrip("*")] = digest.lower()
    for name, digest in sorted(listed.items()):
        if name not in hashes:
            report.add(f"SHA256SUMS {name}", False, "listed but missing from the bundle")
        elif hashes[name][0] != digest:
            report.add(
                f"SHA256SUMS {name}", False, f"hashes to {hashes[name][0]}, listed as {digest}"
            )
    unlisted = sorted(set(hashes) - set(listed) - {layout.SUMS})
    for name in unlisted:
        report.add(f"SHA256SUMS {name}", False, "in the bundle but not listed")
    bad = [c for c in report.checks if c.name.startswith("SHA256SUMS") and not c.ok]
    if not bad:
        report.add("SHA256SUMS", True, f"{len(listed)} files match, none unlisted")


@dataclass(frozen=True)
class PublishedKey:
    """One bundle key a court pinned: from a PEM file (no validity known) or the force's
    published history (GET /api/v1/bundles/keys)."""

    key_id: str  # hex SHA-256 of the DER SubjectPublicKeyInfo
    valid_from: str | None = None
    valid_until: str | None = None
    from_history: bool = False

    def period(self) -> str:
        if not self.from_history:
            return "validity period not given (a PEM file; pin the JSON history to check it)"
        return f"valid from {self.valid_from} until {self.valid_until or 'now (in force)'}"


_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


class PinnedKeysUnreadable(EvidenceError):
    """The --bundle-key file holds no public key we can read."""


def read_pinned_keys(data: bytes) -> list[PublishedKey]:
    """The keys in a --bundle-key file: one or several PEM public keys, or the JSON history
    the force publishes ({"keys": [{key_id, public_pem, valid_from, valid_until}]})."""
    text = data.lstrip()
    if text.startswith((b"{", b"[")):
        try:
            doc = json.loads(text)
            rows = doc["keys"] if isinstance(doc, dict) else doc
            keys = [
                PublishedKey(
                    _key_id(str(r["public_pem"]).encode()),
                    r.get("valid_from"),
                    r.get("valid_until"),
                    True,
                )
                for r in rows
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise PinnedKeysUnreadable(
                f"the pinned key history is not the force's published "
                f"JSON ({type(exc).__name__}: {exc})"
            ) from None
    else:
        try:
            keys = [PublishedKey(_key_id(block)) for block in _PEM_BLOCK.findall(data)]
        except ValueError as exc:
            raise PinnedKeysUnreadable(
                f"a PEM block in the pinned key file is not a public key ({exc})"
            ) from None
    if not keys:
        raise PinnedKeysUnreadable("the pinned key file holds no public key (PEM or JSON history)")
    return keys


def _key_id(pem: bytes) -> str:
    spki = _spki(pem)
    if spki is None:
        raise ValueError("not a PEM public key")
    return hashlib.sha256(spki).hexdigest()


def _check_signature(
    zf: zipfile.ZipFile, report: Report, pinned_pem: bytes | None
) -> tuple[dict[str, Any] | None, PublishedKey | None]:
    data, sig, pem = (
        _read(zf, layout.MANIFEST),
        _read(zf, layout.SIGNATURE),
        _read(zf, layout.SIGNING_KEY),
    )
    if data is None or sig is None or pem is None:
        missing = [
            n
            for n, v in (
                (layout.MANIFEST, data),
                (layout.SIGNATURE, sig),
                (layout.SIGNING_KEY, pem),
            )
            if v is None
        ]
        report.add("manifest signature", False, f"missing {', '.join(missing)}")
        return None, None
    try:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        key.verify(sig, data)
        report.add("manifest signature", True, f"{layout.MANIFEST} signed by {layout.SIGNING_KEY}")
    except (ValueError, InvalidSignature) as exc:
        report.add(
            "manifest signature",
            False,
            f"{layout.SIGNATURE} does not verify with {layout.SIGNING_KEY} ({type(exc).__name__})",
        )
    matched = _match_pinned(pem, pinned_pem, report) if pinned_pem is not None else None
    if pinned_pem is None:
        report.note(
            "bundle signing key not pinned: anyone can re-sign a manifest with a key of "
            "their own; pass --bundle-key with the force's published key(s)"
        )
    try:
        return json.loads(data), matched
    except ValueError as exc:
        report.add("manifest.json readable", False, str(exc))
        return None, matched


def _match_pinned(pem: bytes, pinned: bytes, report: Report) -> PublishedKey | None:
    """Which of the pinned (published) keys signed this bundle; a failure naming the
    bundle's key when none did."""
    try:
        keys = read_pinned_keys(pinned)
    except PinnedKeysUnreadable as exc:
        report.add("bundle signing key pinned", False, str(exc))
        return None
    try:
        signer = _key_id(pem)
    except ValueError:
        report.add("bundle signing key pinned", False, f"{layout.SIGNING_KEY} is not a public key")
        return None
    found = next((k for k in keys if k.key_id == signer), None)
    if found is None:
        report.add(
            "bundle signing key pinned",
            False,
            f"{layout.SIGNING_KEY} (key id {signer}) is NOT among the {len(keys)} pinned "
            "bundle key(s): not a key the force published, unless you pinned only some of "
            "them (pin the whole history, GET /api/v1/bundles/keys)",
        )
        return None
    report.add(
        "bundle signing key pinned",
        True,
        f"is the published force key {found.key_id}, {found.period()}",
    )
    return found


def _check_validity(
    key: PublishedKey, manifest: dict[str, Any], entries: dict[int, dict[str, Any]], report: Report
) -> None:
    """The key must have been in force when the bundle was made. The manifest carries no
    build time (so rebuilding gives the same bytes); what it does carry is the ledger state
    it was pinned at, and the latest included entry's time is when that state was reached:
    a key retired before then cannot have signed this bundle honestly. A manifest that
    does carry `created_at` is checked against the whole period."""
    if not key.from_history:
        return
    created = manifest.get("created_at")
    if isinstance(created, str):
        ok = (key.valid_from is None or key.valid_from <= created) and (
            key.valid_until is None or created <= key.valid_until
        )
        report.add(
            "bundle key validity",
            ok,
            f"made {created}, " + ("within" if ok else "OUTSIDE") + f" key {key.key_id[:16]}'s "
            f"period ({key.period()})",
        )
        return
    times = [e["at"] for e in entries.values() if isinstance(e.get("at"), str)]
    if not times:
        report.note("bundle key validity not checked: no ledger entry time in the bundle")
        return
    pinned_at = max(times)  # RFC 3339 UTC with a fixed width: compares as text
    ok = key.valid_until is None or pinned_at <= key.valid_until
    report.add(
        "bundle key validity",
        ok,
        f"the bundle's ledger state is of {pinned_at}, "
        + ("while" if ok else "AFTER")
        + f" key {key.key_id[:16]} was in force ({key.period()})"
        + ("" if ok else ": a retired key signed it"),
    )


def _spki(pem: bytes) -> bytes | None:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        return None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_listed_files(
    manifest: dict[str, Any], hashes: dict[str, tuple[str, int]], report: Report
) -> None:
    """The manifest lists every other file with its hash: the signature covers them all."""
    bad = 0
    for f in manifest.get("files", []):
        got = hashes.get(f["path"])
        if got != (f["sha256"], f["size"]):
            bad += 1
            report.add(
                f"manifest file {f['path']}",
                False,
                "missing"
                if got is None
                else f"hashes to {got[0]} ({got[1]} bytes), "
                f"manifest says {f['sha256']} ({f['size']} bytes)",
            )
    listed = {f["path"] for f in manifest.get("files", [])}
    for name in sorted(set(hashes) - listed - {layout.MANIFEST, layout.SIGNATURE, layout.SUMS}):
        bad += 1
        report.add(f"manifest file {name}", False, "in the bundle but not in manifest.json")
    if not bad:
        report.add("manifest files", True, f"{len(listed)} files match manifest.json")


def _check_checkpoint(
    zf: zipfile.ZipFile, manifest: dict[str, Any], report: Report, pinned: str | None
) -> Checkpoint | None:
    vkey = (_read(zf, layout.LEDGER_KEY) or b"").decode(errors="replace").strip()
    note = _read(zf, layout.CHECKPOINT)
    if pinned is not None:
        report.add(
            "ledger key pinned",
            vkey == pinned.strip(),
            "is the pinned key"
            if vkey == pinned.strip()
            else f"{layout.LEDGER_KEY} is NOT the pinned ledger key",
        )
    else:
        report.note("ledger key not pinned: pass --key with the force's published verifier key")
    if note is None or not vkey:
        report.add(
            "checkpoint signature", False, f"missing {layout.CHECKPOINT} or {layout.LEDGER_KEY}"
        )
        return None
    try:
        cp = open_checkpoint(note, NoteVerifier.from_vkey(vkey))
    except EvidenceError as exc:
        report.add("checkpoint signature", False, f"{layout.CHECKPOINT}: {exc}")
        return None
    report.add("checkpoint signature", True, f"tree size {cp.size} signed by {layout.LEDGER_KEY}")
    led = manifest.get("ledger", {})
    same = (
        led.get("tree_size") == cp.size
        and led.get("root_hash") == base64.b64encode(cp.root_hash).decode()
    )
    report.add(
        "manifest names the checkpoint",
        same,
        "" if same else "manifest.json's ledger size/root differ from ledger/checkpoint.txt",
    )
    return cp


def _check_entries(
    zf: zipfile.ZipFile, cp: Checkpoint, report: Report
) -> dict[int, dict[str, Any]]:
    """Each entry's inclusion proof against the checkpoint's root; returns the good ones."""
    good: dict[int, dict[str, Any]] = {}
    data = _read(zf, layout.ENTRIES)
    if data is None:
        report.add("ledger entries", False, f"missing {layout.ENTRIES}")
        return good
    failed = 0
    for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
        row: Any = None
        try:
            row = json.loads(line)
            index, entry = int(row["index"]), base64.b64decode(row["entry"], validate=True)
            proof = [base64.b64decode(h, validate=True) for h in row["hashes"]]
            merkle.verify_inclusion(merkle.leaf_hash(entry), index, cp.size, proof, cp.root_hash)
            good[index] = json.loads(entry)
        except (ValueError, KeyError, TypeError, EvidenceError) as exc:
            failed += 1
            what = f"ledger entry {row.get('index', '?')}" if isinstance(row, dict) else f"line {n}"
            report.add(f"inclusion {what}", False, f"{layout.ENTRIES} line {n}: {exc}")
    if not failed:
        report.add(
            "ledger entries", True, f"{len(good)} entries included in checkpoint of size {cp.size}"
        )
    return good


def _check_exhibits(
    manifest: dict[str, Any],
    hashes: dict[str, tuple[str, int]],
    entries: dict[int, dict[str, Any]],
    report: Report,
) -> None:
    for ex in manifest.get("exhibits", []):
        ref = ex.get("exhibit_ref", "?")
        if ex.get("disposed"):
            _check_disposed(ex, ref, entries, report)
        elif ex.get("withheld"):
            # Made for a share that gives this exhibit as its redacted copy only: no original,
            # and each redacted copy carried is the one its ledger entry vouches for.
            carried = ex.get("file") is not None
            report.add(
                f"exhibit {ref} original withheld",
                not carried,
                f"not in this bundle: {ex['withheld'].get('reason')}"
                if not carried
                else "the manifest says withheld, but names an original file",
            )
            _check_derivative_files(ex, ref, hashes, entries, report)
        else:
            _check_media(ex, ref, hashes, report)
            _check_derivative_files(ex, ref, hashes, entries, report)
        vouched = [
            i
            for i, e in entries.items()
            if e.get("type") == "clip.ingested"
            and e.get("subject", {}).get("clip") == ex["clip_id"]
            and e.get("sha256") == ex["sha256"]
            and e.get("size") == ex["size"]
        ]
        report.add(
            f"exhibit {ref} ledger",
            bool(vouched),
            f"clip.ingested entry {vouched[0]} vouches for its sha256"
            if vouched
            else "no included clip.ingested entry vouches for this sha256 and size",
        )


def _check_media(
    ex: dict[str, Any], ref: str, hashes: dict[str, tuple[str, int]], report: Report
) -> None:
    got = hashes.get(ex["file"])
    ok = got == (ex["sha256"], ex["size"])
    report.add(
        f"exhibit {ref} media",
        ok,
        ex["file"]
        if ok
        else f"{ex['file']} "
        + (
            "is missing"
            if got is None
            else f"hashes to {got[0]} ({got[1]} bytes), manifest says {ex['sha256']}"
        ),
    )


def _check_derivative_files(
    ex: dict[str, Any],
    ref: str,
    hashes: dict[str, tuple[str, int]],
    entries: dict[int, dict[str, Any]],
    report: Report,
) -> None:
    """Each derivative carried (proxy, thumbnail, redaction) is the file its included
    `derivative.created` entry vouches for, made from this exhibit's original."""
    for d in ex.get("derivatives") or []:
        if not isinstance(d, dict) or not isinstance(d.get("file"), str):
            continue  # listed, not carried
        index = d.get("ledger_index")
        e = entries.get(index) if isinstance(index, int) else None
        recipe = (e or {}).get("recipe") or {}
        ok = (
            hashes.get(d["file"]) == (d.get("sha256"), d.get("size"))
            and e is not None
            and e.get("type") == "derivative.created"
            and e.get("kind") == d.get("kind")
            and e.get("subject", {}).get("clip") == ex.get("clip_id")
            and e.get("sha256") == d.get("sha256")
            and recipe.get("input_sha256") == ex.get("sha256")
        )
        report.add(
            f"exhibit {ref} derivative {d.get('kind')}",
            ok,
            f"{d['file']}: ledger entry {d.get('ledger_index')} vouches for it, made from "
            "the original"
            if ok
            else f"{d['file']} does not match an included derivative.created entry for this "
            "exhibit's original (file hash, kind or recipe input differ)",
        )


def _check_disposed(
    ex: dict[str, Any], ref: str, entries: dict[int, dict[str, Any]], report: Report
) -> None:
    """A disposed exhibit has no media; its tombstone must be in the signed ledger, for this
    clip and these bytes, or the manifest is hiding a missing file."""
    index = ex["disposed"].get("ledger_index")
    e = entries.get(index) if isinstance(index, int) else None
    ok = (
        e is not None
        and e.get("type") == "clip.disposed"
        and e.get("subject", {}).get("clip") == ex["clip_id"]
        and e.get("sha256") == ex["sha256"]
    )
    report.add(
        f"exhibit {ref} disposed",
        ok,
        f"no media: disposed of on {e['at']} ({e.get('rule')}); tombstone entry {index} is in "
        "the signed ledger"
        if ok and e
        else f"the manifest says disposed, but entry {index} is no included clip.disposed "
        "tombstone for this clip and sha256",
    )


def _check_token(zf: zipfile.ZipFile, report: Report, tsa_ca_pem: bytes | None) -> None:
    """The checkpoint's RFC 3161 token, checked against the TSA root the caller trusts
    (--tsa-ca), else against the CA shipped in the bundle, saying so. rfc3161-client is
    imported here, only for a bundle that carries a token."""
    from evidence.ledger.rfc3161 import verify_token

    token = _read(zf, layout.TOKEN)
    if token is None:
        report.note("no RFC 3161 timestamp token in the bundle (no TSA was configured)")
        return
    bundled = _read(zf, layout.TSA_CA)
    if tsa_ca_pem is None and bundled is None:
        report.note(
            f"{layout.TOKEN} present but NOT checked: pass --tsa-ca with the TSA's root certificate"
        )
        return
    if tsa_ca_pem is None:
        report.note(
            f"the TSA root came from the bundle ({layout.TSA_CA}), not from you: anyone who "
            "can change the bundle can replace it; pass --tsa-ca with the root the TSA "
            "operator publishes to check the token independently"
        )
    elif bundled is not None and bundled != tsa_ca_pem:
        report.note(
            f"{layout.TSA_CA} differs from the root given with --tsa-ca (checked against yours)"
        )
    try:
        info = verify_token(
            token, _read(zf, layout.CHECKPOINT) or b"", tsa_ca_pem or bundled or b""
        )
        source = "--tsa-ca" if tsa_ca_pem is not None else layout.TSA_CA
        report.add(
            "timestamp token",
            True,
            f"{layout.CHECKPOINT} existed by {info.gen_time.isoformat()} "
            f"({info.tsa_name}; root from {source})",
        )
    except EvidenceError as exc:
        report.add("timestamp token", False, f"{layout.TOKEN}: {exc}")
