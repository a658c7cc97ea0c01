"""Serving stored objects over HTTP with Range (206), If-Range and a strong ETag."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio.to_thread
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from api.problems import problem
from evidence.access import Principal
from evidence.bundles.service import open_download
from evidence.clips.service import open_footage
from evidence.errors import RangeNotSatisfiable
from evidence.storage import ObjectInfo, ObjectStore, requested_range


async def footage_response(
    request: Request, principal: Principal, clip_id: str, kind: str, reason: str | None
) -> Response:
    """Footage for the API and the UI alike: the policy and the ledger entry
    (`open_footage`), then the bytes with Range."""
    ctx = request.app.state.ctx
    source_ip = request.client.host if request.client else None
    footage = await anyio.to_thread.run_sync(
        lambda: open_footage(ctx, principal, clip_id, kind, reason=reason, source_ip=source_ip)
    )
    return await ranged_response(
        request,
        ctx.store,
        footage.info,
        media_type=footage.media_type,
        private=True,
        etag=footage.info.sha256,
        download_name=footage.filename if kind == "original" else None,
    )


async def bundle_response(
    request: Request, principal: Principal, bundle_id: str, reason: str | None
) -> Response:
    """A court bundle for the API and the UI alike: the policy and the `bundle.downloaded`
    ledger entry (`open_download`: one per download, with the reason), then the ZIP with Range."""
    ctx = request.app.state.ctx
    source_ip = request.client.host if request.client else None
    try:
        info, span = await anyio.to_thread.run_sync(
            lambda: open_download(
                ctx,
                principal,
                bundle_id,
                request.headers.get("range"),
                request.headers.get("if-range"),
                reason=reason,
                source_ip=source_ip,
            )
        )
    except RangeNotSatisfiable as exc:
        return _not_satisfiable(exc)
    return await ranged_response(
        request,
        ctx.store,
        info,
        media_type="application/zip",
        download_name=f"bundle-{bundle_id}.zip",
        private=True,
        span=span,
    )


_FROM_REQUEST: Any = object()  # ranged_response: read Range and If-Range from the request


async def ranged_response(
    request: Request,
    store: ObjectStore,
    info: ObjectInfo,
    *,
    media_type: str,
    etag: str | None = None,
    download_name: str | None = None,
    private: bool = False,
    span: tuple[int, int] | None = _FROM_REQUEST,
) -> Response:
    """`span`: the range already resolved by the caller (None: the whole object)."""
    etag = etag or info.sha256
    if span is _FROM_REQUEST:
        try:
            span = requested_range(
                request.headers.get("range"), request.headers.get("if-range"), etag, info.size
            )
        except RangeNotSatisfiable as exc:
            return _not_satisfiable(exc)
    headers = {"Accept-Ranges": "bytes"}
    if etag:
        headers["ETag"] = f'"{etag}"'
    if private:
        headers["Cache-Control"] = "private, no-store"
    if download_name:
        safe = "".join(ch for ch in download_name if ch.isalnum() or ch in "._-") or "download"
        headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    if span is None:
        chunks = await anyio.to_thread.run_sync(store.open, info.key)
        headers["Content-Length"] = str(info.size)
        status = 200
    else:
        start, end = span
        chunks = await anyio.to_thread.run_sync(store.open, info.key, start, end)
        headers["Content-Length"] = str(end - start + 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        status = 206
    return StreamingResponse(chunks, status_code=status, media_type=media_type, headers=headers)


def csv_download(lines: Iterator[str], filename: str) -> StreamingResponse:
    """A CSV made as it is sent (the access log's export), never cached."""
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
        },
    )


def _not_satisfiable(exc: RangeNotSatisfiable) -> Response:
    resp = problem(416, "Range not satisfiable", str(exc))
    if exc.size is not None:
        resp.headers["Content-Range"] = f"bytes */{exc.size}"
    return resp
