"""Opaque keyset cursors: ``(created_at, id)`` — or another timestamp a list is ordered by —
of the last item of a page."""

import base64
from datetime import datetime
from typing import Any

import orjson

from runyard.clock import parse
from runyard.problems import BadRequest

MAX_LIMIT = 200


def encode_cursor(created_at: datetime, item_id: str) -> str:
    raw = orjson.dumps([created_at.isoformat(), item_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, item_id = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(item_id, str) or not item_id.isascii() or not item_id.isprintable():
            raise TypeError(item_id)
        return parse(created_at), item_id
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise BadRequest(
            "the cursor is not one this server issued",
            code="invalid_cursor",
            errors=[{"loc": ["query", "cursor"], "msg": "not a cursor from this list"}],
        ) from exc


def page_of(
    rows: list[dict[str, Any]], limit: int, key: str = "created_at"
) -> tuple[list[dict[str, Any]], str | None, bool]:
    """Split a ``limit + 1`` fetch into the page, its next cursor and ``has_more``; ``key``
    names the timestamp the list is ordered by (with ``id``)."""
    has_more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1][key], rows[-1]["id"]) if has_more else None
    return rows, cursor, has_more
