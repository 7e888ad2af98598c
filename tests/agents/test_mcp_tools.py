"""MCP tools: a real MCP server over streamable HTTP on loopback, its tools offered, called,
filtered, timed out, refused when private, and its sessions closed."""

import asyncio
import time
from typing import Any

import httpx
import pytest

from runyard.agents.tools import Toolbox, ToolResult
from tests.agents.conftest import http_tool
from tests.conftest import free_port
from tests.mcp_support import HttpToolTarget, McpTestServer

pytestmark = pytest.mark.timeout(60)


# -- MCP tools ------------------------------------------------------------------------------


def mcp_tool(server: McpTestServer, **fields: Any) -> dict[str, Any]:
    return {"type": "mcp", "url": server.url, **fields}


@pytest.mark.anyio
async def test_an_mcp_servers_tools_are_offered_with_their_schemas(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    async with Toolbox.open([mcp_tool(mcp_server)], http=http, allow_private=True) as toolbox:
        specs = {spec.name: spec for spec in toolbox.specs()}
    assert list(specs) == ["add", "weather", "boom", "text_echo", "sleep"]
    assert specs["add"].description == "Add two integers."
    assert specs["add"].parameters == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    }
    assert toolbox.errors == []


@pytest.mark.anyio
async def test_allowed_tools_keeps_only_those_tools(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    declaration = mcp_tool(mcp_server, allowed_tools=["weather", "add", "teleport"])
    async with Toolbox.open([declaration], http=http, allow_private=True) as toolbox:
        assert [spec.name for spec in toolbox.specs()] == ["add", "weather"]
        refused = await toolbox.call("boom", {})
    assert refused == ToolResult(ok=False, error="no tool named boom")
    assert toolbox.errors == [f"MCP server {mcp_server.url}: it has no tool named teleport"]


@pytest.mark.anyio
async def test_an_mcp_tool_call_returns_its_structured_or_text_content(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    before = mcp_server.call_count
    declaration = mcp_tool(mcp_server, headers={"Authorization": "Bearer mcp-token"})
    async with Toolbox.open([declaration], http=http, allow_private=True) as toolbox:
        added = await toolbox.call("add", {"a": 2, "b": 3})
        weather = await toolbox.call("weather", '{"city": "Bergen"}')
    assert added == ToolResult(ok=True, content={"result": 5})
    assert weather == ToolResult(ok=True, content="Sunny and 21 °C in Bergen.")
    assert mcp_server.call_count == before + 2
    assert mcp_server.calls[-2:] == [("add", {"a": 2, "b": 3}), ("weather", {"city": "Bergen"})]
    assert mcp_server.requests[-1].headers["authorization"] == "Bearer mcp-token"


@pytest.mark.anyio
async def test_an_mcp_tool_name_models_refuse_is_offered_under_a_name_they_accept(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    declarations = [
        {"type": "builtin", "name": "calculator"},
        mcp_tool(mcp_server, allowed_tools=["text.echo"]),
    ]
    async with Toolbox.open(declarations, http=http, allow_private=True) as toolbox:
        assert [spec.name for spec in toolbox.specs()] == ["calculator", "text_echo"]
        echoed = await toolbox.call("text_echo", {"text": "hello"})
    assert echoed == ToolResult(ok=True, content="hello")
    assert mcp_server.calls[-1] == ("text.echo", {"text": "hello"})


@pytest.mark.anyio
async def test_an_mcp_tool_named_like_a_declared_tool_is_not_offered(
    http: httpx.AsyncClient, target: HttpToolTarget, mcp_server: McpTestServer
) -> None:
    declarations = [
        mcp_tool(mcp_server, allowed_tools=["add", "weather"]),
        http_tool(target.url("/echo"), name="weather"),
    ]
    async with Toolbox.open(declarations, http=http, allow_private=True) as toolbox:
        assert [spec.name for spec in toolbox.specs()] == ["weather", "add"]
        result = await toolbox.call("weather", {"city": "Oslo"})
    assert result.content == {"received": {"city": "Oslo"}}
    assert toolbox.errors == [
        f"MCP server {mcp_server.url}: its tool weather is not offered, another tool is "
        "named weather"
    ]


@pytest.mark.anyio
async def test_a_failing_mcp_tool_is_an_error_result(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    async with Toolbox.open([mcp_tool(mcp_server)], http=http, allow_private=True) as toolbox:
        failed = await toolbox.call("boom", {})
        bad_arguments = await toolbox.call("add", {"a": "two", "b": 3})
        after = await toolbox.call("add", {"a": 1, "b": 1})
    assert failed == ToolResult(ok=False, error="Error executing tool boom: boom: the tool broke")
    assert not bad_arguments.ok
    assert after.ok


@pytest.mark.anyio
async def test_an_mcp_tool_that_does_not_answer_in_time_is_an_error_and_the_session_lives_on(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    async with Toolbox.open(
        [mcp_tool(mcp_server)], http=http, allow_private=True, timeout_seconds=1
    ) as toolbox:
        late = await toolbox.call("sleep", {"seconds": 2})
        added = await toolbox.call("add", {"a": 2, "b": 2})
    assert late == ToolResult(ok=False, error="the tool did not answer within 1 s")
    assert added == ToolResult(ok=True, content={"result": 4})


@pytest.mark.anyio
async def test_mcp_calls_may_run_concurrently(http: httpx.AsyncClient) -> None:
    async with (
        McpTestServer() as server,
        Toolbox.open([mcp_tool(server)], http=http, allow_private=True) as toolbox,
    ):
        results = await asyncio.gather(*(toolbox.call("add", {"a": i, "b": i}) for i in range(8)))
        assert server.call_count == 8
    assert [result.content for result in results] == [{"result": 2 * i} for i in range(8)]


@pytest.mark.anyio
async def test_an_unreachable_mcp_server_is_reported_and_the_other_tools_remain(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    declarations = [
        {"type": "mcp", "url": f"http://127.0.0.1:{free_port()}/mcp?token=secret"},
        {"type": "mcp", "url": f"{mcp_server.base_url}/not-mcp"},
        mcp_tool(mcp_server, allowed_tools=["add"]),
        {"type": "builtin", "name": "calculator"},
    ]
    async with Toolbox.open(declarations, http=http, allow_private=True) as toolbox:
        assert [spec.name for spec in toolbox.specs()] == ["calculator", "add"]
        assert (await toolbox.call("add", {"a": 1, "b": 2})).content == {"result": 3}
    assert len(toolbox.errors) == 2
    assert "ConnectError" in toolbox.errors[0]
    assert "secret" not in toolbox.errors[0]
    assert toolbox.errors[1].startswith(f"MCP server {mcp_server.base_url}/not-mcp: ")


@pytest.mark.anyio
async def test_an_mcp_server_that_does_not_answer_is_given_up_on_in_time(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    declarations = [{"type": "mcp", "url": target.url("/slow?seconds=10")}]
    started = time.monotonic()
    async with Toolbox.open(
        declarations, http=http, allow_private=True, timeout_seconds=0.5
    ) as toolbox:
        assert toolbox.specs() == []
    assert time.monotonic() - started < 5
    (error,) = toolbox.errors
    assert error.startswith(f"MCP server {target.base_url}/slow: ")


@pytest.mark.anyio
async def test_a_private_mcp_server_is_refused_unless_private_targets_are_allowed(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    requests = len(mcp_server.requests)
    async with Toolbox.open([mcp_tool(mcp_server)], http=http, allow_private=False) as toolbox:
        assert toolbox.specs() == []
    (error,) = toolbox.errors
    assert error.startswith(f"MCP server {mcp_server.url}: refused: 127.0.0.1 is not a public")
    assert len(mcp_server.requests) == requests


@pytest.mark.anyio
async def test_mcp_sessions_are_closed_when_the_toolbox_closes(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    async with Toolbox.open([mcp_tool(mcp_server)], http=http, allow_private=True) as toolbox:
        assert (await toolbox.call("add", {"a": 1, "b": 1})).ok
    assert await toolbox.call("add", {"a": 1, "b": 1}) == ToolResult(
        ok=False, error=f"the MCP server {mcp_server.url} is not connected"
    )


@pytest.mark.anyio
async def test_a_cancelled_turn_closes_its_mcp_sessions(
    http: httpx.AsyncClient, mcp_server: McpTestServer
) -> None:
    opened: list[Toolbox] = []
    calling = asyncio.Event()

    async def turn() -> None:
        async with Toolbox.open([mcp_tool(mcp_server)], http=http, allow_private=True) as toolbox:
            opened.append(toolbox)
            calling.set()
            await toolbox.call("sleep", {"seconds": 2})

    task = asyncio.create_task(turn())
    await asyncio.wait_for(calling.wait(), 10)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (toolbox,) = opened
    closed = await toolbox.call("add", {"a": 1, "b": 1})
    assert closed.error == f"the MCP server {mcp_server.url} is not connected"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("mcp ")]


@pytest.mark.anyio
async def test_a_turn_cancelled_while_connecting_leaves_no_session_behind(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    declarations = [{"type": "mcp", "url": target.url("/slow?seconds=10")}]

    async def turn() -> None:
        async with Toolbox.open(declarations, http=http, allow_private=True, timeout_seconds=10):
            raise AssertionError("the toolbox opened")

    task = asyncio.create_task(turn())
    for _ in range(500):
        if target.requests:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("mcp ")]


def test_the_mcp_test_server_serves_sync_code_too() -> None:
    async def tool_names(url: str) -> list[str]:
        async with (
            httpx.AsyncClient() as http,
            Toolbox.open([{"type": "mcp", "url": url}], http=http, allow_private=True) as toolbox,
        ):
            return [spec.name for spec in toolbox.specs()]

    with McpTestServer() as server:
        assert asyncio.run(tool_names(server.url)) == [
            "add",
            "weather",
            "boom",
            "text_echo",
            "sleep",
        ]
