"""Agents, their sessions, messages and session events (DESIGN §9, §6.3)."""

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from runyard.agents.schemas import (
    AgentCreate,
    AgentList,
    AgentOut,
    AgentUpdate,
    MessageCreate,
    MessageList,
    MessagePosted,
    SessionCreate,
    SessionList,
    SessionOut,
    SessionUpdate,
)
from runyard.agents.service import AgentService
from runyard.events.router import NDJSON, resume_point, stored_events, wants_event_stream
from runyard.events.schemas import EventPage
from runyard.events.streaming import StreamReader
from runyard.http.deps import CallerDep, ServicesDep
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response
from runyard.http.sse import EventSourceResponse

router = APIRouter(prefix="/v1/agents", tags=["agents"])


async def _agents(services: ServicesDep) -> AgentService:
    return services.agents


Agents = Depends(_agents)
SESSION = "/{agent_id}/sessions/{session_id}"


@router.post(
    "",
    status_code=201,
    response_model=AgentOut,
    summary="Create an agent",
    responses=problem_responses(400, 401, 403),
)
async def create_agent(
    body: AgentCreate, caller: CallerDep, agents: AgentService = Agents
) -> Response:
    return json_response(await agents.create_agent(caller, body), 201)


@router.get(
    "",
    response_model=AgentList,
    summary="This workspace's agents, newest first",
    responses=problem_responses(400, 401, 403),
)
async def list_agents(
    caller: CallerDep,
    agents: AgentService = Agents,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    status: Literal["active", "archived"] | None = None,
) -> Response:
    return json_response(
        await agents.list_agents(caller, limit=limit, cursor=cursor, status=status)
    )


@router.get(
    "/{agent_id}",
    response_model=AgentOut,
    summary="An agent",
    responses=problem_responses(401, 403, 404),
)
async def get_agent(agent_id: str, caller: CallerDep, agents: AgentService = Agents) -> Response:
    return json_response(await agents.get_agent(caller, agent_id))


@router.patch(
    "/{agent_id}",
    response_model=AgentOut,
    summary="Change an agent (any subset of its fields)",
    responses=problem_responses(400, 401, 403, 404),
)
async def update_agent(
    agent_id: str, body: AgentUpdate, caller: CallerDep, agents: AgentService = Agents
) -> Response:
    return json_response(await agents.update_agent(caller, agent_id, body))


@router.delete(
    "/{agent_id}",
    status_code=204,
    summary="Archive an agent: it stays readable, its sessions take no new messages",
    responses=problem_responses(401, 403, 404),
)
async def archive_agent(
    agent_id: str, caller: CallerDep, agents: AgentService = Agents
) -> Response:
    await agents.archive_agent(caller, agent_id)
    return Response(status_code=204)


@router.post(
    "/{agent_id}/sessions",
    status_code=201,
    response_model=SessionOut,
    summary="Start a session with an agent",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def create_session(
    agent_id: str, body: SessionCreate, caller: CallerDep, agents: AgentService = Agents
) -> Response:
    return json_response(await agents.create_session(caller, agent_id, body), 201)


@router.get(
    "/{agent_id}/sessions",
    response_model=SessionList,
    summary="An agent's sessions, newest first",
    responses=problem_responses(400, 401, 403, 404),
)
async def list_sessions(
    agent_id: str,
    caller: CallerDep,
    agents: AgentService = Agents,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> Response:
    return json_response(await agents.list_sessions(caller, agent_id, limit=limit, cursor=cursor))


@router.get(
    SESSION,
    response_model=SessionOut,
    summary="A session (404 when it is not this agent's)",
    responses=problem_responses(401, 403, 404),
)
async def get_session(
    agent_id: str, session_id: str, caller: CallerDep, agents: AgentService = Agents
) -> Response:
    return json_response(await agents.get_session(caller, agent_id, session_id))


@router.patch(
    SESSION,
    response_model=SessionOut,
    summary="Change a session's title, tags or model",
    responses=problem_responses(400, 401, 403, 404),
)
async def update_session(
    agent_id: str,
    session_id: str,
    body: SessionUpdate,
    caller: CallerDep,
    agents: AgentService = Agents,
) -> Response:
    return json_response(await agents.update_session(caller, agent_id, session_id, body))


@router.delete(
    SESSION,
    status_code=204,
    summary="Delete a session, its messages and its stream (unfinished turns are cancelled)",
    responses=problem_responses(401, 403, 404),
)
async def delete_session(
    agent_id: str, session_id: str, caller: CallerDep, agents: AgentService = Agents
) -> Response:
    await agents.delete_session(caller, agent_id, session_id)
    return Response(status_code=204)


@router.post(
    SESSION + "/messages",
    status_code=201,
    response_model=MessagePosted,
    summary="Send a user message: persists it and starts the agent's turn (a run)",
    responses=problem_responses(400, 401, 402, 403, 404, 409, 503),
)
async def post_message(
    agent_id: str,
    session_id: str,
    body: MessageCreate,
    caller: CallerDep,
    agents: AgentService = Agents,
) -> Response:
    return json_response(await agents.post_message(caller, agent_id, session_id, body), 201)


@router.get(
    SESSION + "/messages",
    response_model=MessageList,
    summary="A session's messages in order (user, assistant, tool_call, tool_result, system)",
    responses=problem_responses(400, 401, 403, 404),
)
async def list_messages(
    agent_id: str,
    session_id: str,
    caller: CallerDep,
    agents: AgentService = Agents,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> Response:
    return json_response(
        await agents.list_messages(caller, agent_id, session_id, limit=limit, cursor=cursor)
    )


@router.get(
    SESSION + "/events",
    response_model=EventPage,
    summary="A session's events (every turn's): a page, NDJSON, or a live SSE stream",
    responses={
        **problem_responses(400, 401, 403, 404),
        200: {
            "description": "A page (JSON), NDJSON, or the SSE stream (it stays open)",
            "content": {"text/event-stream": {}, NDJSON: {}},
        },
    },
)
async def session_events(
    agent_id: str,
    session_id: str,
    request: Request,
    caller: CallerDep,
    services: ServicesDep,
    after_sequence: int | None = Query(None, ge=0, le=2**62),
    limit: int = Query(100, ge=1, le=1000),
    type: list[str] = Query(
        default_factory=list, description="Repeat for any of them; `text.*` matches a prefix."
    ),
    stream: bool = Query(False, description="Answer with Server-Sent Events."),
    format: Literal["json", "ndjson"] = "json",
) -> Response:
    await services.agents.get_session(caller, agent_id, session_id)
    after = resume_point(request, after_sequence)
    if stream or wants_event_stream(request):
        reader = StreamReader(
            events=services.events,
            broker=services.broker,
            settings=services.settings,
            metrics=services.metrics,
            stream_id=session_id,
            after=after,
            terminal={},
        )
        return EventSourceResponse(reader.frames())
    return await stored_events(
        services.events, request, session_id, after=after, limit=limit, types=type, format=format
    )
