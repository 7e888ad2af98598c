"""Executing one agent turn (a claimed ``agent.turn`` run) on the embedded worker.

system prompt + the session's history → a streamed completion (``text.start``,
``text.delta``, ``text.end``) → tool calls (``tool.call``, ``tool.result``) → again, until the
model answers without calling a tool or ``max_iterations`` model calls were made. The
assistant's messages, calls and results are persisted as the session's messages; usage and
cost go on the run. Events are written as soon as the writer is free, so the first token is
not held back. A cancel (seen on the run's own stream, or by a heartbeat) stops the model
stream at once.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from runyard.agents import repo
from runyard.agents.conversation import call_arguments, conversation, tool_text
from runyard.agents.service import AgentService
from runyard.agents.tools import Toolbox
from runyard.broker import Broker
from runyard.events.service import NewEvent
from runyard.events.streaming import channel, unpack
from runyard.llm.client import cost_usd, stream_chat
from runyard.llm.types import (
    ChatMessage,
    Finished,
    ModelError,
    ResolvedModel,
    TextDelta,
    ToolCall,
    ToolCallRequest,
    Usage,
)
from runyard.problems import DomainError, StaleLease
from runyard.settings import Settings
from runyard.worker.buffer import EventBuffer
from runyard.worker.leased import LeasedExecution

log = logging.getLogger(__name__)
#: the run's own events that mean: stop working on it
_STOP = {"run.cancelling", "run.cancelled"}


class TurnFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TurnTools:
    """What turns use besides the run: the agents, the broker, an HTTP client for tools."""

    agents: AgentService
    broker: Broker
    http: httpx.AsyncClient
    settings: Settings


class TurnExecution(LeasedExecution):
    def __init__(self, tools: TurnTools, run: dict[str, Any], lease: dict[str, Any]) -> None:
        super().__init__(tools.agents.runs, run, lease)
        self.tools = tools
        self.agents = tools.agents
        self.settings = tools.settings
        self.usage: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0, "cost_usd": None}

    async def execute(self) -> None:
        self.buffer = EventBuffer(self._write_events, flush_seconds=0)
        work = asyncio.current_task()
        assert work is not None
        self.guards = [
            asyncio.create_task(self._heartbeat(work)),
            asyncio.create_task(self._watch(work)),
        ]
        try:
            async with asyncio.timeout(self.run["timeout_seconds"]):
                outcome = await self._turn()
            await self._stop_guards()  # nothing may cancel the turn while it reports
            await self.buffer.close()
            try:
                await self._report(**outcome)
            except StaleLease:
                raise
            except DomainError:  # cancelled while it finished: acknowledge the cancel
                await self._finish_cancelled()
        except StaleLease:
            log.info("turn %s: the lease was lost (cancelled or expired)", self.run["id"])
        except asyncio.CancelledError:
            if not self.cancel_requested:
                await self._release()
                raise
            await self._finish_cancelled()
        except TimeoutError:
            await self._fail("timeout", f"the turn exceeded {self.run['timeout_seconds']} s")
        except Exception:  # a bug or the database: fail the turn now, not at lease expiry
            log.exception("turn %s failed unexpectedly", self.run["id"])
            await self._fail("internal_error", "the turn failed unexpectedly; see the server log")
        finally:
            await self._stop_guards()
            with contextlib.suppress(DomainError):
                await self.buffer.close()

    async def _stop_guards(self) -> None:
        for guard in self.guards:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await guard

    async def _fail(self, code: str, message: str) -> None:
        await self._stop_guards()
        with contextlib.suppress(DomainError):
            await self.buffer.close()
            await self._report(
                status="failed", error={"code": code, "message": message}, usage=self.usage
            )

    # -- the turn -------------------------------------------------------------------------

    async def _turn(self) -> dict[str, Any]:
        try:
            agent, session, model = await self._load()
        except TurnFailed as exc:
            return _failed(exc.code, exc.message)
        async with Toolbox.open(
            agent["tools"],
            http=self.tools.http,
            allow_private=self.settings.agent_tools_allow_private,
            timeout_seconds=self.settings.agent_tool_timeout_seconds,
        ) as toolbox:
            for problem in toolbox.errors:
                self._put("log", {"level": "warning", "message": problem})
            async with self.agents.db.read() as conn:
                rows = await repo.history(conn, session["id"], self.run["id"])
            messages = conversation(agent["system_prompt"], rows)
            # a turn handed back at a shutdown goes on from what its earlier attempt saved
            earlier = [r for r in rows if r["run_id"] == self.run["id"] and r["role"] != "user"]
            if earlier and earlier[-1]["role"] == "assistant":  # it had answered: not again
                return _completed(earlier[-1]["id"], earlier[-1]["content"], self.usage)
            done = max((r["data"].get("iteration", 0) for r in earlier), default=0)
            for iteration in range(done + 1, agent["max_iterations"] + 1):
                try:
                    text, calls = await self._complete(model, messages, toolbox, iteration)
                except ModelError as exc:
                    return _failed(exc.code, exc.message, self.usage)
                saved = await self._save_response(session["id"], text, calls, iteration)
                messages.append(
                    ChatMessage(
                        role="assistant",
                        content=text or None,
                        tool_calls=tuple(
                            ToolCallRequest(c.id, c.name, call_arguments(c.arguments))
                            for c in calls
                        ),
                    )
                )
                if not calls:
                    return _completed(saved, text, self.usage)
                for call in calls:
                    messages.append(await self._call_tool(toolbox, session["id"], call, iteration))
        return _failed(
            "max_iterations",
            f"the model was still calling tools after {agent['max_iterations']} calls",
            self.usage,
        )

    async def _load(self) -> tuple[dict[str, Any], dict[str, Any], ResolvedModel]:
        spec = self.run["input"]
        session_id, agent_id = spec.get("session_id"), spec.get("agent_id")
        if not (isinstance(session_id, str) and isinstance(agent_id, str)):
            raise TurnFailed("invalid_turn", "an agent.turn run is started by a session message")
        ws = self.run["workspace_id"]
        async with self.agents.db.read() as conn:
            agent = await repo.get_agent(conn, ws, agent_id)
            session = await repo.get_session(conn, ws, agent_id, session_id)
        if agent is None or session is None:
            raise TurnFailed("session_not_found", f"session {session_id} no longer exists")
        try:
            model = await self.agents.models.resolve(
                ws, session["model_id"] or agent["default_model_id"]
            )
        except DomainError as exc:
            raise TurnFailed(exc.code, exc.detail) from exc
        return agent, session, model

    async def _complete(
        self,
        model: ResolvedModel,
        messages: list[ChatMessage],
        toolbox: Toolbox,
        iteration: int,
    ) -> tuple[str, list[ToolCall]]:
        """One streamed model call: its text and tool calls; usage counted."""
        parts: list[str] = []
        calls: list[ToolCall] = []
        items = stream_chat(
            model,
            messages,
            tools=toolbox.specs(),
            timeout_seconds=self.settings.model_timeout_seconds,
            max_retries=self.settings.model_max_retries,
            retry_base_seconds=self.settings.model_retry_base_seconds,
        )
        async with contextlib.aclosing(items):  # however the loop ends, the stream closes
            async for item in items:
                self._check_stopped()
                if isinstance(item, TextDelta):
                    if not parts:
                        self._put("text.start", {"iteration": iteration})
                    parts.append(item.text)
                    self._put("text.delta", {"delta": item.text})
                elif isinstance(item, ToolCall):
                    calls.append(item)
                elif isinstance(item, Usage):
                    self._count(item, model)
                elif isinstance(item, Finished) and parts:
                    self._put("text.end", {"text": "".join(parts), "finish_reason": item.reason})
        return "".join(parts), calls

    def _count(self, usage: Usage, model: ResolvedModel) -> None:
        cost = cost_usd(usage, model.prices)
        self.usage["input_tokens"] += usage.input_tokens
        self.usage["output_tokens"] += usage.output_tokens
        if cost is not None:
            self.usage["cost_usd"] = round((self.usage["cost_usd"] or 0.0) + cost, 10)
        self._put(
            "usage",
            {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": cost,
                "model": model.model,
            },
        )

    async def _save_response(
        self, session_id: str, text: str, calls: list[ToolCall], iteration: int
    ) -> str | None:
        """Persist the assistant's text and its calls; the id of the text's message."""
        items: list[dict[str, Any]] = []
        if text or not calls:
            items.append({"role": "assistant", "content": text, "data": {"iteration": iteration}})
        items.extend(
            {
                "role": "tool_call",
                "content": None,
                "data": {
                    "tool_call_id": c.id,
                    "name": c.name,
                    "arguments": c.arguments,
                    "iteration": iteration,
                },
            }
            for c in calls
        )
        saved = await self._save(session_id, items)
        return saved[0]["id"] if items and items[0]["role"] == "assistant" else None

    async def _call_tool(
        self, toolbox: Toolbox, session_id: str, call: ToolCall, iteration: int
    ) -> ChatMessage:
        self._check_stopped()
        self._put("tool.call", {"id": call.id, "name": call.name, "arguments": call.arguments})
        result = await toolbox.call(call.name, call.arguments)
        content = result.content if result.ok else {"error": result.error}
        self._put(
            "tool.result",
            {"id": call.id, "name": call.name, "ok": result.ok, "content": content},
        )
        await self._save(
            session_id,
            [
                {
                    "role": "tool_result",
                    "content": content,
                    "data": {
                        "tool_call_id": call.id,
                        "name": call.name,
                        "is_error": not result.ok,
                        "iteration": iteration,
                    },
                }
            ],
        )
        return ChatMessage(
            role="tool", content=tool_text(content), tool_call_id=call.id, name=call.name
        )

    async def _save(self, session_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not items:
            return []
        self._check_stopped()
        await self.buffer.flush()  # the events before these messages land first
        async with self.agents.db.write() as tx:
            return await self.agents.add_messages(
                tx,
                self.run["workspace_id"],
                session_id,
                self.run["id"],
                items,
                lease_id=self.lease_id,
            )

    # -- the run around it ----------------------------------------------------------------

    def _put(self, event_type: str, data: dict[str, Any]) -> None:
        self.buffer.put(NewEvent(event_type, data))

    async def _watch(self, work: asyncio.Task[Any]) -> None:
        """Stop at once when the run is cancelled (or ended) by someone else."""
        subscription = await self.tools.broker.subscribe(channel(self.run["id"]), 256)
        try:
            while True:
                await subscription.wait(3600.0)
                messages, _ = subscription.drain()
                if any(unpack(m)[2] in _STOP for m in messages):
                    self._stop(work)
                    return
        finally:
            await self.tools.broker.unsubscribe(subscription)

    def _check_stopped(self) -> None:
        """A cancel can be swallowed by an SDK's own task groups (anyio shields some awaits):
        the turn also checks for it at each step."""
        if self.cancel_requested:
            raise asyncio.CancelledError

    async def _finish_cancelled(self) -> None:
        """Acknowledge a cancel: ``cancelling`` becomes ``cancelled``; a run cancelled at once
        (its lease revoked) needs nothing more."""
        with contextlib.suppress(DomainError):
            await self.buffer.close()
            await self._report(status="cancelled", usage=self.usage)


def _completed(message_id: str | None, text: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "completed",
        "output": {"message_id": message_id, "text": text},
        "usage": usage,
    }


def _failed(code: str, message: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "failed", "error": {"code": code, "message": message}}
    if usage is not None:
        out["usage"] = usage
    return out
