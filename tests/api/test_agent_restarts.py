"""A turn running when its server stops is handed back and finished by the next server, from
what its earlier attempt saved: tool calls are not made again and an answer is not repeated.
What a turn saves is fenced by its lease."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from runyard.app import create_app
from runyard.problems import StaleLease
from runyard.settings import Settings
from tests.agent_support import messages, ready_session, say
from tests.llm_fake import FakeModelServer, Reply
from tests.support import wait_for_status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@contextlib.asynccontextmanager
async def server(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """One `runyard serve` with its embedded worker, stopped on leaving."""
    app = create_app(settings.model_copy(update={"worker_enabled": True}))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://runyard.test") as c:
            yield app, c


async def _requests(server: FakeModelServer, count: int) -> None:
    """Until the model has been asked ``count`` times and is streaming the last (bounded)."""
    for _ in range(400):
        if len(server.requests) >= count and server.requests[count - 1].text_times:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"the model was asked {len(server.requests)} times, not {count}")


def _shape(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(m["role"], m["content"]) for m in rows]


async def test_a_turn_handed_back_after_a_tool_call_goes_on_from_its_result(
    settings: Settings, model_server: FakeModelServer
) -> None:
    model_server.script(
        Reply(tool_calls=[("calculator", {"expression": "6*7"})]),
        Reply(text="still thinking " * 50, tokens_per_second=20),  # cut by the shutdown
        Reply(text="It is 42."),
    )
    async with server(settings) as (_, client):
        agent, session = await ready_session(
            client, model_server, tools=[{"type": "builtin", "name": "calculator"}]
        )
        posted = await say(client, agent["id"], session["id"], "What is six times seven?")
        run_id = posted.json()["run_id"]
        await _requests(model_server, 2)  # the tool ran; the second call is streaming

    async with server(settings) as (_, client):
        run = await wait_for_status(client, run_id, "completed", "failed", "cancelled")
        assert run["status"] == "completed", run
        rows = await messages(client, agent["id"], session["id"])
        starts = (await client.get(f"/v1/runs/{run_id}/events?type=text.start")).json()["data"]
    # the cut answer and the resumed one are both the turn's second model call
    assert [e["data"]["iteration"] for e in starts] == [2, 2]
    assert _shape(rows) == [
        ("user", "What is six times seven?"),
        ("tool_call", None),
        ("tool_result", {"result": 42}),
        ("assistant", "It is 42."),
    ]
    assert len(model_server.requests) == 3  # the calculator was not asked again
    resumed = model_server.requests[2].body["messages"]
    assert [m["role"] for m in resumed] == ["system", "user", "assistant", "tool"]


async def test_a_turn_handed_back_after_it_answered_is_not_answered_again(
    settings: Settings, model_server: FakeModelServer
) -> None:
    model_server.script(Reply(text="slow " * 100, tokens_per_second=20))
    async with server(settings) as (app, client):
        agent, session = await ready_session(client, model_server)
        posted = await say(client, agent["id"], session["id"], "Hello?")
        run_id = posted.json()["run_id"]
        await _requests(model_server, 1)
        # the earlier attempt saved its answer, then the server stopped before it reported
        agents = app.state.services.agents
        async with agents.db.write() as tx:
            [saved] = await agents.add_messages(
                tx,
                "ws_default",
                session["id"],
                run_id,
                [{"role": "assistant", "content": "Hi.", "data": {"iteration": 1}}],
            )

    async with server(settings) as (_, client):
        run = await wait_for_status(client, run_id, "completed", "failed", "cancelled")
        assert run["status"] == "completed", run
        assert run["output"] == {"message_id": saved["id"], "text": "Hi."}
        rows = await messages(client, agent["id"], session["id"])
    assert _shape(rows) == [("user", "Hello?"), ("assistant", "Hi.")]
    assert len(model_server.requests) == 1


async def test_a_turn_that_lost_its_lease_saves_nothing(
    settings: Settings, model_server: FakeModelServer
) -> None:
    """What a turn saves is fenced by its lease, as its events are: once the run was cancelled,
    ended or handed to another worker, an answer arriving late is refused."""
    model_server.script(Reply(text="Hi."))
    async with server(settings) as (app, client):
        agent, session = await ready_session(client, model_server)
        run_id = (await say(client, agent["id"], session["id"], "Hello?")).json()["run_id"]
        await wait_for_status(client, run_id, "completed")
        agents = app.state.services.agents
        with pytest.raises(StaleLease):
            async with agents.db.write() as tx:
                await agents.add_messages(
                    tx,
                    "ws_default",
                    session["id"],
                    run_id,
                    [{"role": "assistant", "content": "late", "data": {"iteration": 2}}],
                    lease_id="lse_of_an_earlier_attempt",
                )
        rows = await messages(client, agent["id"], session["id"])
    assert _shape(rows) == [("user", "Hello?"), ("assistant", "Hi.")]
