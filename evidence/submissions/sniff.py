"""What a file is, from its first bytes: the kinds of file the public may send.

The name's extension is the sender's word; these signatures are the file's own. Anything
else (an executable, an archive, a web page) is refused before it is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

SNIFF_BYTES = 64  # every signature below lies within the first 64 bytes


@dataclass(frozen=True)
class Sniffed:
    kind: str  # video, image, audio, document
    media_type: str


# ISO base media (MP4, MOV, 3GP, HEIC, M4A): "ftyp" at offset 4, then the brand.
_FTYP_BRANDS = {
    b"qt  ": Sniffed("video", "video/quicktime"),
    b"M4A ": Sniffed("audio", "audio/mp4"),
    b"heic": Sniffed("image", "image/heic"),
    b"heix": Sniffed("image", "image/heic"),
    b"mif1": Sniffed("image", "image/heif"),
    b"3gp4": Sniffed("video", "video/3gpp"),
    b"3gp5": Sniffed("video", "video/3gpp"),
    b"3g2a": Sniffed("video", "video/3gpp2"),
}
_MP4 = Sniffed("video", "video/mp4")

_PREFIXES: tuple[tuple[bytes, Sniffed], ...] = (
    (b"\xff\xd8\xff", Sniffed("image", "image/jpeg")),
    (b"\x89PNG\r\n\x1a\n", Sniffed("image", "image/png")),
    (b"%PDF-", Sniffed("document", "application/pdf")),
    (b"\x1a\x45\xdf\xa3", Sniffed("video", "video/x-matroska")),  # MKV and WebM
    (b"OggS", Sniffed("audio", "audio/ogg")),
    (b"ID3", Sniffed("audio", "audio/mpeg")),
    (b"fLaC", Sniffed("audio", "audio/flac")),
    (b"#!AMR", Sniffed("audio", "audio/amr")),
)
_RIFF = {b"AVI ": Sniffed("video", "video/x-msvideo"), b"WAVE": Sniffed("audio", "audio/wav")}


def sniff(head: bytes) -> Sniffed | None:
    """The kind of file whose first bytes are `head`, or None: not one we take."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], _MP4)
    if len(head) >= 12 and head[:4] == b"RIFF":
        return _RIFF.get(head[8:12])
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return Sniffed("audio", "audio/mpeg")  # an MPEG audio frame without an ID3 tag
    for prefix, found in _PREFIXES:
        if head.startswith(prefix):
            return found
    return None


ALLOWED = "video (MP4, MOV, 3GP, MKV, WebM, AVI), photos (JPEG, PNG, HEIC), audio, PDF"
