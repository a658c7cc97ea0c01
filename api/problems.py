"""RFC 9457 problem documents for every error the API returns."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from evidence.errors import DiskFull, EvidenceError, TooManyAttempts, is_disk_full

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


def problem(status: int, title: str, detail: str = "", **extra: object) -> JSONResponse:
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    @app.exception_handler(EvidenceError)
    async def _evidence_error(_req: Request, exc: EvidenceError) -> JSONResponse:
        resp = problem(exc.status, exc.title, str(exc))
        if isinstance(exc, TooManyAttempts):  # a rate limit says when to come back
            resp.headers["Retry-After"] = str(exc.retry_after)
        return resp

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        resp = problem(exc.status_code, _title(exc.status_code), str(exc.detail or ""))
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    @app.exception_handler(DataError)
    async def _data_error(req: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried, e.g. PostgreSQL and a NUL
        # character in an id, a filter or a form field: bad input, not a server fault.
        log.warning("%s %s: the database refused a value: %s", req.method, req.url.path, exc.orig)
        return problem(
            422,
            "Invalid input",
            "A value in the request cannot be stored or "
            "searched for (text may not contain NUL characters).",
        )

    @app.exception_handler(OSError)
    async def _os_error(req: Request, exc: OSError) -> JSONResponse:
        if is_disk_full(exc):
            return _disk_full(req, exc)
        log.error("%s %s failed", req.method, req.url.path, exc_info=exc)
        return problem(500, "Internal error", "The server could not complete the request.")

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_unavailable(req: Request, exc: OperationalError) -> JSONResponse:
        if is_disk_full(exc):
            return _disk_full(req, exc)
        # Restarting, failing over or unreachable: nothing was changed (the transaction
        # rolled back), and the same request will work again when the database is back.
        # The driver's words (host, port) stay in the log.
        log.warning("%s %s: the database is unavailable: %s", req.method, req.url.path, exc.orig)
        resp = problem(
            503,
            "Database unavailable",
            "The store's database is not answering "
            "right now; nothing was changed. Retry in a few seconds.",
        )
        resp.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return resp

    @app.exception_handler(ResponseValidationError)
    async def _answer_off_schema(req: Request, exc: ResponseValidationError) -> JSONResponse:
        # An answer that is not its documented model (api/schemas): a field the schema does
        # not declare, or one missing. A fault of the store, and nothing of it is sent.
        log.error(
            "%s %s: the answer does not match its schema (api/schemas): %s",
            req.method,
            req.url.path,
            # Where and what, not the values: the answer may hold what the caller may see
            # and the log may not (an enrolment link, a device key).
            [(e.get("loc"), e.get("msg")) for e in exc.errors()],
        )
        return problem(500, "Internal error", "The server could not complete the request.")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")}
            for e in exc.errors()
        ]
        return problem(422, "Invalid request", "The request did not validate.", errors=errors)


RETRY_AFTER_SECONDS = 5


def _disk_full(req: Request, exc: Exception) -> JSONResponse:
    """507: the store's disk is full, said in words with what to do (and nothing half-stored)."""
    log.error("%s %s: the disk is full: %s", req.method, req.url.path, exc)
    # The database's own disk: nothing can be recorded, so nothing is done (a sign-in whose
    # ledger entry cannot be written is refused, never let through unrecorded).
    full = DiskFull("the database cannot record this request" if hasattr(exc, "orig") else "")
    resp = problem(full.status, full.title, str(full))
    resp.headers["Retry-After"] = str(RETRY_AFTER_SECONDS * 12)
    return resp


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
