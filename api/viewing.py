"""Serving `/api/v1/viewings/{token}`: the Range requests of an opened viewing.

Access was checked and the ledger entry written when the viewing was opened
(evidence/viewings.py). Here each request is answered from the signed token alone: no
database, no session, no policy, no per-request middleware of the app behind it. That is what
lets a player's many Range requests run at the speed of the disk (bench/serve.py).

- local store: the bytes, with Range (206), If-Range and the object's SHA-256 as strong ETag;
- local store with `EVIDENCE_VIEWING_ACCEL_REDIRECT` set (nginx in front): an empty answer
  whose `X-Accel-Redirect` names the object's file under that internal location, so nginx
  serves the ranges (docs/media.md);
- S3: 307 to a presigned GET of the object, good until the viewing expires; the client
  sends its Range there.

It is plain ASGI, outside FastAPI's routing, for the same reason.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from urllib.parse import quote

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import problem
from api.security import HEADERS
from evidence.context import Context
from evidence.errors import EvidenceError, ObjectNotFound, RangeNotSatisfiable
from evidence.storage import CHUNK, ObjectStore, requested_range
from evidence.storage.local import LocalStore
from evidence.viewings import ROUTE, Grant, verify

_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
# What every answer carries: the app's security headers (this path skips its middleware),
# and never cached or referred on: the URL is a capability.
_COMMON = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()] + [
    (b"cache-control", b"private, no-store"),
    (b"accept-ranges", b"bytes"),
]


_SEEN_MAX = 10_000


@dataclass(frozen=True)
class _Served:
    grant: Grant
    headers: tuple[tuple[bytes, bytes], ...]  # those every answer to this token carries
    path: str  # the object's file (local store), "" otherwise


class ViewingServer:
    """ASGI middleware: answers viewing URLs itself, passes everything else to `app`."""

    def __init__(self, app: ASGIApp, ctx: Context):
        self.app = app
        self.key = ctx.viewing_key  # read once: the serving path touches no file but the object
        self.store: ObjectStore = ctx.store
        accel = ctx.settings.viewing_accel_redirect
        self.accel = accel.rstrip("/") + "/" if accel else None
        # Tokens already verified, with what answering them needs: a player sends dozens of
        # Range requests per viewing, and checking the MAC and resolving the file's path
        # each time was most of a request's cost. The expiry is still checked every time.
        self._seen: dict[str, _Served] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(ROUTE):
            await self.app(scope, receive, send)
            return
        try:
            await self._serve(scope, receive, send)
        except EvidenceError as exc:
            resp = problem(exc.status, exc.title, str(exc))
            if isinstance(exc, RangeNotSatisfiable) and exc.size is not None:
                resp.headers["Content-Range"] = f"bytes */{exc.size}"
            await resp(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await problem(405, "Method not allowed", "a viewing URL is read with GET")(
                scope, receive, send
            )
            return
        served = self._lookup(scope["path"][len(ROUTE) :])
        grant = served.grant
        headers = list(served.headers)
        if not isinstance(self.store, LocalStore):
            await self._redirect(grant, headers, send)
            return
        if self.accel is not None:
            await self._accel(grant, headers, send)
            return
        req = dict(scope["headers"])
        span = requested_range(
            _text(req.get(b"range")), _text(req.get(b"if-range")), grant.sha256, grant.size
        )
        if span is None:
            start, stop, status = 0, grant.size, 200
        else:
            start, stop, status = span[0], span[1] + 1, 206
            headers.append((b"content-range", f"bytes {start}-{span[1]}/{grant.size}".encode()))
        headers.append((b"content-length", str(stop - start).encode()))
        if method == "HEAD" or stop == start:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await self._send_bytes(served, start, stop, status, headers, send)

    def _lookup(self, token: str) -> _Served:
        now = time.time()
        served = self._seen.get(token)
        if served is not None and served.grant.expires > now:
            return served
        grant = verify(self.key, token, now)  # refuses an expired one, cached or not
        headers = list(_COMMON)
        headers.append((b"content-type", grant.media_type.encode()))
        if grant.sha256:
            headers.append((b"etag", f'"{grant.sha256}"'.encode()))
        if grant.filename:
            safe = "".join(ch for ch in grant.filename if ch.isalnum() or ch in "._-")
            headers.append(
                (b"content-disposition", f'attachment; filename="{safe or "download"}"'.encode())
            )
        path = str(self.store.object_path(grant.key)) if isinstance(self.store, LocalStore) else ""
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()  # simpler than an LRU, and a re-verify costs microseconds
        served = self._seen[token] = _Served(grant, tuple(headers), path)
        return served

    async def _send_bytes(
        self, served: _Served, start: int, stop: int, status: int, headers: list, send: Send
    ) -> None:
        try:
            fd = os.open(served.path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {served.grant.key}: the footage was removed") from None
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            at = start
            while at < stop:
                n = min(CHUNK, stop - at)
                # From the page cache without blocking the event loop, or from the disk in a
                # worker thread: a player's ranges are mostly cached, and a thread hop for
                # each would cost more than the read itself (bench/serve.py).
                chunk = _read_cached(fd, at, n)
                if chunk is None:
                    chunk = await anyio.to_thread.run_sync(os.pread, fd, n, at)
                if not chunk:
                    break  # the file is shorter than its token says: the client sees it short
                at += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": at < stop})
        finally:
            os.close(fd)

    async def _redirect(self, grant: Grant, headers: list, send: Send) -> None:
        left = max(1, grant.expires - int(time.time()))
        url = await anyio.to_thread.run_sync(
            self.store.presign_get, grant.key, dt.timedelta(seconds=left)
        )
        headers.append((b"location", url.encode()))
        headers.append((b"content-length", b"0"))
        await send({"type": "http.response.start", "status": 307, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _accel(self, grant: Grant, headers: list, send: Send) -> None:
        # nginx serves the file (and the Range) from its internal location; it keeps the
        # headers set here that it does not set itself (ETag, disposition, cache, security).
        headers.append((b"x-accel-redirect", (self.accel + quote(grant.key)).encode()))
        headers.append((b"content-length", b"0"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _read_cached(fd: int, at: int, n: int) -> bytearray | None:
    """`n` bytes at `at` if all are in the page cache (RWF_NOWAIT), else None.

    The buffer is the response body as it is: the server's transport may keep it until the
    socket takes it, so it is never reused, and copying it into `bytes` cost more than the
    read (a second large allocation, its pages faulted in afresh)."""
    if not _NOWAIT:
        return None  # no way to ask without blocking: every read goes to a thread
    buf = bytearray(n)
    try:
        got = os.preadv(fd, [buf], at, _NOWAIT)
    except OSError:  # BlockingIOError: not cached; EOPNOTSUPP: a filesystem without it
        return None
    if got < n:
        return None  # partly cached: read it where blocking is allowed
    return buf


def _text(raw: bytes | None) -> str | None:
    return raw.decode("latin-1") if raw is not None else None
