"""Reading a run's events: pages, NDJSON, SSE, logs and the logfile (DESIGN §6.2-6.3)."""

from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from runyard.container import Services
from runyard.context import Caller
from runyard.events.schemas import EventPage
from runyard.events.service import EventService, dumps_line
from runyard.events.streaming import TERMINAL_RUN_EVENTS, StreamReader
from runyard.http.deps import CallerDep, RunServiceDep, ServicesDep
from runyard.http.errors import problem_responses
from runyard.http.responses import json_response
from runyard.http.sse import EventSourceResponse
from runyard.problems import InvalidInput, RunNotFound

router = APIRouter(prefix="/v1/runs", tags=["events"])

LOG_TYPES = ("log", "console.line")
NDJSON = "application/x-ndjson"
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page (JSON), NDJSON, or the SSE stream",
        "content": {"text/event-stream": {}, NDJSON: {}},
    }
}


def wants_event_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def sse_response(
    services: Services,
    caller: Caller,
    run: dict[str, Any],
    *,
    after: int,
    headers: dict[str, str] | None = None,
) -> EventSourceResponse:
    async def run_status() -> str | None:
        try:
            current: str = (await services.runs.get(caller, run["id"]))["status"]
        except RunNotFound:
            return None
        return current

    reader = StreamReader(
        events=services.events,
        broker=services.broker,
        settings=services.settings,
        metrics=services.metrics,
        stream_id=run["id"],
        after=after,
        terminal=TERMINAL_RUN_EVENTS,
        run_status=run_status,
    )
    return EventSourceResponse(reader.frames(), headers=headers)


def resume_point(request: Request, after_sequence: int | None) -> int:
    if after_sequence is not None:
        return after_sequence
    last_event_id = request.headers.get("last-event-id")
    if last_event_id is None or last_event_id == "":
        return 0
    if not (last_event_id.isascii() and last_event_id.isdigit() and len(last_event_id) <= 18):
        raise InvalidInput(
            "Last-Event-ID must be an event sequence number",
            errors=[{"loc": ["header", "Last-Event-ID"], "msg": "not a non-negative integer"}],
        )
    return int(last_event_id)


async def ndjson_lines(
    events: EventService, stream_id: str, *, after: int, types: list[str], limit: int | None
) -> AsyncIterator[bytes]:
    async for batch in events.iterate(stream_id, after=after, types=types, limit=limit):
        yield b"".join(dumps_line(env) for env in batch)


@router.get(
    "/{run_id}/events",
    response_model=EventPage,
    summary="A run's events: a page, NDJSON, or a live SSE stream",
    responses={**problem_responses(400, 404), **STREAM_RESPONSES},
)
async def run_events(
    run_id: str,
    request: Request,
    caller: CallerDep,
    runs: RunServiceDep,
    services: ServicesDep,
    after_sequence: int | None = Query(None, ge=0, le=2**62),
    limit: int = Query(100, ge=1, le=1000),
    type: list[str] = Query(
        default_factory=list, description="Repeat for any of them; `run.*` matches a prefix."
    ),
    stream: bool = Query(False, description="Answer with Server-Sent Events."),
    format: Literal["json", "ndjson"] = "json",
) -> Response:
    run = await runs.get(caller, run_id)
    after = resume_point(request, after_sequence)
    if stream or wants_event_stream(request):
        return sse_response(services, caller, run, after=after)
    return await stored_events(
        services.events, request, run_id, after=after, limit=limit, types=type, format=format
    )


async def stored_events(
    events: EventService,
    request: Request,
    stream_id: str,
    *,
    after: int,
    limit: int,
    types: list[str],
    format: str,
) -> Response:
    """A stream's committed events after ``after``: NDJSON when asked for, else a page."""
    if format == "ndjson" or NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(
            ndjson_lines(events, stream_id, after=after, types=types, limit=limit),
            media_type=NDJSON,
        )
    return await event_page(events, stream_id, after=after, limit=limit, types=types)


async def event_page(
    events: EventService, stream_id: str, *, after: int, limit: int, types: Sequence[str]
) -> Response:
    data, has_more = await events.page(stream_id, after=after, limit=limit, types=types)
    return json_response(
        {
            "data": data,
            "next_after_sequence": data[-1]["sequence"] if data else after,
            "has_more": has_more,
        }
    )


def _log_line(env: dict[str, Any]) -> str:
    data = env["data"]
    if env["type"] == "console.line":
        label, text = data.get("stream", "stdout"), data.get("text", "")
    else:
        label, text = str(data.get("level", "info")).upper(), data.get("message", "")
    step = f" {env['step']}" if env.get("step") else ""
    return f"{env['time']} [{label}]{step} {text}\n"


async def _text_log(events: EventService, stream_id: str, after: int) -> AsyncIterator[bytes]:
    async for batch in events.iterate(stream_id, after=after, types=list(LOG_TYPES)):
        yield "".join(_log_line(env) for env in batch).encode()


@router.get(
    "/{run_id}/logs",
    response_model=EventPage,
    summary="Log and console lines of a run (`?format=text` for plain text)",
    responses={**problem_responses(400, 404), 200: {"content": {"text/plain": {}}}},
)
async def run_logs(
    run_id: str,
    caller: CallerDep,
    runs: RunServiceDep,
    services: ServicesDep,
    after_sequence: int = Query(0, ge=0, le=2**62),
    limit: int = Query(100, ge=1, le=1000),
    format: Literal["json", "text"] = "json",
) -> Response:
    await runs.get(caller, run_id)
    if format == "text":
        return StreamingResponse(
            _text_log(services.events, run_id, after_sequence),
            media_type="text/plain; charset=utf-8",
        )
    return await event_page(
        services.events, run_id, after=after_sequence, limit=limit, types=LOG_TYPES
    )


@router.get(
    "/{run_id}/logfile",
    summary="The whole event history of a run as NDJSON",
    responses={**problem_responses(404), 200: {"content": {NDJSON: {}}}},
)
async def run_logfile(
    run_id: str, caller: CallerDep, runs: RunServiceDep, services: ServicesDep
) -> Response:
    await runs.get(caller, run_id)
    return StreamingResponse(
        ndjson_lines(services.events, run_id, after=0, types=[], limit=None),
        media_type=NDJSON,
        headers={"Content-Disposition": f'attachment; filename="{run_id}.ndjson"'},
    )
