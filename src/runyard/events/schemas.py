"""Event envelopes in and out, and the limits of §6.1."""

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runyard.clock import isoformat
from runyard.http.sse import frame

EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
RESERVED_PREFIXES = ("run.", "step.", "approval.", "build.", "stream.")
MAX_TYPE_LENGTH = 64
MAX_DATA_BYTES = 256 * 1024
MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 4 * 1024 * 1024


class EventIn(BaseModel):
    """One event from a producer. ``{eventType, message, metadata}`` is accepted as a synonym."""

    model_config = ConfigDict(extra="ignore")

    type: str | None = Field(None, description="Dotted lowercase type, e.g. `console.line`.")
    eventType: str | None = Field(None, description="Synonym of `type` (seed form).")
    data: dict[str, Any] | None = None
    message: str | None = None
    metadata: dict[str, Any] | None = None
    step: str | None = Field(None, max_length=200)
    time: datetime | None = Field(None, description="When it happened; default: now.")


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    events: list[EventIn]


class EventOut(BaseModel):
    id: str
    stream_id: str
    sequence: int
    run_id: str | None
    type: str
    time: str
    source: str
    step: str | None
    attempt: int | None
    data: dict[str, Any]


class EventPage(BaseModel):
    data: list[EventOut]
    next_after_sequence: int
    has_more: bool


class AppendResult(BaseModel):
    ok: bool = True
    event_ids: list[str]
    first_sequence: int
    last_sequence: int


def envelope(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "stream_id": row.stream_id,
        "sequence": row.sequence,
        "run_id": row.run_id,
        "type": row.type,
        "time": isoformat(row.time),
        "source": row.source,
        "step": row.step,
        "attempt": row.attempt,
        "data": row.data,
    }


def envelope_frame(env: dict[str, Any]) -> bytes:
    return frame(env["type"], env, id=env["sequence"])
