"""The problem document (RFC 9457) every error answer is, for the routes' `responses=`.

api/problems.py makes them; this documents them. FastAPI puts an additional response's
model under the route's media type (`application/json`, or `text/plain`);
`document_problems` moves the error answers' schema to `application/problem+json`, the
media type they are sent with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from api.problems import PROBLEM_JSON


class InvalidField(BaseModel):
    loc: list[str]
    msg: str


class Problem(BaseModel):
    """An error, as RFC 9457 describes it. Extension members may follow (RFC 9457 §3.2):
    `errors` for a request that did not validate, `error` for a refused sign-in."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[InvalidField] | None = None


_MEANING = {
    400: "the request cannot be read",
    401: "not signed in, or the credential is not valid: the answer's WWW-Authenticate "
    "header names the scheme",
    403: "the caller's role or access does not allow this",
    404: "no such object that the caller can see",
    409: "the object's state does not allow this now",
    410: "gone: a clip disposed of under the retention policy (its record remains, its "
    "bytes are gone), or a public submission link that expired, was used or was withdrawn",
    413: "the request body is too large",
    415: "the file's bytes are not of a kind that is accepted (sniffed, not its name)",
    416: "the byte range cannot be served",
    422: "the request did not validate, or a value in it is refused: `detail` says which",
    429: "too many attempts: retry after the Retry-After header's seconds",
    503: "the database is unavailable: nothing was changed, retry after Retry-After",
    507: "the store's disk is full: nothing was stored",
}

Responses = dict[int | str, dict[str, Any]]


def problems(*statuses: int) -> Responses:
    """`responses=` for a route that may answer with these problem statuses."""
    return {
        status: {"model": Problem, "description": _MEANING[status], "content": {PROBLEM_JSON: {}}}
        for status in statuses
    }


# What any route a person calls may answer besides its own errors.
SIGNED_IN = problems(401, 403, 422, 503)
# The same, for a route about one object named in its path.
ONE_OBJECT = problems(401, 403, 404, 422, 503)
# A change to one object, which its state may refuse.
CHANGE = problems(401, 403, 404, 409, 422, 503)
# Footage leaving the store: a reason, a ledger entry, HTTP Range.
FOOTAGE = problems(401, 403, 404, 410, 416, 422, 503)
# Anyone may call it.
PUBLIC = problems(503)


def document_problems(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`, with each error answer's schema under `application/problem+json`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            for operations in doc.get("paths", {}).values():
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if status[0] in "45" and PROBLEM_JSON in content:
                            # Under the route's own media type: application/json, or
                            # text/plain for a route that answers text.
                            for media_type in [m for m in content if m != PROBLEM_JSON]:
                                content[PROBLEM_JSON] = content.pop(media_type)
        return app.openapi_schema  # type: ignore[return-value]  # set by build()

    return openapi
