"""Rendering for the UI: the Jinja2 environment, display filters, flash messages, static
files, and `UIRoute`, which turns errors into HTML pages and a missing session into a
redirect to the sign-in page (the JSON API answers problem+json instead)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import mimetypes
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from api.ui import session as ui_session
from evidence.access import ACTIONS, Principal
from evidence.errors import EvidenceError
from evidence.ledger import catalogue

API_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = API_DIR / "templates"
STATIC_DIR = API_DIR / "static"
FLASH_COOKIE = "evidence_ui_flash"

ROLE_LABELS = {
    "officer": "Officer",
    "evidence_officer": "Evidence officer",
    "cps": "CPS",
    "external": "External recipient",
    "auditor": "Auditor",
    "admin": "Administrator",
}

STATE_LABELS = {
    "uploading": "Uploading",
    "verifying": "Verifying",
    "stored": "Stored",
    "ready": "Ready",
    "unplayable": "Unplayable",
    "rejected": "Rejected",
    "disposed": "Disposed",
}


# Entry fields shown as the timeline's "details", in this order; the rest stay in the entry.
_DETAIL_KEYS = (
    "reason",
    "tag",
    "category",
    "previous",
    "note",
    "at_ms",
    "exhibit_ref",
    "previous_ref",
    "kind",
    "grantee",
    "member",
    "method",
    "source_ip",
    "declared_sha256",
    "actual_sha256",
)


# -- filters -----------------------------------------------------------------------------------


def _parse_time(value: str | dt.datetime | None) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def when(value: str | dt.datetime | None, seconds: bool = True) -> str:
    """'2024-07-03 21:45:00' in UTC (every time in the store is UTC; pages say so)."""
    t = _parse_time(value)
    if t is None:
        return "—"
    t = t.astimezone(dt.UTC) if t.tzinfo else t
    return t.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    s = round(ms / 1000)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def clock_ms(ms: int | None) -> str:
    """A player position: '01:23.450'."""
    if ms is None:
        return "—"
    m, rem = divmod(int(ms), 60_000)
    return f"{m:02d}:{rem / 1000:06.3f}"


def filesize(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} bytes"


def short(value: str | None, n: int = 12) -> str:
    if not value:
        return "—"
    return value if len(value) <= n else value[:n] + "…"


def breakable(value: str | None) -> Markup:
    """Escaped text with line-break opportunities after _ - / (file names, ids)."""
    return Markup(re.sub(r"([_\-/])", r"\1<wbr>", str(escape(value or ""))))


def sentence(value: str | None) -> str:
    """A service's message as a sentence: capitalised, with a full stop."""
    text = (value or "").strip()
    if not text:
        return ""
    text = text[:1].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def event_label(type_: str | None) -> str:
    return catalogue.label(type_) if type_ else "event"


def event_details(entry: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    keys = _DETAIL_KEYS
    if entry.get("type") == "clip.attributed":
        keys = ("reason", "previous", "new")
    if entry.get("type") in ("clip.ingested", "derivative.created", "case.exhibit_added"):
        keys = (*keys, "sha256")  # the hash this entry vouches for
    for key in keys:
        if key in entry and entry[key] not in (None, ""):
            value = entry[key]
            if key == "at_ms":
                out.append(("at", clock_ms(int(value))))
            elif isinstance(value, dict):  # e.g. a re-attribution's previous and new values
                out.append(
                    (
                        key,
                        ", ".join(
                            f"{k.replace('_', ' ')} {'none' if v is None else v}"
                            for k, v in value.items()
                        ),
                    )
                )
            else:
                out.append((key.replace("_", " "), str(value)))
    return out


def clip_of(entry: dict[str, Any]) -> str | None:
    clip = entry.get("subject", {}).get("clip")
    return clip if isinstance(clip, str) else None


# -- static files ----------------------------------------------------------------------------


def _static_files() -> dict[str, tuple[Path, str, str]]:
    """name -> (path, media type, short content hash); only these names are ever served."""
    out = {}
    for path in sorted(STATIC_DIR.iterdir()) if STATIC_DIR.is_dir() else []:
        if path.is_file() and not path.name.startswith("."):
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if path.suffix == ".js":
                media = "text/javascript"
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            out[path.name] = (path, media, digest)
    return out


STATIC = _static_files()


def static_url(name: str) -> str:
    """A cache-busting URL: the content hash changes whenever the file does."""
    entry = STATIC.get(name)
    return f"/ui/static/{name}" + (f"?v={entry[2]}" if entry else "")


# -- templates ---------------------------------------------------------------------------------

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters.update(
    {
        "when": when,
        "duration": duration,
        "clock_ms": clock_ms,
        "filesize": filesize,
        "short": short,
        "breakable": breakable,
        "event_label": event_label,
        "event_details": event_details,
        "clip_of": clip_of,
        "sentence": sentence,
    }
)
templates.env.globals.update(
    {
        "static": static_url,
        "ROLE_LABELS": ROLE_LABELS,
        "STATE_LABELS": STATE_LABELS,
    }
)


def may(principal: Principal | None, action: str) -> bool:
    return principal is not None and principal.role in ACTIONS[action]


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    principal: Principal | None = getattr(request.state, "principal", None)
    flash = _read_flash(request)
    context.update(
        {
            "principal": principal,
            "may": lambda action: may(principal, action),
            "csrf": ui_session.csrf_token(request),
            "flash": flash,
            "path": request.url.path,
        }
    )
    response = templates.TemplateResponse(request, name, context, status_code=status)
    if flash is not None:
        response.delete_cookie(
            FLASH_COOKIE,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=ui_session.is_https(request),
        )
    return response


# -- flash messages (one message carried across a POST-redirect-GET) ---------------------------


def see_other(
    request: Request, url: str, *, ok: str | None = None, error: str | None = None
) -> Response:
    response = RedirectResponse(url, status_code=303)
    if ok or error:
        data = json.dumps({"kind": "error" if error else "ok", "text": (error or ok or "")[:500]})
        response.set_cookie(
            FLASH_COOKIE,
            base64.urlsafe_b64encode(data.encode()).decode(),
            path="/ui",
            httponly=True,
            samesite="strict",
            max_age=60,
            secure=ui_session.is_https(request),
        )
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
        return {
            "kind": "error" if data.get("kind") == "error" else "ok",
            "text": str(data.get("text", ""))[:500],
        }
    except (ValueError, AttributeError):
        return None


# -- errors as pages ------------------------------------------------------------------------------


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    return render(request, "error.html", status, title=title, detail=detail, status_code=status)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        parts.append(f"{'.'.join(loc) or 'request'}: {e.get('msg', '')}")
    return "; ".join(parts) or "the request did not validate"


class UIRoute(APIRoute):
    """Every /ui route: HTML error pages, sign-in redirects, session renewal cookies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def ui_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except ui_session.LoginRequired as exc:
                response = RedirectResponse(
                    ui_session.login_url(exc.next_url, expired=exc.expired), status_code=303
                )
                if exc.expired:
                    ui_session.end_session(request, response)
                return response
            except EvidenceError as exc:
                response = error_page(request, exc.status, exc.title, str(exc))
            except RequestValidationError as exc:
                response = error_page(request, 422, "Invalid request", _validation_detail(exc))
            except StarletteHTTPException as exc:
                response = error_page(request, exc.status_code, "Error", str(exc.detail or ""))
            ui_session.apply_renewal(request, response)
            return response

        return ui_handler
