"""The runner protocol (DESIGN §8): claim, heartbeat, token refresh, and the callbacks.

Callbacks authenticate with the run's runner token (or open mode's headers); a call that
names a lease which no longer holds the run is refused with 409 ``stale_lease``.
"""

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from runyard.events.schemas import (
    EVENT_TYPE_PATTERN,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_DATA_BYTES,
    MAX_TYPE_LENGTH,
    RESERVED_PREFIXES,
    AppendResult,
    EventBatchIn,
    EventIn,
)
from runyard.events.service import NewEvent
from runyard.http.body import read_limited
from runyard.http.deps import (
    CallerDep,
    RunnerAuthDep,
    RunnerCallerDep,
    RunnerServiceDep,
    RunServiceDep,
)
from runyard.http.errors import problem_responses
from runyard.http.responses import json_response
from runyard.problems import BadRequest, InvalidInput, PayloadTooLarge, ReservedEventType
from runyard.runners.schemas import (
    ClaimRequest,
    ClaimResponse,
    HeartbeatResponse,
    RunnerList,
    StepReport,
    TokenResponse,
)
from runyard.runs.schemas import ApprovalRequest, RunStatusReport, StatusResult

router = APIRouter(prefix="/v1/runner", tags=["runner"])
fleet = APIRouter(prefix="/v1/runners", tags=["runner"])

_EVENTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        EventIn.model_json_schema(),
                        EventBatchIn.model_json_schema(ref_template="#/$defs/{model}"),
                    ]
                }
            }
        },
    }
}


def _to_new_event(index: int | None, event: EventIn) -> NewEvent:
    loc: list[Any] = ["body", "events", index] if index is not None else ["body"]
    event_type = event.type or event.eventType
    if not event_type:
        raise InvalidInput(
            "an event needs a `type`", errors=[{"loc": [*loc, "type"], "msg": "Field required"}]
        )
    if len(event_type) > MAX_TYPE_LENGTH or not EVENT_TYPE_PATTERN.match(event_type):
        raise InvalidInput(
            f"event type {event_type!r} is not dotted lowercase (at most 64 characters)",
            errors=[{"loc": [*loc, "type"], "msg": "must match ^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$"}],
        )
    if event_type.startswith(RESERVED_PREFIXES):
        raise ReservedEventType(
            f"event type {event_type!r} is reserved for the server",
            errors=[{"loc": [*loc, "type"], "msg": "reserved prefix"}],
        )
    data = event.data
    if data is None:
        data = {}
        if event.message is not None:
            data["message"] = event.message
        if event.metadata is not None:
            data["metadata"] = event.metadata
    if len(orjson.dumps(data)) > MAX_DATA_BYTES:
        raise PayloadTooLarge(
            f"event data exceeds {MAX_DATA_BYTES} bytes", limit=MAX_DATA_BYTES, loc=loc
        )
    if event.time is not None and event.time.tzinfo is None:
        raise InvalidInput(
            "an event time must carry a timezone (RFC 3339, e.g. 2026-11-22T17:00:00Z)",
            errors=[{"loc": [*loc, "time"], "msg": "timezone required"}],
        )
    return NewEvent(type=event_type, data=data, step=event.step, time=event.time)


def parse_events(raw: bytes) -> list[NewEvent]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the request body is not valid JSON", code="malformed_json") from exc
    if not isinstance(document, dict):
        raise InvalidInput(
            'the body must be an event object or {"events": [...]}',
            errors=[{"loc": ["body"], "msg": "expected an object"}],
        )
    try:
        if "events" in document:
            batch = EventBatchIn.model_validate(document).events
            if not batch:
                raise InvalidInput(
                    "the batch is empty", errors=[{"loc": ["body", "events"], "msg": "empty"}]
                )
            if len(batch) > MAX_BATCH_EVENTS:
                raise PayloadTooLarge(
                    f"a batch holds at most {MAX_BATCH_EVENTS} events", limit=MAX_BATCH_EVENTS
                )
            return [_to_new_event(i, event) for i, event in enumerate(batch)]
        return [_to_new_event(None, EventIn.model_validate(document))]
    except ValidationError as exc:
        raise InvalidInput(
            "the events are invalid",
            errors=[{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors()],
        ) from exc


@router.post(
    "/claim",
    response_model=ClaimResponse,
    summary="Claim a queued run (long-poll up to wait_seconds; 204 when none)",
    responses={**problem_responses(400, 404), 204: {"description": "No run to claim"}},
)
async def claim(
    body: ClaimRequest, request: Request, caller: RunnerCallerDep, runners: RunnerServiceDep
) -> Response:
    claimed = await runners.claim(caller, body, gone=request.is_disconnected)
    if claimed is None:
        return Response(status_code=204)
    return json_response(claimed)


@router.post(
    "/runs/{run_id}/heartbeat",
    response_model=HeartbeatResponse,
    summary="Keep a lease alive; says whether a cancel was requested",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def heartbeat(run_id: str, auth: RunnerAuthDep, runners: RunnerServiceDep) -> Response:
    lease_id = auth.require_lease("a heartbeat")
    return json_response(await runners.heartbeat(auth.caller, run_id, lease_id))


@router.post(
    "/runs/{run_id}/release",
    response_model=StatusResult,
    summary="Hand a run back unfinished: it is queued again at once (the attempt not counted)",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def release(run_id: str, auth: RunnerAuthDep, runs: RunServiceDep) -> Response:
    run = await runs.release(auth.caller, run_id, auth.require_lease("a release"))
    return json_response({"ok": True, "run": run})


@router.post(
    "/runs/{run_id}/token",
    response_model=TokenResponse,
    summary="Refresh a runner token before it expires",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def refresh_token(run_id: str, auth: RunnerAuthDep, runners: RunnerServiceDep) -> Response:
    return json_response(await runners.refresh_token(auth.caller, run_id, auth.lease_id))


@router.post(
    "/runs/{run_id}/steps/{name}",
    response_model=StatusResult,
    summary="Record a step: running, completed, failed or skipped",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def post_step(
    run_id: str, name: str, body: StepReport, auth: RunnerAuthDep, runs: RunServiceDep
) -> Response:
    run = await runs.record_step(
        auth.caller,
        run_id,
        name,
        body.status,
        output=body.output,
        error=body.error,
        lease_id=auth.lease_id,
    )
    return json_response({"ok": True, "run": run})


@router.post(
    "/runs/{run_id}/approval",
    response_model=StatusResult,
    summary="Block the run at an approval gate (the lease ends; approval re-queues it)",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def post_approval(
    run_id: str, body: ApprovalRequest, auth: RunnerAuthDep, runs: RunServiceDep
) -> Response:
    run = await runs.request_approval(
        auth.caller, run_id, lease_id=auth.lease_id, **body.model_dump()
    )
    return json_response({"ok": True, "run": run})


@fleet.get("", response_model=RunnerList, summary="Runners of this workspace")
async def list_runners(caller: CallerDep, runners: RunnerServiceDep) -> Response:
    data = await runners.list_runners(caller)
    return json_response({"data": data, "next_cursor": None, "has_more": False})


@router.post(
    "/runs/{run_id}/events",
    response_model=AppendResult,
    summary="Append one event or an atomic batch to a run",
    openapi_extra=_EVENTS_BODY,
    responses=problem_responses(400, 401, 403, 404, 409, 413),
)
async def post_events(
    run_id: str, request: Request, auth: RunnerAuthDep, runs: RunServiceDep
) -> Response:
    items = parse_events(await read_limited(request, MAX_BATCH_BYTES))
    envelopes = await runs.ingest(auth.caller, run_id, items, lease_id=auth.lease_id)
    return json_response(
        {
            "ok": True,
            "event_ids": [env["id"] for env in envelopes],
            "first_sequence": envelopes[0]["sequence"],
            "last_sequence": envelopes[-1]["sequence"],
        }
    )


@router.post(
    "/runs/{run_id}/status",
    response_model=StatusResult,
    summary="Report a run's status, progress, output, metrics or usage",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def post_status(
    run_id: str, body: RunStatusReport, auth: RunnerAuthDep, runs: RunServiceDep
) -> Response:
    run = await runs.report(auth.caller, run_id, body, lease_id=auth.lease_id)
    return json_response({"ok": True, "run": run})
