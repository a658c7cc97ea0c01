"""Public submissions (docs/public-submissions.md): an evidence officer's invitations and
review queue, and the routes a member of the public's browser calls through their link.

The public routes are open to anyone: the token in their path (256 random bits, only its
hash stored, expiring, one use) is the credential, each request counts against the link's
and the source address's rate limits, and unknown tokens against the address's guessing
limit (evidence/submissions/service.py).
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.gates import gate, public
from api.schemas import submissions as out
from api.schemas.problems import CHANGE, SIGNED_IN, problems
from evidence.access import REASON_MAX, Principal
from evidence.submissions import service
from evidence.submissions.service import Source
from evidence.types import MAX_BIGINT

router = APIRouter(prefix="/api/v1/submissions", tags=["submissions"])
public_router = APIRouter(prefix="/api/v1/public/submissions", tags=["submissions"])

PUBLIC_PROBLEMS = problems(404, 409, 410, 413, 415, 422, 429, 503)


def _ctx(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.ctx


def source_of(request: Request) -> Source:
    host = request.client.host if request.client else "unknown"
    return Source.of(host, request.headers.get("user-agent"))


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=120)
    phone: str | None = Field(None, max_length=40)
    email: str | None = Field(None, max_length=254)


class NewInvitation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: str | None = Field(None, max_length=36)
    reference: str | None = Field(None, max_length=64, description="an incident reference")
    expires_days: int | None = Field(None, ge=1, le=30, description="default 3")
    max_files: int | None = Field(None, ge=1, le=100)
    max_bytes: int | None = Field(None, ge=1, le=MAX_BIGINT)
    contact: Contact | None = None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=REASON_MAX)


@router.post(
    "/invitations",
    status_code=201,
    response_model=out.InvitationIssuedOut,
    responses=SIGNED_IN | problems(404),
)
def create_invitation(
    body: NewInvitation,
    request: Request,
    principal: Principal = Depends(gate("submissions.invite")),
) -> dict:
    issued = service.create_invitation(
        _ctx(request),
        principal,
        case_id=body.case_id,
        reference=body.reference,
        expires_days=body.expires_days,
        max_files=body.max_files,
        max_bytes=body.max_bytes,
        contact=body.contact.model_dump(exclude_none=True) if body.contact else None,
    )
    return {
        "id": issued.id,
        "url": issued.url,
        "expires_at": issued.expires_at.isoformat().replace("+00:00", "Z"),
        "max_files": issued.max_files,
        "max_bytes": issued.max_bytes,
    }


@router.get("/invitations", response_model=out.InvitationListOut, responses=SIGNED_IN)
def list_invitations(
    request: Request, principal: Principal = Depends(gate("submissions.invite"))
) -> dict:
    return {"items": service.list_invitations(_ctx(request), principal)}


@router.post(
    "/invitations/{invitation_id}/withdraw", response_model=out.InvitationOut, responses=CHANGE
)
def withdraw_invitation(
    invitation_id: str,
    body: Decision,
    request: Request,
    principal: Principal = Depends(gate("submissions.invite")),
) -> dict:
    return service.withdraw_invitation(_ctx(request), principal, invitation_id, reason=body.reason)


@router.get("/queue", response_model=out.ReviewQueueOut, responses=SIGNED_IN)
def review_queue(
    request: Request, principal: Principal = Depends(gate("submissions.review"))
) -> dict:
    return {"items": service.review_queue(_ctx(request), principal)}


@router.post("/files/{file_id}/accept", response_model=out.DecisionOut, responses=CHANGE)
def accept(
    file_id: str,
    body: Decision,
    request: Request,
    principal: Principal = Depends(gate("submissions.review")),
) -> dict:
    done = service.accept(_ctx(request), principal, file_id, reason=body.reason)
    request.app.state.relay_outbox()  # the probe, proxy and thumbnail go to a worker now
    return done


@router.post("/files/{file_id}/reject", response_model=out.DecisionOut, responses=CHANGE)
def reject(
    file_id: str,
    body: Decision,
    request: Request,
    principal: Principal = Depends(gate("submissions.review")),
) -> dict:
    return service.reject(_ctx(request), principal, file_id, reason=body.reason)


# -- the public link ---------------------------------------------------------------------------


class NewFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=1, le=MAX_BIGINT)


class Finish(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field("", max_length=service.DESCRIPTION_MAX)


@public_router.get("/{token}", response_model=out.PublicLinkOut, responses=PUBLIC_PROBLEMS)
def describe_link(token: str, request: Request, _: None = Depends(public)) -> dict:
    return dataclasses.asdict(service.describe_link(_ctx(request), token, source_of(request)))


@public_router.post(
    "/{token}/files",
    status_code=201,
    response_model=out.SubmittedFileOut,
    responses=PUBLIC_PROBLEMS,
)
def add_file(token: str, body: NewFile, request: Request, _: None = Depends(public)) -> dict:
    view = service.add_file(
        _ctx(request), token, source_of(request), filename=body.filename, size=body.size
    )
    return dataclasses.asdict(view)


@public_router.put(
    "/{token}/files/{file_id}/chunks/{number}",
    response_model=out.SubmittedFileOut,
    responses=PUBLIC_PROBLEMS,
)
async def put_chunk(
    token: str, file_id: str, number: int, request: Request, _: None = Depends(public)
) -> dict:
    # One chunk (at most EVIDENCE_SUBMISSION_CHUNK_BYTES, under the request body limit) in
    # memory; the file itself is only ever streamed.
    data = await request.body()
    ctx = _ctx(request)
    view = await run_in_threadpool(
        service.put_chunk, ctx, token, source_of(request), file_id, number, data
    )
    return dataclasses.asdict(view)


@public_router.post(
    "/{token}/files/{file_id}/complete",
    response_model=out.SubmittedFileOut,
    responses=PUBLIC_PROBLEMS,
)
def complete_file(token: str, file_id: str, request: Request, _: None = Depends(public)) -> dict:
    view = service.complete_file(_ctx(request), token, source_of(request), file_id)
    return dataclasses.asdict(view)


@public_router.post("/{token}/finish", response_model=out.ReceiptOut, responses=PUBLIC_PROBLEMS)
def finish(token: str, body: Finish, request: Request, _: None = Depends(public)) -> dict:
    done = service.finish(_ctx(request), token, source_of(request), description=body.description)
    return dataclasses.asdict(done)


@public_router.get("/{token}/receipt", response_model=out.ReceiptOut, responses=PUBLIC_PROBLEMS)
def receipt(token: str, request: Request, _: None = Depends(public)) -> dict:
    return dataclasses.asdict(service.receipt(_ctx(request), token, source_of(request)))
