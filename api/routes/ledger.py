"""The ledger's public face: checkpoint, key, entries and RFC 9162 proofs.

These routes carry no footage and no personal data beyond what entries record, and
auditors and the defence must be able to fetch them with standard tools.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from api.gates import gate, public
from api.schemas import ledger as out
from api.schemas.problems import PUBLIC, SIGNED_IN, problems
from evidence.access import Principal
from evidence.errors import ProofError
from evidence.ledger.service import Ledger
from evidence.types import MAX_BIGINT

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"])
MAX_ENTRIES_PAGE = 1000


def _ledger(request: Request) -> Ledger:
    return request.app.state.ctx.ledger


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


@router.get(
    "/checkpoint", response_class=PlainTextResponse, responses=PUBLIC | problems(400, 404, 422)
)
def checkpoint(
    request: Request, size: int | None = Query(None, ge=1, le=MAX_BIGINT), _: None = Depends(public)
) -> str:
    # Public: a tree size and a signed root reveal nothing, and anyone holding an old
    # checkpoint (the defence, a court) must be able to check the log only grew.
    """The latest signed checkpoint, or with `size` the earliest one covering that many entries."""
    ledger = _ledger(request)
    return ledger.latest_checkpoint() if size is None else ledger.checkpoint_covering(size)


@router.get("/key", response_class=PlainTextResponse)
def key(request: Request, _: None = Depends(public)) -> str:
    return _ledger(request).verifier_key + "\n"


@router.get("/entries", response_model=out.EntriesOut, responses=SIGNED_IN | problems(400))
def entries(
    request: Request,
    start: int = Query(0, ge=0, le=MAX_BIGINT),
    end: int | None = Query(None, ge=0, le=MAX_BIGINT),
    _: Principal = Depends(gate("ledger.entries")),
) -> dict:
    end = start + MAX_ENTRIES_PAGE if end is None else end
    if end < start:
        raise ProofError(f"end ({end}) is before start ({start})")
    end = min(end, start + MAX_ENTRIES_PAGE, MAX_BIGINT)
    rows = _ledger(request).entries(start, end)
    return {"entries": [{"index": i, "entry": _b64(e)} for i, e in rows]}


@router.get(
    "/proofs/inclusion", response_model=out.InclusionProofOut, responses=SIGNED_IN | problems(400)
)
def inclusion(
    request: Request,
    index: int = Query(..., ge=0, le=MAX_BIGINT),
    tree_size: int = Query(..., ge=1, le=MAX_BIGINT),
    _: Principal = Depends(gate("ledger.read")),
) -> dict:
    hashes = _ledger(request).inclusion_proof(index, tree_size)
    return {"index": index, "tree_size": tree_size, "hashes": [_b64(h) for h in hashes]}


@router.get(
    "/proofs/consistency",
    response_model=out.ConsistencyProofOut,
    responses=SIGNED_IN | problems(400),
)
def consistency(
    request: Request,
    first: int = Query(..., ge=1, le=MAX_BIGINT),
    second: int = Query(..., ge=1, le=MAX_BIGINT),
    _: Principal = Depends(gate("ledger.read")),
) -> dict:
    hashes = _ledger(request).consistency_proof(first, second)
    return {"first": first, "second": second, "hashes": [_b64(h) for h in hashes]}
