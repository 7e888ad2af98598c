"""Agents end to end (DESIGN §9): messages start turns that stream a real SDK's completion from a
fake model server on loopback, call tools, persist the conversation and account usage."""

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.agent_support import (
    PROVIDER_KEY,
    make_agent,
    make_model,
    make_session,
    messages,
    ready_session,
    say,
    session_events,
)
from tests.llm_fake import FakeModelServer, Reply
from tests.mcp_support import HttpToolTarget, McpTestServer
from tests.support import assert_problem, wait_for_status

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(60),
    pytest.mark.settings(
        worker_enabled=True,
        agent_tools_allow_private=True,
        model_max_retries=1,
        model_retry_base_seconds=0.01,
    ),
]
FINISHED = ("completed", "failed", "cancelled")


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


async def _finished(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    return await wait_for_status(client, run_id, *FINISHED)


async def _streaming(server: FakeModelServer) -> None:
    """Until the model has sent its first chunk (bounded)."""
    for _ in range(200):
        if server.requests and server.requests[0].text_times:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the model was never called")


@pytest.mark.parametrize("provider_type", ["openai_compatible", "anthropic"])
async def test_a_conversation_with_a_tool_call_round_trip(
    client: httpx.AsyncClient,
    model_server: FakeModelServer,
    provider_type: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    await make_model(client, model_server, provider_type=provider_type)
    agent = await make_agent(client, tools=[{"type": "builtin", "name": "calculator"}])
    session = await make_session(client, agent["id"], title="maths")
    model_server.script(
        Reply(tool_calls=[("calculator", {"expression": "6*7"})], input_tokens=30, output_tokens=8),
        Reply(text="The answer is 42.", input_tokens=50, output_tokens=6),
    )

    posted = await say(client, agent["id"], session["id"], "What is six times seven?")
    assert posted.status_code == 201, posted.text
    bodies.append(posted.text)
    body = posted.json()
    assert body["message"]["role"] == "user"
    assert body["message"]["content"] == "What is six times seven?"
    run = await _finished(client, body["run_id"])
    assert run["status"] == "completed", run["error"]
    assert run["pipeline"] == "agent.turn"
    assert run["session_id"] == session["id"]
    assert run["output"]["text"] == "The answer is 42."
    assert run["usage"] == {
        "input_tokens": 80,
        "output_tokens": 14,
        "cost_usd": pytest.approx((80 * 1.0 + 14 * 2.0) / 1e6),
    }

    stored = await messages(client, agent["id"], session["id"])
    assert [m["role"] for m in stored] == ["user", "tool_call", "tool_result", "assistant"]
    call, result = stored[1], stored[2]
    assert call["name"] == "calculator"
    assert call["arguments"] == {"expression": "6*7"}
    assert result["tool_call_id"] == call["tool_call_id"]
    assert result["content"] == {"result": 42}
    assert result["is_error"] is False
    assert stored[3]["content"] == "The answer is 42."
    assert all(m["run_id"] == run["id"] for m in stored)

    # the model's second request carried the tool's result, in its provider's format
    second = model_server.requests[1].body
    if provider_type == "anthropic":
        blocks = second["messages"][-1]["content"]
        assert blocks[0]["type"] == "tool_result"
        assert "42" in str(blocks[0]["content"])
        assert second["system"] == "You are terse." or "You are terse." in str(second["system"])
    else:
        tool_message = second["messages"][-1]
        assert tool_message["role"] == "tool"
        assert tool_message["tool_call_id"] == call["tool_call_id"]
        assert second["messages"][0] == {"role": "system", "content": "You are terse."}

    # every event of the turn, run.* included, is in the session's stream, dense from 1
    events = await session_events(client, agent["id"], session["id"])
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    assert types[:4] == ["message.user", "run.created", "run.queued", "run.started"]
    assert types[-1] == "run.completed"
    order = [t for t in types if t in ("tool.call", "tool.result", "text.start", "text.end")]
    assert order == ["tool.call", "tool.result", "text.start", "text.end"]
    text = "".join(e["data"]["delta"] for e in events if e["type"] == "text.delta")
    assert text == "The answer is 42."
    assert all(e["stream_id"] == session["id"] for e in events)
    assert {e["run_id"] for e in events} == {run["id"]}
    # ...and the run's own stream has them too, from 1, ending with the run
    own = (await client.get(f"/v1/runs/{run['id']}/events", params={"limit": 1000})).json()
    assert [e["type"] for e in own["data"]] == types[1:]
    assert own["data"][0]["sequence"] == 1

    current = await client.get(f"/v1/agents/{agent['id']}/sessions/{session['id']}")
    assert current.json()["status"] == "idle"
    assert current.json()["message_count"] == 4

    # the provider's key went to the provider, and nowhere else
    assert PROVIDER_KEY in str(model_server.requests[0].headers)
    for path in (
        "/v1/llm-providers",
        f"/v1/runs/{run['id']}",
        f"/v1/runs/{run['id']}/events?limit=1000",
        "/v1/audit?limit=200",
        f"/v1/agents/{agent['id']}/sessions/{session['id']}/messages",
        f"/v1/agents/{agent['id']}/sessions/{session['id']}/events?limit=1000",
    ):
        response = await client.get(path)
        assert response.status_code == 200, path
        bodies.append(response.text)
    assert not [b for b in bodies if PROVIDER_KEY in b]
    assert not [r for r in caplog.records if PROVIDER_KEY in r.getMessage()]


async def test_a_failing_model_fails_the_turn_and_the_session_goes_on(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    agent, session = await ready_session(client, model_server)
    model_server.script(Reply(status=500), Reply(status=500))  # the first try and one retry

    failed = await _finished(
        client, (await say(client, agent["id"], session["id"], "hi")).json()["run_id"]
    )
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "model_unavailable"
    assert "500" in failed["error"]["message"]
    assert len(model_server.requests) == 2
    path = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
    assert (await client.get(path)).json()["status"] == "failed"

    model_server.script(Reply(status=429, retry_after=0), Reply(text="Hello again."))
    turn = await say(client, agent["id"], session["id"], "still there?")
    assert turn.status_code == 201, turn.text
    done = await _finished(client, turn.json()["run_id"])
    assert done["status"] == "completed", done["error"]
    assert done["output"]["text"] == "Hello again."
    assert len(model_server.requests) == 4  # 429, then the retry that answered
    assert (await client.get(path)).json()["status"] == "idle"
    # the failed turn left no assistant message; the history the model saw has both users
    roles = [m["role"] for m in await messages(client, agent["id"], session["id"])]
    assert roles == ["user", "user", "assistant"]
    sent = model_server.requests[-1].body["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["hi", "still there?"]


async def test_multitask_reject_enqueue_and_interrupt(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    agent, session = await ready_session(client, model_server)
    aid, sid = agent["id"], session["id"]
    slow = Reply(text="x" * 400, chunk=4, tokens_per_second=20)  # 100 chunks: 5 s
    model_server.script(slow, Reply(text="second"))

    first = (await say(client, aid, sid, "one")).json()["run_id"]
    await _streaming(model_server)
    # default: refused, and the refused message is not kept
    refused = await say(client, aid, sid, "two")
    problem = assert_problem(refused, 409, "turn_in_progress")
    assert problem["run_id"] == first
    assert len(await messages(client, aid, sid)) == 1

    queued = await say(client, aid, sid, "two", multitask="enqueue")
    assert queued.status_code == 201, queued.text
    second = queued.json()["run_id"]
    assert (await client.get(f"/v1/runs/{second}")).json()["status"] == "pending"
    assert_problem(await client.post(f"/v1/runs/{second}/start"), 409, "builtin_pipeline")

    # interrupt: both unfinished turns are cancelled, then the new one runs
    model_server.script(Reply(text="third"))
    interrupting = await say(client, aid, sid, "three", multitask="interrupt")
    assert interrupting.status_code == 201, interrupting.text
    third = interrupting.json()["run_id"]
    assert (await client.get(f"/v1/runs/{first}")).json()["status"] == "cancelled"
    assert (await client.get(f"/v1/runs/{second}")).json()["status"] == "cancelled"
    done = await _finished(client, third)
    assert done["status"] == "completed", done["error"]
    # the cancelled turn's model stream was closed, not read to its end
    assert (await model_server.wait_done_async(0)).finished is False


async def test_enqueued_turns_run_one_after_another(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    agent, session = await ready_session(client, model_server)
    aid, sid = agent["id"], session["id"]
    model_server.script(
        Reply(text="a" * 40, chunk=4, tokens_per_second=40), Reply(text="second answer")
    )
    first = (await say(client, aid, sid, "one")).json()["run_id"]
    second = (await say(client, aid, sid, "two", multitask="enqueue")).json()["run_id"]
    assert (await _finished(client, first))["status"] == "completed"
    done = await _finished(client, second)
    assert done["status"] == "completed", done["error"]
    assert done["started_at"] >= (await client.get(f"/v1/runs/{first}")).json()["completed_at"]
    # the second turn saw the first one's answer before its own question
    sent = model_server.requests[1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[-1]["content"] == "two"
    roles = [(m["role"], m["content"]) for m in await messages(client, aid, sid)]
    assert roles[-1] == ("assistant", "second answer")


async def test_cancelling_a_turn_stops_the_model_stream(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    agent, session = await ready_session(client, model_server)
    model_server.script(Reply(text="y" * 400, chunk=4, tokens_per_second=20))
    run_id = (await say(client, agent["id"], session["id"], "talk")).json()["run_id"]
    await _streaming(model_server)
    cancelled = await client.post(f"/v1/runs/{run_id}/cancel", json={"reason": "enough"})
    assert cancelled.status_code == 200
    final = await wait_for_status(client, run_id, "cancelled", seconds=5)
    assert final["status"] == "cancelled"
    assert (await model_server.wait_done_async(0)).finished is False


async def test_an_agent_calls_a_tool_of_a_real_mcp_server(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    with McpTestServer() as mcp:
        await make_model(client, model_server)
        agent = await make_agent(
            client, tools=[{"type": "mcp", "url": mcp.url, "allowed_tools": ["add"]}]
        )
        session = await make_session(client, agent["id"])
        model_server.script(Reply(tool_calls=[("add", {"a": 2, "b": 3})]), Reply(text="2 + 3 = 5"))
        run_id = (await say(client, agent["id"], session["id"], "add 2 and 3")).json()["run_id"]
        run = await _finished(client, run_id)
        assert run["status"] == "completed", run["error"]
        offered = [t["function"]["name"] for t in model_server.requests[0].body["tools"]]
        assert offered == ["add"]
        events = await session_events(client, agent["id"], session["id"])
        [result] = [e for e in events if e["type"] == "tool.result"]
        assert result["data"]["ok"] is True
        assert "5" in str(result["data"]["content"])


async def test_an_undeclared_or_failing_tool_gives_the_model_an_error(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    agent, session = await ready_session(
        client, model_server, tools=[{"type": "builtin", "name": "calculator"}]
    )
    model_server.script(
        Reply(tool_calls=[("rm_rf", {"path": "/"}), ("calculator", {"expression": "1/0"})]),
        Reply(text="Both failed."),
    )
    run = await _finished(
        client, (await say(client, agent["id"], session["id"], "go")).json()["run_id"]
    )
    assert run["status"] == "completed", run["error"]
    results = [
        m for m in await messages(client, agent["id"], session["id"]) if m["role"] == "tool_result"
    ]
    assert [r["is_error"] for r in results] == [True, True]
    assert "rm_rf" in str(results[0]["content"])


async def test_a_session_of_another_agent_is_not_found(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    await make_model(client, model_server)
    mine = await make_agent(client, name="mine")
    other = await make_agent(client, name="other")
    session = await make_session(client, mine["id"])
    base = f"/v1/agents/{other['id']}/sessions/{session['id']}"
    for response in (
        await client.get(base),
        await client.patch(base, json={"title": "x"}),
        await client.get(base + "/messages"),
        await client.post(base + "/messages", json={"content": "hi"}),
        await client.get(base + "/events"),
        await client.delete(base),
    ):
        assert_problem(response, 404, "session_not_found")
    assert (
        await client.get(f"/v1/agents/{mine['id']}/sessions/{session['id']}")
    ).status_code == 200


async def test_agents_crud_and_archive(client: httpx.AsyncClient) -> None:
    agent = await make_agent(
        client, tags=["support"], tools=[{"type": "builtin", "name": "current_time"}]
    )
    assert agent["status"] == "active"
    assert agent["max_iterations"] == 10
    changed = await client.patch(f"/v1/agents/{agent['id']}", json={"system_prompt": "Be kind."})
    assert changed.json()["system_prompt"] == "Be kind."
    assert changed.json()["tools"] == [{"type": "builtin", "name": "current_time"}]
    listed = (await client.get("/v1/agents")).json()
    assert [a["id"] for a in listed["data"]] == [agent["id"]]

    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    archived = (await client.get(f"/v1/agents/{agent['id']}")).json()
    assert archived["status"] == "archived"
    assert (await client.get("/v1/agents", params={"status": "active"})).json()["data"] == []
    refused = await client.post(f"/v1/agents/{agent['id']}/sessions", json={})
    assert_problem(refused, 409, "agent_archived")


async def test_bad_agent_definitions_are_400(client: httpx.AsyncClient) -> None:
    for tools in (
        [{"type": "builtin", "name": "shell"}],
        [{"type": "http", "name": "bad name", "description": "x", "parameters": {}, "url": "x"}],
        [{"type": "mcp"}],
        [
            {
                "type": "mcp",
                "url": "https://tools.example/mcp",
                "headers": {"Authorization": "Bearer pasted-with-a-space "},
            }
        ],
    ):
        response = await client.post("/v1/agents", json={"name": "a", "tools": tools})
        assert_problem(response, 400, "invalid_input")
    unknown = await client.post("/v1/agents", json={"name": "a", "default_model_id": "mdl_nope"})
    body = assert_problem(unknown, 400, "invalid_input")
    assert body["errors"][0]["loc"] == ["body", "default_model_id"]


async def test_a_message_without_a_model_is_refused_and_not_kept(
    client: httpx.AsyncClient,
) -> None:
    agent = await make_agent(client)
    session = await make_session(client, agent["id"])
    refused = await say(client, agent["id"], session["id"], "hello?")
    assert_problem(refused, 400, "no_default_model")
    assert await messages(client, agent["id"], session["id"]) == []
    assert (await client.get("/v1/runs", params={"session_id": session["id"]})).json()["data"] == []


@pytest.mark.settings(worker_enabled=False)
async def test_without_the_worker_a_message_is_503(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    agent, session = await ready_session(client, model_server)
    assert_problem(await say(client, agent["id"], session["id"], "hi"), 503, "turns_unavailable")
    assert await messages(client, agent["id"], session["id"]) == []


async def test_the_turn_pipeline_is_the_servers(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    refused = await client.post("/v1/pipelines", json={"name": "agent.turn", "steps": []})
    assert_problem(refused, 409, "builtin_pipeline")
    agent, session = await ready_session(client, model_server)
    run = await _finished(
        client, (await say(client, agent["id"], session["id"], "hi")).json()["run_id"]
    )
    assert_problem(
        await client.delete(f"/v1/pipelines/{run['pipeline_id']}"), 409, "builtin_pipeline"
    )
    assert_problem(
        await client.patch(f"/v1/pipelines/{run['pipeline_id']}", json={"steps": []}),
        409,
        "builtin_pipeline",
    )
    # turns start from session messages only: not created, replayed or started by hand
    direct = await client.post("/v1/runs", json={"pipeline": "agent.turn", "input": {}})
    assert_problem(direct, 409, "builtin_pipeline")
    assert_problem(
        await client.post(f"/v1/runs/{run['id']}/replay", json={}), 409, "builtin_pipeline"
    )


async def test_a_retried_message_with_an_idempotency_key_starts_one_turn(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    agent, session = await ready_session(client, model_server)
    path = f"/v1/agents/{agent['id']}/sessions/{session['id']}/messages"
    headers = {"Idempotency-Key": "msg-1"}
    first = await client.post(path, json={"content": "once"}, headers=headers)
    again = await client.post(path, json={"content": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    await _finished(client, first.json()["run_id"])
    assert [m["content"] for m in await messages(client, agent["id"], session["id"])] == [
        "once",
        "ok",
    ]
    turns = (await client.get("/v1/runs", params={"session_id": session["id"]})).json()["data"]
    assert [t["id"] for t in turns] == [first.json()["run_id"]]


async def test_an_http_tool_gets_its_secret_headers_which_answers_never_show(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    with HttpToolTarget() as target:
        await make_model(client, model_server)
        tool = {
            "type": "http",
            "name": "lookup",
            "description": "Look a city up",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
            "url": target.url("/echo"),
            "headers": {"Authorization": "Bearer tool-secret-77"},
        }
        agent = await make_agent(client, tools=[tool])
        assert agent["tools"][0]["headers"] == {"Authorization": "***"}
        # a tool list sent back as read keeps the stored secret
        changed = await client.patch(
            f"/v1/agents/{agent['id']}", json={"tools": agent["tools"], "description": "x"}
        )
        assert changed.status_code == 200, changed.text
        assert "tool-secret-77" not in changed.text
        session = await make_session(client, agent["id"])
        model_server.script(
            Reply(tool_calls=[("lookup", {"city": "Oslo"})]), Reply(text="Found it.")
        )
        run_id = (await say(client, agent["id"], session["id"], "Oslo?")).json()["run_id"]
        run = await _finished(client, run_id)
        assert run["status"] == "completed", run["error"]
        [received] = target.requests
        assert received.headers["authorization"] == "Bearer tool-secret-77"
        assert received.json() == {"city": "Oslo"}
        results = [
            m
            for m in await messages(client, agent["id"], session["id"])
            if m["role"] == "tool_result"
        ]
        assert results[0]["content"] == {"received": {"city": "Oslo"}}


async def test_a_provider_moved_to_another_address_does_not_take_its_key_along(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    model = await make_model(client, model_server)
    path = f"/v1/llm-providers/{model['provider_id']}"
    renamed = await client.patch(path, json={"name": "renamed"})
    assert renamed.json()["api_key_set"] is True
    moved = await client.patch(path, json={"base_url": "https://elsewhere.example/v1"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["api_key_set"] is False
    rekeyed = await client.patch(
        path, json={"base_url": f"{model_server.url}/v1", "api_key": PROVIDER_KEY}
    )
    assert rekeyed.json()["api_key_set"] is True
