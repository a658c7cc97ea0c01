"""Recording a clip's derivatives: the Derivative row and its `derivative.created` ledger
entry, committed together, exactly once.

The ingest worker records the proxy and the thumbnail (evidence/ingest/service.py), the
redaction worker each redacted copy (evidence/redactions.py); how each is made is
evidence/media/.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from evidence import clock
from evidence.clips.models import Derivative
from evidence.context import Context
from evidence.media.derivatives import Recipe

WORKER = "system:worker"  # the actor of the entries workers write (derivatives, bundles, ingest)


def record_derivative(
    ctx: Context,
    clip_id: str,
    kind: str,
    key: str,
    sha256: str,
    size: int,
    recipe: Recipe,
    **extra: Any,
) -> None:
    """The derivative row and its ledger entry commit together, exactly once. `extra` goes
    into the entry (a redaction's boxes, mute ranges and reason)."""
    try:
        with ctx.db.write_session() as s:
            if s.scalar(
                select(Derivative.id).where(Derivative.clip_id == clip_id, Derivative.kind == kind)
            ):
                return
            s.add(
                Derivative(
                    clip_id=clip_id,
                    kind=kind,
                    key=key,
                    sha256=sha256,
                    size=size,
                    recipe=recipe.as_dict(),
                    created_at=clock.now(),
                )
            )
            s.flush()
            ctx.ledger.append_in(
                s,
                "derivative.created",
                actor=WORKER,
                subject={"clip": clip_id},
                kind=kind,
                key=key,
                sha256=sha256,
                size=size,
                recipe=recipe.as_dict(),
                **extra,
            )
    except IntegrityError:
        return  # a concurrent worker recorded it first: exactly one row, one entry
