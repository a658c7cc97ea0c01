"""Presigned object URLs of the local store (api/routes/objects.py), as S3 answers them."""

from __future__ import annotations

from api.schemas import Out


class StoredObjectOut(Out):
    key: str
    sha256: str
    size: int


class StoredPartOut(Out):
    """One part of a multipart upload; its ETag is also in the ETag header."""

    part_number: int
    size: int
    etag: str
