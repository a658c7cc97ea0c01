"""Court bundles: request (a worker builds it), watch progress, download (audited)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from api.gates import gate, public
from api.schemas import bundles as out
from api.schemas import not_json
from api.schemas import viewings as viewing_out
from api.schemas.problems import CHANGE, FOOTAGE, ONE_OBJECT, PUBLIC
from api.streaming import bundle_response
from evidence import viewings
from evidence.access import REASON_MAX, Principal
from evidence.bundles import service

router = APIRouter(prefix="/api/v1", tags=["bundles"])


class NewBundle(BaseModel):
    include_proxies: bool = False
    include_redactions: bool = False  # each exhibit's redaction-N copies (docs/media.md)
    # A bundle for one share's recipient: its exhibits only, redacted copies in place of the
    # originals it withholds (docs/disclosure.md).
    share_id: str | None = Field(None, min_length=1, max_length=36)


@router.post(
    "/cases/{case_id}/bundles",
    status_code=202,
    response_model=out.BundleRequestedOut,
    responses={
        200: {"model": out.BundleRequestedOut, "description": "the same bundle, reused"},
        **CHANGE,
    },
)
def request_bundle(
    case_id: str,
    request: Request,
    body: NewBundle | None = None,
    principal: Principal = Depends(gate("bundles.request")),
) -> JSONResponse:
    """202 and a new bundle being built, or 200 and the bundle already made (or being made)
    of the same exhibits and options (`"reused": true`; docs/bundles.md)."""
    b = service.request_bundle(
        request.app.state.ctx,
        principal,
        case_id,
        include_proxies=bool(body and body.include_proxies),
        include_redactions=bool(body and body.include_redactions),
        share_id=body.share_id if body else None,
    )
    request.app.state.relay_outbox()
    return JSONResponse(
        {"id": b["id"], "state": b["state"], "reused": b["reused"]},
        status_code=200 if b["reused"] else 202,
        headers={"Location": f"/api/v1/bundles/{b['id']}"},
    )


# Public, like the ledger's key: a court, the defence or anyone holding a bundle must be able
# to fetch the force's bundle-signing keys without an account. They are public keys and
# their validity periods: nothing about cases, footage or people.
# Declared before /bundles/{bundle_id}, which would otherwise take "key" for an id.
@router.get("/bundles/key", response_class=PlainTextResponse, responses=PUBLIC)
def signing_key(request: Request, _: None = Depends(public)) -> str:
    """The bundle-signing public key in force now (PEM, as signing-key.pem in a bundle)."""
    return service.signing_key_pem(request.app.state.ctx)


@router.get("/bundles/keys", response_model=out.BundleKeysOut, responses=PUBLIC)
def signing_keys(request: Request, _: None = Depends(public)) -> dict:
    """Every bundle key the force has used: key_id (hex SHA-256 of the DER public key),
    public_pem, valid_from, valid_until (null: in force). `--bundle-key` accepts this JSON."""
    return {"keys": service.published_keys(request.app.state.ctx)}


@router.get("/bundles/{bundle_id}", response_model=out.BundleOut, responses=ONE_OBJECT)
def bundle_state(
    bundle_id: str, request: Request, principal: Principal = Depends(gate("bundles.read"))
) -> dict:
    return service.get_bundle(request.app.state.ctx, principal, bundle_id)


class ViewingBody(BaseModel):
    reason: str = Field(min_length=1, max_length=REASON_MAX)


@router.post(
    "/bundles/{bundle_id}/viewings",
    status_code=201,
    response_model=viewing_out.ViewingOut,
    responses=FOOTAGE,
)
def open_viewing(
    bundle_id: str,
    body: ViewingBody,
    request: Request,
    principal: Principal = Depends(gate("bundles.read")),
) -> JSONResponse:
    """Open a download: access checked and the one `bundle.downloaded` entry written now,
    then a URL, good for 15 minutes, that serves the ZIP with Range (resumable)."""
    source_ip = request.client.host if request.client else None
    v = viewings.open_bundle_viewing(
        request.app.state.ctx, principal, bundle_id, reason=body.reason, source_ip=source_ip
    )
    return JSONResponse(v.as_dict(), status_code=201, headers={"Location": v.url})


@router.get(
    "/bundles/{bundle_id}/download",
    response_class=Response,
    responses=not_json("the bundle's ZIP, whole or the range asked for", "application/zip")
    | FOOTAGE,
)
async def download(
    bundle_id: str,
    request: Request,
    reason: str | None = None,
    principal: Principal = Depends(gate("bundles.read")),
) -> Response:
    """The ZIP, with Range; needs a reason (as footage does); one ledger entry per download."""
    return await bundle_response(request, principal, bundle_id, reason)
