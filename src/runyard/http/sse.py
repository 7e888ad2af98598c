"""Server-Sent Events framing and the streaming response that carries it."""

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import StreamingResponse

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
KEEPALIVE = b": keep-alive\n\n"


def frame(event: str, data: Any, id: int | None = None) -> bytes:
    """One SSE frame. ``data`` is JSON on one line, so a payload cannot inject SSE fields."""
    head = b"id: %d\n" % id if id is not None else b""
    return head + b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def retry_hint(milliseconds: int) -> bytes:
    return b"retry: %d\n\n" % milliseconds


class EventSourceResponse(StreamingResponse):
    def __init__(self, content: AsyncIterator[bytes], headers: dict[str, str] | None = None):
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **(headers or {})},
        )
