"""Keyset paging of clip lists: newest recorded first, then by id, one page at a time.

A page is asked for with `before`, the opaque cursor the previous page returned
(`next_before`), never with a page number: an offset makes the database walk and throw away
every row before it, and a count of every match is a scan of them all (docs/search.md).
Each page here is at most `limit + 1` rows read along an index:

- clips with a recording time come first, newest first, by `(recorded_at, id)`; those
  without one (not yet probed, unplayable) follow, by id. Each group is its own query, so
  each walks its index in order (`recorded_at IS NULL` is an equality on the same index);
- each part of the access rule (evidence.access.clip_filter_parts) is its own query too,
  and the parts' pages are merged: a clip in two parts (an officer's own clip in one of
  their cases) appears once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, union
from sqlalchemy.orm import Session

from evidence.clips.models import Clip
from evidence.errors import InvalidInput

MAX_LIMIT = 100
DEFAULT_LIMIT = 25
# A list shows how many clips match only up to here ("1,000+"): counting further is reading
# every match, which at a million clips is the slowest part of a search.
COUNT_CAP = 1000


class UnknownCursor(InvalidInput):
    """A `before` this list did not give out (edited, or from another list): 400."""

    status = 400
    title = "Unknown page cursor"


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: its last clip's recording time (None: not recorded) and id."""

    recorded_at: dt.datetime | None
    clip_id: str

    def encode(self) -> str:
        at = self.recorded_at.astimezone(dt.UTC).isoformat() if self.recorded_at else None
        raw = json.dumps([at, self.clip_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            at, clip_id = json.loads(raw)
            if not isinstance(clip_id, str) or not 1 <= len(clip_id) <= 36:
                raise ValueError("no clip id")
            when = dt.datetime.fromisoformat(at) if at is not None else None
            if when is not None and when.tzinfo is None:
                raise ValueError("no time zone")
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
            raise UnknownCursor(
                "before is not a cursor this list gave out: use a page's next_before as it "
                "is, or leave before out to start from the newest clips"
            ) from exc
        return cls(when, clip_id)


@dataclass(frozen=True)
class Page:
    clips: list[Clip]
    next_before: str | None


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit is 1 to {MAX_LIMIT} clips a page")


def _groups(before: Cursor | None) -> list[tuple[ColumnElement[bool], tuple]]:
    """The WHERE and ORDER BY of each group still to read, in list order."""
    dated, undated = Clip.recorded_at.is_not(None), Clip.recorded_at.is_(None)
    dated_order = (Clip.recorded_at.desc(), Clip.id.desc())
    undated_order = (Clip.id.desc(),)
    if before is None:
        return [(dated, dated_order), (undated, undated_order)]
    if before.recorded_at is None:
        return [(and_(undated, Clip.id < before.clip_id), undated_order)]
    t = before.recorded_at
    # `<= t` first: an index range on recorded_at on both engines, which a row-value or an
    # OR alone would not give SQLite.
    after = and_(dated, Clip.recorded_at <= t, or_(Clip.recorded_at < t, Clip.id < before.clip_id))
    return [(after, dated_order), (undated, undated_order)]


def _page_query(
    parts: Sequence[ColumnElement[bool]],
    where: Sequence[ColumnElement[bool]],
    group: ColumnElement[bool],
    order: tuple,
    n: int,
) -> Select:
    """The next n clips of one group: one query, each part of the rule its own branch."""
    if len(parts) == 1:
        return select(Clip).where(parts[0], group, *where).order_by(*order).limit(n)
    branches = [
        select(Clip.id, Clip.recorded_at).where(part, group, *where).order_by(*order).limit(n)
        for part in parts
    ]
    # UNION (not ALL): a clip in two parts (an officer's own clip in their case) once.
    merged = union(*(select(*b.subquery().c) for b in branches)).subquery()
    dated = len(order) == 2
    by = (merged.c.recorded_at.desc(), merged.c.id.desc()) if dated else (merged.c.id.desc(),)
    return select(Clip).join(merged, merged.c.id == Clip.id).order_by(*by).limit(n)


def newest_first(
    s: Session,
    parts: Sequence[ColumnElement[bool]],
    where: Sequence[ColumnElement[bool]],
    *,
    before: Cursor | None,
    limit: int,
) -> Page:
    """One page of the clips matching any of `parts` and all of `where`, after `before`."""
    check_limit(limit)
    if not parts:
        return Page([], None)
    clips: list[Clip] = []
    for group, order in _groups(before):
        want = limit + 1 - len(clips)
        if want <= 0:
            break
        clips += s.scalars(_page_query(parts, where, group, order, want)).all()
    more = len(clips) > limit
    clips = clips[:limit]
    last = clips[-1] if clips and more else None
    return Page(clips, Cursor(last.recorded_at, last.id).encode() if last else None)


def count_capped(
    s: Session, parts: Sequence[ColumnElement[bool]], where: Sequence[ColumnElement[bool]]
) -> int:
    """How many clips match, counting no further than COUNT_CAP + 1 (shown as "1,000+");
    each part of the rule its own branch, as for a page."""
    if not parts:
        return 0
    n = COUNT_CAP + 1
    branches = [select(Clip.id).where(part, *where).limit(n) for part in parts]
    if len(branches) == 1:
        counted = branches[0].subquery()
    else:
        counted = union(*(select(*b.subquery().c) for b in branches)).subquery()
    return min(s.scalar(select(func.count()).select_from(counted)) or 0, n)
