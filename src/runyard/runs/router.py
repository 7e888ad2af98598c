"""HTTP for runs: ``/v1/runs`` (DESIGN §5.3)."""

from datetime import UTC, datetime

from fastapi import APIRouter, Body, Query, Request
from starlette.responses import Response

from runyard.events.router import sse_response, wants_event_stream
from runyard.http.deps import CallerDep, RunServiceDep, ServicesDep
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response
from runyard.problems import InvalidInput
from runyard.runs.schemas import (
    AuditEntryOut,
    CancelRequest,
    CancelResult,
    Decision,
    ReplayRequest,
    RunAction,
    RunComparison,
    RunCreate,
    RunList,
    RunOut,
)
from runyard.runs.states import RunStatus

router = APIRouter(prefix="/v1/runs", tags=["runs"])


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _input_filters(request: Request) -> list[tuple[list[str], str]]:
    filters = []
    for key, value in request.query_params.multi_items():
        if key.startswith("input."):
            path = key[len("input.") :].split(".")
            if not all(path):
                raise InvalidInput(
                    f"bad input filter {key!r}",
                    errors=[{"loc": ["query", key], "msg": "empty key in path"}],
                )
            filters.append((path, value))
    return filters


@router.post(
    "",
    status_code=201,
    response_model=RunOut,
    summary="Create a run (optionally answering with its SSE stream)",
    responses={
        **problem_responses(400, 404, 409),
        200: {
            "description": "With `stream: true`: the run's event stream",
            "content": {"text/event-stream": {}},
        },
    },
)
async def create_run(
    request: Request,
    body: RunCreate,
    caller: CallerDep,
    runs: RunServiceDep,
    services: ServicesDep,
) -> Response:
    run = await runs.create(caller, body)
    location = {"Location": f"/v1/runs/{run['id']}"}
    if body.stream or wants_event_stream(request):
        return sse_response(services, caller, run, after=0, headers=location)
    return json_response(run, 201, headers=location)


@router.get("", response_model=RunList, summary="List runs", responses=problem_responses(400))
async def list_runs(
    request: Request,
    caller: CallerDep,
    runs: RunServiceDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    status: list[RunStatus] = Query(default_factory=list, description="Repeat for any of them."),
    pipeline: str | None = None,
    tag: list[str] = Query(default_factory=list, description="Repeat for all of them."),
    codename: str | None = None,
    created_after: datetime | None = Query(None, description="Inclusive."),
    created_before: datetime | None = Query(None, description="Exclusive."),
    session_id: str | None = None,
    q: str | None = Query(None, max_length=200, description="Text in codename or tags."),
) -> Response:
    page = await runs.list_page(
        caller,
        limit=limit,
        cursor=cursor,
        statuses=[s.value for s in status],
        pipeline=pipeline,
        tags=tag,
        codename=codename,
        created_after=_utc(created_after),
        created_before=_utc(created_before),
        session_id=session_id,
        input_filters=_input_filters(request),
        q=q,
    )
    return json_response(page)


@router.get(
    "/{run_id}", response_model=RunOut, summary="Get a run", responses=problem_responses(404)
)
async def get_run(run_id: str, caller: CallerDep, runs: RunServiceDep) -> Response:
    return json_response(await runs.get(caller, run_id))


@router.delete(
    "/{run_id}",
    status_code=204,
    summary="Delete a run and its events (cancels it first)",
    responses=problem_responses(404),
)
async def delete_run(run_id: str, caller: CallerDep, services: ServicesDep) -> Response:
    await services.runs.delete(caller, run_id)
    await services.artifacts.purge(run_id)  # blobs cannot join the transaction: after it
    return Response(status_code=204)


@router.post(
    "/{run_id}/start",
    status_code=202,
    response_model=RunAction,
    summary="Start a pending run",
    responses=problem_responses(404, 409),
)
async def start_run(run_id: str, caller: CallerDep, runs: RunServiceDep) -> Response:
    run = await runs.start(caller, run_id)
    return json_response({"message": "Run started", "run": run}, 202)


@router.post(
    "/{run_id}/cancel",
    response_model=CancelResult,
    summary="Cancel a run",
    responses=problem_responses(400, 404),
)
async def cancel_run(
    run_id: str,
    caller: CallerDep,
    runs: RunServiceDep,
    body: CancelRequest | None = Body(None),
) -> Response:
    body = body or CancelRequest()
    result, run = await runs.cancel(caller, run_id, reason=body.reason, force=body.force)
    return json_response({"result": result, "run": run})


@router.post(
    "/{run_id}/approve",
    response_model=RunAction,
    summary="Approve a run waiting at a gate: it is queued again and resumes after the gate",
    responses=problem_responses(400, 403, 404, 409),
)
async def approve_run(
    run_id: str, caller: CallerDep, runs: RunServiceDep, body: Decision | None = Body(None)
) -> Response:
    run = await runs.approve(caller, run_id, (body or Decision()).comment)
    return json_response({"message": "Run approved", "run": run})


@router.post(
    "/{run_id}/reject",
    response_model=RunAction,
    summary="Reject a run waiting at a gate (it ends `rejected`)",
    responses=problem_responses(400, 404, 409),
)
async def reject_run(
    run_id: str, caller: CallerDep, runs: RunServiceDep, body: Decision | None = Body(None)
) -> Response:
    run = await runs.reject(caller, run_id, (body or Decision()).comment)
    return json_response({"message": "Run rejected", "run": run})


@router.post(
    "/{run_id}/replay",
    status_code=201,
    response_model=RunOut,
    summary="Run the same pipeline and input again (optionally replaced)",
    responses=problem_responses(400, 404),
)
async def replay_run(
    run_id: str, caller: CallerDep, runs: RunServiceDep, body: ReplayRequest | None = Body(None)
) -> Response:
    run = await runs.replay(caller, run_id, body or ReplayRequest())
    return json_response(run, 201, headers={"Location": f"/v1/runs/{run['id']}"})


@router.get(
    "/{run_id}/summary",
    summary="Durations, queue wait, event and log counts, usage, metrics and attempts",
    responses=problem_responses(404),
)
async def run_summary(run_id: str, caller: CallerDep, services: ServicesDep) -> Response:
    return json_response(await services.insights.summary(caller, run_id))


@router.get(
    "/{run_id}/compare/{other_id}",
    response_model=RunComparison,
    summary="Compare two runs: metrics, output fields by JSON Pointer, steps",
    responses=problem_responses(404),
)
async def compare_runs(
    run_id: str, other_id: str, caller: CallerDep, services: ServicesDep
) -> Response:
    return json_response(await services.insights.compare(caller, run_id, other_id))


@router.get(
    "/{run_id}/diagnostics",
    summary="Runner, attempts with their leases, errors with their step, timing",
    responses=problem_responses(404),
)
async def run_diagnostics(run_id: str, caller: CallerDep, services: ServicesDep) -> Response:
    return json_response(await services.insights.diagnostics(caller, run_id))


@router.post(
    "/{run_id}/rollback",
    summary="Roll back: run the pipeline's rollback steps as a new run, or record it",
    responses={**problem_responses(404), 201: {"description": "A rollback run was queued"}},
)
async def rollback_run(run_id: str, caller: CallerDep, runs: RunServiceDep) -> Response:
    rollback = await runs.rollback(caller, run_id)
    if rollback is None:
        return json_response({"result": "recorded", "run": None})
    return json_response(
        {"result": "queued", "run": rollback},
        201,
        headers={"Location": f"/v1/runs/{rollback['id']}"},
    )


@router.get(
    "/{run_id}/audit",
    summary="Audit entries of a run",
    responses=problem_responses(404),
    response_model=dict[str, list[AuditEntryOut] | bool | None],
)
async def run_audit(run_id: str, caller: CallerDep, runs: RunServiceDep) -> Response:
    entries = await runs.audit_entries(caller, run_id)
    return json_response({"data": entries, "next_cursor": None, "has_more": False})
