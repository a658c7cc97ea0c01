"""Presigned object URLs of the local store: the embedded profile's stand-in for S3.

`LocalStore.presign_put/get` produce `/api/v1/objects/{key}?method=&expires=&signature=`;
these routes check the signature first, then stream the body into the store (PUT) or the
object out of it, with HTTP Range (GET). `LocalStore.presign_part` adds `uploadId` and
`partNumber` (both covered by the signature), and for ingest `size`, the most bytes the part
may hold (signed too: a bigger body is refused with 413) and `offset`, where the part goes
in the object (signed: its bytes are written there, so completing copies nothing): such a PUT
stores one part of a multipart upload and answers its ETag, as S3's UploadPart does. Every
PUT checks a `Content-MD5` header when one is sent (a mismatch stores nothing). With the S3 backend,
presigned URLs point at the S3 server itself, so these routes answer 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import BinaryIO, cast

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from api.deps import store as get_store
from api.gates import public
from api.schemas import not_json
from api.schemas.objects import StoredObjectOut, StoredPartOut
from api.schemas.problems import problems
from api.streaming import ranged_response
from evidence.errors import AccessDenied, NotFound, TooLarge
from evidence.storage import MAX_PART_SIZE
from evidence.storage.local import LocalStore

router = APIRouter()


def _local_store(request: Request) -> LocalStore:
    store = get_store(request)
    if not isinstance(store, LocalStore):
        raise NotFound("object URLs are served by the S3 endpoint with this storage backend")
    return store


@router.put(
    "/api/v1/objects/{key:path}",
    response_model=StoredObjectOut | StoredPartOut,  # a whole object, or a part of an upload
    responses=problems(403, 404, 409, 413, 422, 507),
)
async def put_object(
    key: str,
    request: Request,
    method: str | None = None,
    expires: str | None = None,
    signature: str | None = None,
    upload_id: str | None = Query(None, alias="uploadId"),
    part_number: str | None = Query(None, alias="partNumber"),
    size: str | None = None,
    offset: str | None = None,
    _: None = Depends(public),  # the URL's own signature is the access check
) -> JSONResponse:
    store = _local_store(request)
    if upload_id is not None or part_number is not None:
        if method != "PUT":
            raise AccessDenied("not a valid presigned part URL")
        upload, number, max_size, at = store.verify_presigned_part(
            key, upload_id, part_number, expires, signature, size, offset
        )
        return await _put_part(store, key, upload, number, max_size, at, request)
    _check(store, key, "PUT", method, expires, signature)
    body = _BodyReader(request.stream())
    # The store is synchronous (file I/O, fsync): run it in a worker thread that pulls the
    # request body from the event loop chunk by chunk, so nothing is buffered whole.
    md5 = request.headers.get("content-md5")
    stored = await anyio.to_thread.run_sync(
        lambda: store.put(key, body, content_md5=md5)  # type: ignore[arg-type]
    )
    return JSONResponse({"key": stored.key, "sha256": stored.sha256, "size": stored.size})


async def _put_part(
    store: LocalStore,
    key: str,
    upload_id: str,
    part_number: int,
    max_size: int | None,
    offset: int | None,
    request: Request,
) -> JSONResponse:
    limit = MAX_PART_SIZE if max_size is None else max_size
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        # Refused before a byte is read: the URL was signed for at most `limit` bytes.
        raise TooLarge(f"this part may hold at most {limit} bytes, the request says {declared}")
    body = cast(BinaryIO, _BodyReader(request.stream()))  # read(n) is all the store calls
    md5 = request.headers.get("content-md5")
    part = await anyio.to_thread.run_sync(
        lambda: store.put_part(
            key, upload_id, part_number, body, content_md5=md5, max_size=limit, offset=offset
        )
    )
    return JSONResponse(
        {"part_number": part.number, "size": part.size, "etag": part.etag},
        headers={"ETag": f'"{part.etag}"'},  # what S3 clients read from UploadPart
    )


@router.get(
    "/api/v1/objects/{key:path}",
    response_class=Response,
    responses=not_json("the object, whole or the range asked for", "application/octet-stream")
    | problems(403, 404, 416, 422),
)
async def get_object(
    key: str,
    request: Request,
    method: str | None = None,
    expires: str | None = None,
    signature: str | None = None,
    _: None = Depends(public),  # the URL's own signature is the access check
) -> Response:
    store = _local_store(request)
    _check(store, key, "GET", method, expires, signature)
    info = await anyio.to_thread.run_sync(store.stat, key)
    return await ranged_response(request, store, info, media_type="application/octet-stream")


def _check(
    store: LocalStore,
    key: str,
    http_method: str,
    method: str | None,
    expires: str | None,
    signature: str | None,
) -> None:
    # The signed method must be this request's: a GET URL cannot be replayed as a PUT.
    store.verify_presigned(key, method if method == http_method else "", expires, signature)


class _BodyReader:
    """A blocking `read(n)` over the request's async body stream, for use in a worker thread
    started by anyio.

    Each read hops back to the event loop once and gathers there as many of the server's
    chunks (tens of KiB each) as it needs: one hop per MiB rather than one per chunk, which
    is what the thread hand-over costs (bench/ingest.py).
    """

    def __init__(self, chunks: AsyncIterator[bytes]):
        self._chunks = chunks
        self._rest = b""  # what the last read gathered beyond what it returned
        self._done = False

    async def _gather(self, want: int) -> list[bytes]:
        got = [self._rest] if self._rest else []
        have = len(self._rest)
        self._rest = b""
        while have < want and not self._done:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._done = True
                break
            got.append(chunk)
            have += len(chunk)
        return got

    def read(self, n: int = -1) -> bytes:
        want = n if n is not None and n > 0 else 1024 * 1024
        if self._done and not self._rest:
            return b""
        got = anyio.from_thread.run(self._gather, want)
        data = got[0] if len(got) == 1 else b"".join(got)
        if len(data) > want:
            data, self._rest = data[:want], data[want:]
        return data
