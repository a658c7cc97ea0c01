"""C2SP signed notes and tlog checkpoints, Ed25519 only.

Formats (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint), byte for byte
what Go's `golang.org/x/mod/sumdb/note` and `transparency-dev/formats/log` produce, so
that the ledger's checkpoints can be checked with stock tools:

    note       = text "\\n" 1*signature-line      ; text is non-empty and ends in "\\n"
    sig line   = "— " name " " base64(key_id || ed25519_signature) "\\n"   ; U+2014
    key_id     = SHA-256(name || "\\n" || 0x01 || public_key)[:4]
    vkey       = name "+" hex(key_id) "+" base64(0x01 || public_key)
    skey       = "PRIVATE+KEY+" name "+" hex(key_id) "+" base64(0x01 || seed)  ; Go's form
    checkpoint = origin "\\n" decimal(size) "\\n" base64(root_hash) "\\n" *(extension "\\n")

The signature covers the text only, including its final newline.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from evidence.errors import LedgerError, SignatureInvalid

__all__ = [
    "Checkpoint",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "SignedNote",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
]

ALG_ED25519 = 0x01
"""C2SP signed-note signature type for Ed25519 (the key's first byte)."""

MAX_SIGNATURES = 100
"""Go's note.Open limit; C2SP requires accepting at least 16."""

_SIG_PREFIX = "\u2014 "  # "— ", EM DASH then a space
_KEY_ID_SIZE = 4
_ED25519_KEY_SIZE = 32
_HASH_SIZE = 32  # SHA-256; same as merkle.HASH_SIZE, kept local so this module stands alone
_MAX_UINT64 = (1 << 64) - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)


# -- small helpers ------------------------------------------------------------------------


def _b64decode(s: str) -> bytes:
    """Standard base64 with padding; ValueError on anything else (Go's StdEncoding)."""
    # Spelled out rather than left to b64decode(validate=True), whose leniency has
    # changed between Python versions; one rule for keys, signatures and checkpoints.
    if not isinstance(s, str) or not _BASE64.fullmatch(s):
        raise ValueError("not standard base64")
    return base64.b64decode(s, validate=True)


def _b64encode(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _is_valid_name(name: str) -> bool:
    """C2SP: key names are non-empty UTF-8 with no Unicode spaces and no '+'.

    Same test as Go's isValidName (unicode.IsSpace); Python's str.isspace() is close
    enough for the names people use, and also refuses the ASCII separators \\x1c-\\x1f.
    """
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def _has_bad_control(text: str) -> bool:
    # C2SP / Go note.Open: no ASCII control characters except newline.
    return any(ord(ch) < 0x20 and ch != "\n" for ch in text)


def _key_id(name: str, key: bytes) -> bytes:
    """SHA-256(name || "\\n" || type || public key)[:4], C2SP signed-note "Signatures"."""
    return hashlib.sha256(name.encode() + b"\n" + key).digest()[:_KEY_ID_SIZE]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _parse_key_id(hex8: str) -> bytes:
    # Go: len(hash16) == 8 && ParseUint(hash16, 16, 32). Accept either case like Go.
    if len(hex8) != 2 * _KEY_ID_SIZE or not re.fullmatch(r"[0-9a-fA-F]{8}", hex8):
        raise ValueError("key id is not 8 hex digits")
    return bytes.fromhex(hex8)


def _parse_typed_key(name: str, hex8: str, key64: str, what: str) -> tuple[bytes, bytes]:
    """(key id, 32 key bytes) from the last three fields of a vkey or skey."""
    try:
        key_id = _parse_key_id(hex8)
        typed = _b64decode(key64)
    except ValueError as e:
        raise LedgerError(f"malformed {what}: {e}") from None
    if not _is_valid_name(name):
        raise LedgerError(f"malformed {what}: invalid key name {name!r}")
    if not typed:
        raise LedgerError(f"malformed {what}: empty key")
    if typed[0] != ALG_ED25519:
        raise LedgerError(f"{what} has unknown signature type 0x{typed[0]:02x} (want Ed25519)")
    if len(typed) != 1 + _ED25519_KEY_SIZE:
        raise LedgerError(f"malformed {what}: Ed25519 key must be {_ED25519_KEY_SIZE} bytes")
    return key_id, typed[1:]


# -- keys ------------------------------------------------------------------------------------


class NoteVerifier:
    """An Ed25519 note verifier key: the public half, named."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not _is_valid_name(name):
            raise LedgerError(f"invalid key name {name!r}: must be non-empty, no spaces or '+'")
        self._name = name
        self._key = public_key
        self._key_id = _key_id(name, bytes([ALG_ED25519]) + _raw_public(public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse `name+hexkeyid+base64(0x01||pubkey)`, checking the key id."""
        # Split on the first two '+' only: base64 may itself contain '+'.
        name, sep1, rest = vkey.partition("+")
        hex8, sep2, key64 = rest.partition("+")
        if not (sep1 and sep2):
            raise LedgerError("malformed verifier key: want name+keyid+key")
        key_id, raw = _parse_typed_key(name, hex8, key64, "verifier key")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw))
        if verifier.key_id != key_id:
            raise LedgerError(f"verifier key id {hex8} does not match key {name!r}")
        return verifier

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id that tags this key's signatures."""
        return self._key_id

    def to_vkey(self) -> str:
        typed = bytes([ALG_ED25519]) + _raw_public(self._key)
        return f"{self._name}+{self._key_id.hex()}+{_b64encode(typed)}"

    def verify(self, text: str | bytes, sig: bytes) -> bool:
        """True if `sig` (64 bytes, no key id) is this key's Ed25519 signature of `text`."""
        msg = text.encode() if isinstance(text, str) else text
        try:
            self._key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"NoteVerifier({self.to_vkey()!r})"


class NoteSigner:
    """An Ed25519 note signer: the private key, named. Its repr never shows the key."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._verifier = NoteVerifier(name, private_key.public_key())
        self._key = private_key

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse Go's `PRIVATE+KEY+name+hexkeyid+base64(0x01||seed)`, checking the key id."""
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise LedgerError("malformed signer key: want PRIVATE+KEY+name+keyid+key")
        _, _, name, hex8, key64 = parts
        key_id, seed = _parse_typed_key(name, hex8, key64, "signer key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed))
        # The key id names the *public* key, so it can only be checked after deriving it.
        if signer.key_id != key_id:
            raise LedgerError(f"signer key id {hex8} does not match key {name!r}")
        return signer

    def to_skey(self) -> str:
        seed = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        typed = bytes([ALG_ED25519]) + seed
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{_b64encode(typed)}"

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        return self._verifier.key_id

    def verifier(self) -> NoteVerifier:
        return self._verifier

    def verifier_key(self) -> str:
        """The vkey string to publish: `name+hexkeyid+base64(0x01||pubkey)`."""
        return self._verifier.to_vkey()

    def sign(self, text: str) -> str:
        """The whole signed note: `text`, a blank line, and this key's signature line."""
        _check_text(text)
        sig = self._key.sign(text.encode())
        return f"{text}\n{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + sig)}\n"

    def __repr__(self) -> str:
        return f"NoteSigner({self.verifier_key()!r})"


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text.endswith("\n"):
        raise LedgerError("note text must be a non-empty string ending in a newline")
    if _has_bad_control(text):
        raise LedgerError("note text must not contain control characters other than newline")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise LedgerError("note text is not valid Unicode") from None


# -- opening notes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key's name and id, and the Ed25519 signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedNote:
    """An opened note: its text, the signatures that verified, and those from unknown keys."""

    text: str
    signatures: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...] = field(default=())


def _malformed() -> LedgerError:
    return LedgerError("malformed note")


def _decode_note(note: str | bytes) -> str:
    if isinstance(note, bytes | bytearray):
        try:
            text = bytes(note).decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed() from None
    else:
        text = note
        try:
            text.encode()  # lone surrogates are not UTF-8
        except UnicodeEncodeError:
            raise _malformed() from None
    if _has_bad_control(text):
        raise _malformed()
    return text


def _parse_sig_line(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise _malformed()
    name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    try:
        raw = _b64decode(b64)
    except ValueError:
        raise _malformed() from None
    if not _is_valid_name(name) or not b64 or len(raw) <= _KEY_ID_SIZE:
        raise _malformed()
    return NoteSignature(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:])


def open_note(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> SignedNote:
    """Parse a signed note and verify it against `verifiers`, as Go's note.Open does.

    Signatures from keys not in `verifiers` are returned unverified; a signature from a
    known key that does not verify is an error, as is a note with no verified signature.
    Repeated signatures are dropped. Raises LedgerError("malformed note") for bad syntax,
    SignatureInvalid otherwise.
    """
    msg = _decode_note(note)
    # The signature block is after the *last* blank line; the text keeps its newline.
    split = msg.rfind("\n\n")
    if split < 0:
        raise _malformed()
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block.endswith("\n"):
        raise _malformed()

    known: dict[tuple[str, bytes], list[NoteVerifier]] = {}
    for v in verifiers:
        known.setdefault((v.name, v.key_id), []).append(v)

    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen: set[tuple[str, bytes]] = set()
    seen_unknown: set[str] = set()
    lines = block[:-1].split("\n")
    for count, line in enumerate(lines, start=1):
        sig = _parse_sig_line(line)
        if count > MAX_SIGNATURES:  # counted before de-duplication, as Go does
            raise _malformed()
        candidates = known.get((sig.name, sig.key_id), [])
        if not candidates:
            if line not in seen_unknown:
                seen_unknown.add(line)
                unverified.append(sig)
            continue
        if len(candidates) > 1:
            raise SignatureInvalid(f"ambiguous key {sig.name}+{sig.key_id.hex()}")
        if (sig.name, sig.key_id) in seen:
            continue
        seen.add((sig.name, sig.key_id))
        if not candidates[0].verify(text, sig.signature):
            raise SignatureInvalid(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        verified.append(sig)

    if not verified:
        raise SignatureInvalid("note has no verifiable signatures")
    return SignedNote(text, tuple(verified), tuple(unverified))


# -- checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash, extension lines.

    The dataclass accepts a root hash of any non-zero length (the upstream vectors use
    short ones); `from_text` and `sign_checkpoint` insist on 32 bytes by default.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise LedgerError("checkpoint origin must be a non-empty string")
        if "\n" in self.origin or _has_bad_control(self.origin):
            raise LedgerError("checkpoint origin must be one line without control characters")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise LedgerError("checkpoint size must be an integer")
        if not 0 <= self.size <= _MAX_UINT64:
            raise LedgerError(f"checkpoint size {self.size} is not a 64-bit unsigned integer")
        if not isinstance(self.root_hash, bytes) or not self.root_hash:
            raise LedgerError("checkpoint root hash must be non-empty bytes")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for ext in self.extensions:
            # C2SP: extension lines MUST be non-empty.
            if not isinstance(ext, str) or not ext or "\n" in ext or _has_bad_control(ext):
                raise LedgerError(f"checkpoint extension line {ext!r} is invalid")

    def to_text(self) -> str:
        """The checkpoint as note text, ending in a newline."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str, *, hash_size: int | None = _HASH_SIZE) -> Checkpoint:
        """Parse note text strictly: exactly what `to_text` would write, nothing else.

        `hash_size=None` accepts a root hash of any length (for other logs' vectors).
        """
        if not isinstance(text, str) or not text.endswith("\n"):
            raise LedgerError("malformed checkpoint: must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise LedgerError("malformed checkpoint: want origin, size and root hash lines")
        origin, size_s, hash_s, *extensions = lines
        if not origin:
            raise LedgerError("malformed checkpoint: empty origin line")
        if not _DECIMAL.fullmatch(size_s):
            # Decimal ASCII digits, no sign, no leading zeros: int() alone would also take
            # "+1", " 1", "1_0" and non-ASCII digits.
            raise LedgerError(f"malformed checkpoint: tree size {size_s!r} is not canonical")
        try:
            root = _b64decode(hash_s)
        except ValueError:
            raise LedgerError("malformed checkpoint: root hash is not base64") from None
        if _b64encode(root) != hash_s:
            # Non-zero padding bits would give two texts for one checkpoint.
            raise LedgerError("malformed checkpoint: root hash base64 is not canonical")
        if hash_size is not None and len(root) != hash_size:
            raise LedgerError(
                f"malformed checkpoint: root hash is {len(root)} bytes, want {hash_size}"
            )
        try:
            return cls(origin, int(size_s), root, tuple(extensions))
        except LedgerError as e:
            raise LedgerError(f"malformed checkpoint: {e}") from None


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    """The checkpoint as a signed note."""
    if len(cp.root_hash) != _HASH_SIZE:
        raise LedgerError(f"refusing to sign a {len(cp.root_hash)}-byte root hash")
    return signer.sign(cp.to_text())


def open_checkpoint(
    note_text: str | bytes, verifier: NoteVerifier, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint with `verifier` and parse its body.

    Pass `origin` to require that origin line; C2SP only says the key name SHOULD match
    it (sum.golang.org's does not), so it is not checked by default.
    """
    opened = open_note(note_text, [verifier])
    cp = Checkpoint.from_text(opened.text)
    if origin is not None and cp.origin != origin:
        raise SignatureInvalid(f"checkpoint origin {cp.origin!r} is not {origin!r}")
    return cp
