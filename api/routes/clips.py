"""Clip search, detail, footage (audited, with a reason) and annotations."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from api.gates import gate
from api.schemas import clips as out
from api.schemas import not_json
from api.schemas import viewings as viewing_out
from api.schemas.problems import CHANGE, FOOTAGE, ONE_OBJECT, SIGNED_IN, problems
from api.streaming import footage_response
from evidence import redactions, viewings
from evidence.access import REASON_MAX, Principal
from evidence.cameras import service as cameras
from evidence.clips import service
from evidence.clips.service import SearchFilters
from evidence.media.redaction import MAX_MUTE_RANGES, MAX_REDACTION_BOXES
from evidence.types import MAX_BIGINT

router = APIRouter(prefix="/api/v1", tags=["clips"])


def _ctx(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.ctx


@router.get("/clips", response_model=out.ClipPageOut, responses=SIGNED_IN)
def search_clips(
    request: Request,
    officer_id: str | None = None,
    device_id: str | None = None,
    recorded_from: dt.datetime | None = Query(None, alias="from"),
    recorded_to: dt.datetime | None = Query(None, alias="to"),
    case_id: str | None = None,
    category: str | None = None,
    tag: str | None = None,
    q: str | None = Query(None, max_length=200, description="3 characters or more"),
    state: str | None = None,
    limit: int = Query(25, ge=1, le=100),
    before: str | None = Query(None, max_length=200, description="a page's next_before"),
    principal: Principal = Depends(gate("clips.search")),
) -> dict:
    """Newest recorded first, a page at a time: the next page is `before=` the previous
    page's `next_before` (null on the last page; docs/search.md)."""
    filters = SearchFilters(
        officer_id,
        device_id,
        _utc(recorded_from),
        _utc(recorded_to),
        case_id,
        category,
        tag,
        q,
        state,
    )
    page = service.search(_ctx(request), principal, filters, before=before, limit=limit)
    return {"items": page.items, "next_before": page.next_before}


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


# Before /clips/{clip_id}, which would otherwise take "unattributed" for a clip id.
@router.get("/clips/unattributed", response_model=out.UnattributedPageOut, responses=SIGNED_IN)
def unattributed_clips(
    request: Request,
    limit: int = Query(25, ge=1, le=100),
    before: str | None = Query(None, max_length=200, description="a page's next_before"),
    principal: Principal = Depends(gate("clips.attribute")),
) -> dict:
    """Clips no officer is attributed to: the evidence officers' queue (docs/cameras.md),
    paged as GET /clips is."""
    page = cameras.unattributed_clips(_ctx(request), principal, before=before, limit=limit)
    return {"items": page.items, "next_before": page.next_before}


@router.get(
    "/clips/{clip_id}",
    response_model=out.ClipDetailOut,
    response_model_exclude_unset=True,  # `withheld`, `reason_withheld`: only when so
    responses=ONE_OBJECT,
)
def clip_detail(
    clip_id: str, request: Request, principal: Principal = Depends(gate("clips.read"))
) -> dict:
    return service.detail(_ctx(request), principal, clip_id)


@router.get(
    "/clips/{clip_id}/stream",
    response_class=Response,
    responses=not_json("the video, whole or the range asked for", "video/mp4") | FOOTAGE,
)
async def stream_clip(
    clip_id: str,
    request: Request,
    reason: str | None = None,
    kind: str = Query(
        "proxy",
        pattern=r"^(proxy|redaction-[1-9][0-9]{0,8}|watermark-[0-9a-f]{20})$",
        description="proxy, a redacted copy: redaction-N, or a share's watermarked copy",
    ),
    principal: Principal = Depends(gate("clips.view_footage")),
) -> Response:
    """The browser proxy (or a redacted copy), with HTTP Range; needs a reason; audited."""
    return await footage_response(request, principal, clip_id, kind, reason)


class ViewingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(
        "proxy",
        pattern=r"^(proxy|original|redaction-[1-9][0-9]{0,8}|watermark-[0-9a-f]{20})$",
        description="proxy, original, or a redacted copy: redaction-N",
    )
    reason: str = Field(min_length=1, max_length=REASON_MAX)


@router.post(
    "/clips/{clip_id}/viewings",
    status_code=201,
    response_model=viewing_out.ViewingOut,
    responses=FOOTAGE,
)
def open_viewing(
    clip_id: str,
    body: ViewingBody,
    request: Request,
    principal: Principal = Depends(gate("clips.view_footage")),
) -> JSONResponse:
    """Open a viewing: access checked and one ledger entry written now, then a URL, good for
    15 minutes, that serves the bytes with Range (docs/media.md, "Viewings")."""
    source_ip = request.client.host if request.client else None
    v = viewings.open_clip_viewing(
        _ctx(request), principal, clip_id, body.kind, reason=body.reason, source_ip=source_ip
    )
    return JSONResponse(v.as_dict(), status_code=201, headers={"Location": v.url})


@router.get(
    "/clips/{clip_id}/original",
    response_class=Response,
    responses=not_json("the original bytes as docked", "application/octet-stream") | FOOTAGE,
)
async def download_original(
    clip_id: str,
    request: Request,
    reason: str | None = None,
    principal: Principal = Depends(gate("clips.view_footage")),
) -> Response:
    """The original bytes as docked; needs a reason; audited."""
    return await footage_response(request, principal, clip_id, "original", reason)


@router.get(
    "/clips/{clip_id}/thumbnail",
    response_class=Response,
    responses=not_json("the thumbnail", "image/jpeg") | FOOTAGE,
)
async def clip_thumbnail(
    clip_id: str, request: Request, principal: Principal = Depends(gate("clips.view_footage"))
) -> Response:
    return await footage_response(request, principal, clip_id, "thumbnail", None)


class CategoryBody(BaseModel):
    category: str = Field(min_length=1, max_length=64)


@router.put("/clips/{clip_id}/category", status_code=204, responses=ONE_OBJECT)
def set_category(
    clip_id: str,
    body: CategoryBody,
    request: Request,
    principal: Principal = Depends(gate("clips.categorise")),
) -> Response:
    """Evidence officers only: the category sets the clip's retention (docs/retention.md)."""
    service.set_category(_ctx(request), principal, clip_id, body.category)
    return Response(status_code=204)


class TagBody(BaseModel):
    tag: str = Field(min_length=1, max_length=64)


@router.post("/clips/{clip_id}/tags", response_model=out.TagsOut, responses=ONE_OBJECT)
def add_tag(
    clip_id: str, body: TagBody, request: Request, principal: Principal = Depends(gate("clips.tag"))
) -> dict:
    return {"tags": service.add_tag(_ctx(request), principal, clip_id, body.tag)}


@router.delete("/clips/{clip_id}/tags/{tag}", status_code=204, responses=ONE_OBJECT)
def remove_tag(
    clip_id: str, tag: str, request: Request, principal: Principal = Depends(gate("clips.tag"))
) -> Response:
    service.remove_tag(_ctx(request), principal, clip_id, tag)
    return Response(status_code=204)


class BookmarkBody(BaseModel):
    at_ms: int = Field(ge=0, le=MAX_BIGINT)
    note: str = Field(min_length=1, max_length=2000)


@router.post(
    "/clips/{clip_id}/bookmarks",
    status_code=201,
    response_model=out.BookmarkOut,
    responses=ONE_OBJECT,
)
def add_bookmark(
    clip_id: str,
    body: BookmarkBody,
    request: Request,
    principal: Principal = Depends(gate("clips.bookmark")),
) -> dict:
    return service.add_bookmark(_ctx(request), principal, clip_id, body.at_ms, body.note)


@router.get("/categories", response_model=out.CategoriesOut, responses=SIGNED_IN)
def categories(request: Request, principal: Principal = Depends(gate("clips.search"))) -> dict:
    ctx = _ctx(request)
    return {"categories": ctx.settings.categories, "reasons": ctx.settings.access_reasons}


class RedactionBox(BaseModel):
    """Pixels of the picture as shown (upright), origin top left; times in ms, inclusive."""

    x: int = Field(ge=0, le=MAX_BIGINT)
    y: int = Field(ge=0, le=MAX_BIGINT)
    w: int = Field(ge=1, le=MAX_BIGINT)
    h: int = Field(ge=1, le=MAX_BIGINT)
    start_ms: int = Field(ge=0, le=MAX_BIGINT)
    end_ms: int = Field(ge=0, le=MAX_BIGINT)


class MuteRange(BaseModel):
    start_ms: int = Field(ge=0, le=MAX_BIGINT)
    end_ms: int = Field(ge=0, le=MAX_BIGINT)


class RedactionBody(BaseModel):
    boxes: list[RedactionBox] = Field(default_factory=list, max_length=MAX_REDACTION_BOXES)
    mute: list[MuteRange] = Field(default_factory=list, max_length=MAX_MUTE_RANGES)
    reason: str = Field(min_length=1, max_length=500)


@router.post(
    "/clips/{clip_id}/redactions",
    status_code=202,
    response_model=out.RedactionRequestedOut,
    responses=CHANGE | problems(410),
)
def request_redaction(
    clip_id: str,
    body: RedactionBody,
    request: Request,
    principal: Principal = Depends(gate("clips.redact")),
) -> JSONResponse:
    """Black boxes and muted ranges over a copy (the original is never changed); a worker
    makes it, and it then shows in the clip's derivatives as `redaction-N`."""
    r = redactions.request_redaction(
        _ctx(request),
        principal,
        clip_id,
        [b.model_dump() for b in body.boxes],
        [m.model_dump() for m in body.mute],
        body.reason,
    )
    request.app.state.relay_outbox()
    return JSONResponse(
        {"kind": r["kind"], "state": r["state"]},
        status_code=202,
        headers={"Location": f"/api/v1/clips/{clip_id}"},
    )


class AttributionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_serial: str | None = Field(None, min_length=1, max_length=64)
    officer_id: str | None = Field(None, min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=REASON_MAX)


@router.get(
    "/clips/{clip_id}/attribution", response_model=out.AttributionHistoryOut, responses=ONE_OBJECT
)
def attribution_history(
    clip_id: str, request: Request, principal: Principal = Depends(gate("clips.read"))
) -> dict:
    """Every attribution of the clip to a camera and an officer, and how it was reached."""
    history = cameras.attribution_history(_ctx(request), principal, clip_id)
    return {"items": [r.as_dict() for r in history]}


@router.post("/clips/{clip_id}/attribution", response_model=out.AttributionOut, responses=CHANGE)
def reattribute(
    clip_id: str,
    body: AttributionBody,
    request: Request,
    principal: Principal = Depends(gate("clips.attribute")),
) -> dict:
    """Attribute the clip to another camera and/or officer, with a reason (in the ledger)."""
    record = cameras.reattribute(
        _ctx(request),
        principal,
        clip_id,
        camera_serial=body.camera_serial,
        officer_id=body.officer_id,
        reason=body.reason,
    )
    return record.as_dict()
