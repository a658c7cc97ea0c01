"""What each JSON route returns, as pydantic models: one module per domain.

The routes name these as `response_model`, so /openapi.json documents every answer and
FastAPI checks each answer against its model before it leaves. Every model forbids fields it
does not declare (`Out`): the access policy in the services decides which fields leave the
server, and a field a service starts to return without its schema here is a 500 in the tests,
not a silent addition to the API. A model neither adds nor drops a field: keys a service
returns only sometimes have a default and their route answers with
`response_model_exclude_unset=True`, so an absent key stays absent.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Out(BaseModel):
    """A JSON answer, or a part of one: exactly the declared fields."""

    model_config = ConfigDict(extra="forbid")


def not_json(description: str, *media_types: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route whose answer is bytes of these types, not a JSON document
    (with `response_class=Response`, so nothing claims it is JSON)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"description": description, "content": dict.fromkeys(media_types, binary)}}
