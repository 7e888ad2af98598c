"""Agents, sessions and messages (DESIGN §9, §15). A user message starts a turn: a run of the
built-in ``agent.turn`` pipeline whose events are mirrored into the session's stream."""

import base64
from typing import Any, Protocol

from runyard.agents import repo
from runyard.agents.schemas import (
    AgentCreate,
    AgentUpdate,
    MessageCreate,
    SessionCreate,
    SessionUpdate,
    agent_resource,
    keep_hidden_headers,
    message_resource,
    session_resource,
)
from runyard.audit.service import AuditService
from runyard.clock import utcnow
from runyard.context import Caller
from runyard.db.engine import Database, Tx
from runyard.events.service import EventService, NewEvent
from runyard.http.pagination import decode_cursor, page_of
from runyard.ids import new_id, new_ids
from runyard.llm.types import ResolvedModel
from runyard.pipelines.service import PipelineService
from runyard.problems import BadRequest, Conflict, InvalidInput, NotFound, Unavailable
from runyard.runs import repo as runs_repo
from runyard.runs.schemas import RunCreate
from runyard.runs.service import RunService
from runyard.runs.states import RunStatus

TURN_PIPELINE = "agent.turn"
#: a session's turn in one of these is not finished: a new message waits or interrupts it
UNFINISHED = [
    s.value
    for s in (
        RunStatus.PENDING,
        RunStatus.QUEUED,
        RunStatus.RUNNING,
        RunStatus.BLOCKED,
        RunStatus.CANCELLING,
    )
]


class Models(Protocol):
    """What agents need of the llm models (:class:`runyard.llm.service.LlmService`)."""

    async def exists(self, workspace_id: str, model_id: str) -> bool: ...

    async def resolve(self, workspace_id: str, model_id: str | None) -> ResolvedModel: ...


class AgentNotFound(NotFound):
    code = "agent_not_found"
    title = "Agent not found"


class SessionNotFound(NotFound):
    code = "session_not_found"
    title = "Session not found"


class AgentService:
    def __init__(
        self,
        db: Database,
        runs: RunService,
        events: EventService,
        pipelines: PipelineService,
        audit: AuditService,
        models: Models,
        *,
        turns_enabled: bool,
    ) -> None:
        self.db = db
        self.runs = runs
        self.events = events
        self.pipelines = pipelines
        self.audit = audit
        self.models = models
        self.turns_enabled = turns_enabled

    # -- agents ---------------------------------------------------------------------------

    async def create_agent(self, caller: Caller, body: AgentCreate) -> dict[str, Any]:
        await self._check_model(caller, body.default_model_id, "default_model_id")
        now = utcnow()
        row = {
            "id": new_id("agt"),
            "workspace_id": caller.workspace_id,
            **body.model_dump(mode="json"),
            "status": "active",
            "created_by": caller.actor,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.write() as tx:
            await repo.insert_agent(tx.conn, row)
            await self.audit.record(
                tx, caller, "agent.create", "agent", row["id"], {"name": row["name"]}
            )
        return agent_resource(row)

    async def get_agent(self, caller: Caller, agent_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get_agent(conn, caller.workspace_id, agent_id)
        if row is None:
            raise AgentNotFound(f"agent {agent_id} not found")
        return agent_resource(row)

    async def list_agents(
        self, caller: Caller, *, limit: int, cursor: str | None, status: str | None
    ) -> dict[str, Any]:
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.list_agents(
                conn, caller.workspace_id, limit=limit + 1, after=after, status=status
            )
        rows, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [agent_resource(r) for r in rows],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def update_agent(
        self, caller: Caller, agent_id: str, body: AgentUpdate
    ) -> dict[str, Any]:
        changes = body.model_dump(mode="json", exclude_unset=True)
        for name in ("name", "tools", "tags", "max_iterations", "status"):
            if name in changes and changes[name] is None:
                raise InvalidInput(
                    f"{name} cannot be null", errors=[{"loc": ["body", name], "msg": "not null"}]
                )
        await self._check_model(caller, changes.get("default_model_id"), "default_model_id")
        async with self.db.write() as tx:
            row = await self._agent(tx, caller, agent_id)
            if "tools" in changes:
                changes["tools"] = keep_hidden_headers(changes["tools"], row["tools"])
            changes["updated_at"] = utcnow()
            row.update(changes)
            await repo.update_agent(tx.conn, agent_id, changes)
            await self.audit.record(
                tx, caller, "agent.update", "agent", agent_id, {"changed": sorted(changes)}
            )
        return agent_resource(row)

    async def archive_agent(self, caller: Caller, agent_id: str) -> None:
        """DELETE archives: the agent and its sessions stay readable; no new turns start."""
        async with self.db.write() as tx:
            await self._agent(tx, caller, agent_id)
            await repo.update_agent(
                tx.conn, agent_id, {"status": "archived", "updated_at": utcnow()}
            )
            await self.audit.record(tx, caller, "agent.archive", "agent", agent_id)

    # -- sessions -------------------------------------------------------------------------

    async def create_session(
        self, caller: Caller, agent_id: str, body: SessionCreate
    ) -> dict[str, Any]:
        await self._check_model(caller, body.model_id, "model_id")
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("ses"),
            "workspace_id": caller.workspace_id,
            "agent_id": agent_id,
            "title": body.title,
            "tags": body.tags,
            "model_id": body.model_id,
            "message_count": 0,
            "created_by": caller.actor,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.write() as tx:
            agent = await self._agent(tx, caller, agent_id)
            _check_active(agent)
            await repo.insert_session(tx.conn, row)
            await self.events.create_stream(
                tx, stream_id=row["id"], workspace_id=caller.workspace_id, kind="session"
            )
            await self.audit.record(
                tx, caller, "session.create", "session", row["id"], {"agent_id": agent_id}
            )
        return session_resource(row, None)

    async def get_session(self, caller: Caller, agent_id: str, session_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get_session(conn, caller.workspace_id, agent_id, session_id)
            if row is None:
                raise SessionNotFound(f"session {session_id} of agent {agent_id} not found")
            status = await runs_repo.latest_turn_status(conn, [session_id])
        return session_resource(row, status.get(session_id))

    async def list_sessions(
        self, caller: Caller, agent_id: str, *, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            if await repo.get_agent(conn, caller.workspace_id, agent_id) is None:
                raise AgentNotFound(f"agent {agent_id} not found")
            rows = await repo.list_sessions(
                conn, caller.workspace_id, agent_id, limit=limit + 1, after=after
            )
            rows, next_cursor, has_more = page_of(rows, limit)
            statuses = await runs_repo.latest_turn_status(conn, [r["id"] for r in rows])
        return {
            "data": [session_resource(r, statuses.get(r["id"])) for r in rows],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def update_session(
        self, caller: Caller, agent_id: str, session_id: str, body: SessionUpdate
    ) -> dict[str, Any]:
        changes = body.model_dump(mode="json", exclude_unset=True)
        if "tags" in changes and changes["tags"] is None:
            raise InvalidInput(
                "tags cannot be null", errors=[{"loc": ["body", "tags"], "msg": "not null"}]
            )
        await self._check_model(caller, changes.get("model_id"), "model_id")
        async with self.db.write() as tx:
            row = await self._session(tx, caller, agent_id, session_id)
            changes["updated_at"] = utcnow()
            row.update(changes)
            await repo.update_session(tx.conn, session_id, changes)
            await self.audit.record(
                tx, caller, "session.update", "session", session_id, {"changed": sorted(changes)}
            )
        return await self.get_session(caller, agent_id, session_id)

    async def delete_session(self, caller: Caller, agent_id: str, session_id: str) -> None:
        """Delete the session, its messages and its stream; unfinished turns are cancelled
        (their runs, with their own event streams, stay)."""
        async with self.db.write() as tx:
            await self._session(tx, caller, agent_id, session_id)
            turns = await runs_repo.session_turns(
                tx.conn, caller.workspace_id, session_id, UNFINISHED, lock=True
            )
            await self.runs.interrupt(tx, caller, turns, reason="session deleted")
            await self.events.delete_stream(tx, session_id)
            await repo.delete_session(tx.conn, session_id)
            await self.audit.record(
                tx, caller, "session.delete", "session", session_id, {"agent_id": agent_id}
            )

    # -- messages -------------------------------------------------------------------------

    async def post_message(
        self, caller: Caller, agent_id: str, session_id: str, body: MessageCreate
    ) -> dict[str, Any]:
        """Persist a user message and start its turn, or fail: never a 201 for a turn that
        will not run."""
        async with self.db.read() as conn:
            session = await repo.get_session(conn, caller.workspace_id, agent_id, session_id)
            agent = await repo.get_agent(conn, caller.workspace_id, agent_id)
        if session is None or agent is None:
            raise SessionNotFound(f"session {session_id} of agent {agent_id} not found")
        _check_active(agent)
        if not self.turns_enabled:
            raise Unavailable(
                "agent turns run on the server's embedded worker, which is off (--no-worker)",
                code="turns_unavailable",
            )
        # a turn that no model could serve is refused now, not failed later
        await self.models.resolve(
            caller.workspace_id, session["model_id"] or agent["default_model_id"]
        )
        pipeline = await self.pipelines.ensure_builtin(caller.workspace_id, TURN_PIPELINE)
        async with self.db.write() as tx:
            await self._session(tx, caller, agent_id, session_id)  # the lock: one at a time
            turns = await runs_repo.session_turns(
                tx.conn, caller.workspace_id, session_id, UNFINISHED, lock=True
            )
            start = True
            if turns and body.multitask == "reject":
                raise Conflict(
                    f"a turn of session {session_id} is still running ({turns[-1]['id']}); "
                    'send "multitask": "enqueue" or "interrupt" to go ahead',
                    code="turn_in_progress",
                    run_id=turns[-1]["id"],
                )
            if turns and body.multitask == "interrupt":
                await self.runs.interrupt(tx, caller, turns, reason="interrupted by a new message")
            elif turns:
                start = False  # enqueued: started when the turn before it ends
            run_id = new_id("run")
            [message] = await self.add_messages(
                tx,
                caller.workspace_id,
                session_id,
                run_id,
                [{"role": "user", "content": body.content, "data": {}}],
            )
            await self.events.append(
                tx,
                session_id,
                [NewEvent("message.user", {"message": message})],
                run_id=run_id,
                source="client",
                attempt=None,
                workspace_id=caller.workspace_id,
            )
            await self.runs.create_in(
                tx,
                caller,
                pipeline,
                RunCreate(
                    id=run_id,
                    pipeline_id=pipeline["id"],
                    input={
                        "agent_id": agent_id,
                        "session_id": session_id,
                        "message_id": message["id"],
                    },
                    start=start,
                ),
                session_id=session_id,
            )
        return {"message": message, "run_id": run_id}

    async def add_messages(
        self,
        tx: Tx,
        workspace_id: str,
        session_id: str,
        run_id: str | None,
        items: list[dict[str, Any]],
        *,
        lease_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Append messages (``role``, ``content``, ``data``) at the session's next positions.
        With ``lease_id`` (a turn saving its answer), only while that lease holds ``run_id``:
        a turn cancelled or taken over meanwhile adds nothing (``StaleLease``)."""
        first = await repo.take_positions(tx.conn, session_id, len(items))  # the session first
        if lease_id is not None and run_id is not None:
            await self.runs.check_holder(tx, run_id, lease_id)
        now = utcnow()
        ids = new_ids("msg", len(items))
        rows = [
            {
                "id": ids[n],
                "workspace_id": workspace_id,
                "session_id": session_id,
                "position": first + n,
                "run_id": run_id,
                "role": item["role"],
                "content": item.get("content"),
                "data": item.get("data") or {},
                "created_at": now,
            }
            for n, item in enumerate(items)
        ]
        await repo.insert_messages(tx.conn, rows)
        await repo.update_session(tx.conn, session_id, {"updated_at": now})
        return [message_resource(row) for row in rows]

    async def list_messages(
        self, caller: Caller, agent_id: str, session_id: str, *, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        """Oldest first, by position."""
        after = _decode_position(cursor)
        async with self.db.read() as conn:
            if await repo.get_session(conn, caller.workspace_id, agent_id, session_id) is None:
                raise SessionNotFound(f"session {session_id} of agent {agent_id} not found")
            rows = await repo.list_messages(conn, session_id, after_position=after, limit=limit + 1)
        has_more = len(rows) > limit
        rows = rows[:limit]
        return {
            "data": [message_resource(r) for r in rows],
            "next_cursor": _encode_position(rows[-1]["position"]) if has_more else None,
            "has_more": has_more,
        }

    # -- helpers --------------------------------------------------------------------------

    async def _agent(self, tx: Tx, caller: Caller, agent_id: str) -> dict[str, Any]:
        row = await repo.get_agent(tx.conn, caller.workspace_id, agent_id, for_update=True)
        if row is None:
            raise AgentNotFound(f"agent {agent_id} not found")
        return row

    async def _session(
        self, tx: Tx, caller: Caller, agent_id: str, session_id: str
    ) -> dict[str, Any]:
        row = await repo.get_session(
            tx.conn, caller.workspace_id, agent_id, session_id, for_update=True
        )
        if row is None:
            raise SessionNotFound(f"session {session_id} of agent {agent_id} not found")
        return row

    async def _check_model(self, caller: Caller, model_id: str | None, field: str) -> None:
        if model_id is not None and not await self.models.exists(caller.workspace_id, model_id):
            raise InvalidInput(
                f"llm model {model_id} does not exist in this workspace",
                errors=[{"loc": ["body", field], "msg": "no such llm model"}],
            )


def _check_active(agent: dict[str, Any]) -> None:
    if agent["status"] != "active":
        raise Conflict(f"agent {agent['id']} is archived", code="agent_archived")


def _encode_position(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def _decode_position(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not (text.startswith("p") and text[1:].isdigit() and len(text) < 12):
            raise ValueError(text)
        return int(text[1:])
    except ValueError as exc:
        raise BadRequest(
            "the cursor is not one this server issued",
            code="invalid_cursor",
            errors=[{"loc": ["query", "cursor"], "msg": "not a cursor from this list"}],
        ) from exc
