"""Free-text search of clips through an index on each engine (docs/search.md).

What is searched: a clip's file name and camera serial, every name it was docked under,
its tags, and the bookmark notes the searcher's side may read (evidence.access.side), by
substring in any case. A whole SHA-256 or clip id is looked up instead: it finds that clip.

- SQLite: the FTS5 table `clip_search_text` (trigram tokenizer), written by triggers
  (migration 0015) whenever those rows change;
- PostgreSQL: `ILIKE '%text%'` on the same columns, each with a pg_trgm GIN index.

Trigrams need three characters: shorter text could use no index and is refused.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    String,
    bindparam,
    column,
    exists,
    false,
    func,
    or_,
    select,
    table,
    union_all,
)
from sqlalchemy.orm import Session

from evidence.access import Principal, note_authors
from evidence.cameras.models import ClipName
from evidence.clips.models import Bookmark, Clip, ClipTag
from evidence.db import SEARCH_TABLE
from evidence.errors import InvalidInput

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MIN_CHARS = 3
# Up to this many matching clips a search works from their ids (text_match).
FEW = 5000
MAX_CHARS = 200

_fts = table(SEARCH_TABLE, column("clip_id"), column("author"), column("body"))


class SearchTextTooShort(InvalidInput):
    """Free text the indexes cannot look up: a request to fix, 400."""

    status = 400
    title = "Search text too short"


def check_text(text: str) -> str:
    text = text.strip()
    if len(text) < MIN_CHARS:
        raise SearchTextTooShort(
            f"search text needs at least {MIN_CHARS} characters (the index matches runs of "
            "three); for a tag or an officer use their own filters"
        )
    if len(text) > MAX_CHARS:
        raise InvalidInput(f"search text is at most {MAX_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        # No searchable text holds one, and FTS5 cannot take a NUL in a phrase.
        raise InvalidInput("search text cannot hold control characters: type the words only")
    return text


def text_match(s: Session, principal: Principal, text: str) -> ColumnElement[bool]:
    """A WHERE clause on Clip: the clips whose searchable text contains `text`.

    The index is asked first for up to FEW + 1 matching clips. Text that few clips hold
    (nearly every search) becomes those clips' ids, so the page looks them up
    instead of searching again. Text that many hold ("INC", a camera maker) would make a set
    of a fifth of the store to sort; it becomes a test of each clip instead (LIKE on its own
    rows, found by their primary keys), which a page makes along the newest-first index, or
    along a narrower filter's, until it has its 25 (docs/search.md).
    """
    text = check_text(text)
    # A whole SHA-256 or clip id is looked up, not searched for: 60 trigrams, each in many
    # texts, would make the slowest text search of all for what one index entry answers.
    if _SHA256.fullmatch(text):
        return Clip.sha256 == text.lower()
    if _UUID.fullmatch(text):
        return Clip.id == text.lower()
    sqlite = s.get_bind().dialect.name == "sqlite"
    sources = _sqlite(principal, text) if sqlite else _postgres(principal, text)
    # UNION ALL, deduplicated here: it streams and stops at the limit, where UNION would
    # collect and sort every match first (a fifth of the store for "INC").
    matching = sources[0] if len(sources) == 1 else union_all(*sources)
    rows = list(s.scalars(select(matching.subquery().c[0]).limit(FEW + 1)))
    if len(rows) <= FEW:
        return _one_of(sorted(set(rows)), sqlite=sqlite) if rows else false()
    return _per_clip(principal, text)


def _one_of(ids: list[str], *, sqlite: bool) -> ColumnElement[bool]:
    """Clip.id among `ids`. PostgreSQL reads a long IN list as a filter to test rows against
    and walks the newest-first index through the whole store to fill a page (1.7 s at 10^6
    for 1,300 matches); from unnest() of an array it looks the clips up by id instead."""
    if sqlite:
        return Clip.id.in_(ids)
    array = bindparam("matched_ids", ids, type_=ARRAY(String), unique=True)
    return Clip.id.in_(select(func.unnest(array)))


def _sqlite(principal: Principal, text: str) -> list[Select]:
    phrase = '"' + text.replace('"', '""') + '"'  # one FTS5 phrase: no query syntax
    readable = or_(_fts.c.author.is_(None), _fts.c.author.in_(note_authors(principal)))
    return [select(_fts.c.clip_id).where(_fts.c.body.match(phrase), readable)]


def _pattern(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _postgres(principal: Principal, text: str) -> list[Select]:
    pattern = _pattern(text)
    return [
        select(Clip.id).where(Clip.filename.ilike(pattern, escape="\\")),
        select(Clip.id).where(Clip.camera_serial.ilike(pattern, escape="\\")),
        # Every name the clip was docked under, a byte-identical twin's too.
        select(ClipName.clip_id).where(ClipName.filename.ilike(pattern, escape="\\")),
        select(ClipTag.clip_id).where(ClipTag.tag.ilike(pattern, escape="\\")),
        # Only notes the searcher may read: a match would tell what the other side wrote.
        select(Bookmark.clip_id).where(
            Bookmark.note.ilike(pattern, escape="\\"), Bookmark.user_id.in_(note_authors(principal))
        ),
    ]


def _per_clip(principal: Principal, text: str) -> ColumnElement[bool]:
    """The same test as the index's, asked of one clip at a time (on SQLite ILIKE is
    `lower(x) LIKE lower(y)`: the same match, any case)."""
    pattern = _pattern(text)
    return or_(
        Clip.filename.ilike(pattern, escape="\\"),
        Clip.camera_serial.ilike(pattern, escape="\\"),
        exists().where(ClipName.clip_id == Clip.id, ClipName.filename.ilike(pattern, escape="\\")),
        exists().where(ClipTag.clip_id == Clip.id, ClipTag.tag.ilike(pattern, escape="\\")),
        exists().where(
            Bookmark.clip_id == Clip.id,
            Bookmark.note.ilike(pattern, escape="\\"),
            Bookmark.user_id.in_(note_authors(principal)),
        ),
    )
