"""The tools an agent's model may call: declarations, builtins and the toolbox over real HTTP
tool targets and a real MCP server on loopback."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import httpx2
import pydantic
import pytest

from runyard.agents import builtins
from runyard.agents.builtins import BuiltinError
from runyard.agents.tool_declarations import ToolList, check_unique_names
from runyard.agents.tools import MAX_RESULT_BYTES, PinnedTransport, Toolbox, ToolResult
from tests.conftest import free_port
from tests.mcp_support import HttpToolTarget, McpTestServer

pytestmark = pytest.mark.timeout(60)

PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city"],
    "additionalProperties": False,
}
tools_adapter: pydantic.TypeAdapter[list[Any]] = pydantic.TypeAdapter(ToolList)


def http_tool(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "name": "forecast",
        "description": "The weather forecast for a city.",
        "parameters": PARAMETERS,
        "url": url,
        **fields,
    }


@pytest.fixture(scope="module")
def target_server() -> Iterator[HttpToolTarget]:
    with HttpToolTarget() as server:
        yield server


@pytest.fixture
def target(target_server: HttpToolTarget) -> HttpToolTarget:
    target_server.requests.clear()
    return target_server


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpTestServer]:
    with McpTestServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


# -- declarations -------------------------------------------------------------------------------


def test_every_kind_of_tool_declaration_is_accepted() -> None:
    tools = tools_adapter.validate_python(
        [
            http_tool("https://tools.example.com/forecast", headers={"Authorization": "Bearer t"}),
            {"type": "mcp", "url": "http://mcp.example.com/mcp", "allowed_tools": ["add"]},
            {"type": "builtin", "name": "calculator"},
            {"type": "builtin", "name": "current_time"},
        ]
    )
    assert [tool.type for tool in tools] == ["http", "mcp", "builtin", "builtin"]
    assert tools[0].model_dump()["headers"] == {"Authorization": "Bearer t"}
    assert tools[1].allowed_tools == ["add"]


@pytest.mark.parametrize(
    ("declaration", "complaint"),
    [
        (http_tool("https://x.example/t", name="has space"), "string_pattern_mismatch"),
        (http_tool("https://x.example/t", name="n" * 65), "string_pattern_mismatch"),
        (http_tool("https://x.example/t", parameters={"type": "string"}), "JSON Schema object"),
        (
            http_tool(
                "https://x.example/t",
                parameters={"type": "object", "properties": {"a": {"type": "nonsense"}}},
            ),
            "not a valid JSON Schema (at properties/a/type)",
        ),
        (http_tool("ftp://x.example/t"), "only http and https"),
        (http_tool("https://x.example/" + "a" * 2000), "at most 2000"),
        (http_tool("https://x.example/t", headers={"Host": "other"}), "set by Runyard"),
        (http_tool("https://x.example/t", headers={"bad header": "x"}), "string_pattern"),
        (http_tool("https://x.example/t", headers={"X-A": "a\r\nb"}), "string_pattern"),
        (
            http_tool("https://x.example/t", headers={f"X-{i}": "v" for i in range(51)}),
            "at most 50",
        ),
        (http_tool("https://x.example/t", description="d" * 4001), "at most 4000"),
        (http_tool("https://x.example/t", extra=1), "extra_forbidden"),
        ({"type": "mcp", "url": "http://m.example", "allowed_tools": ["t"] * 201}, "at most 200"),
        ({"type": "builtin", "name": "shell"}, "literal_error"),
        ({"type": "python", "name": "x"}, "union_tag_invalid"),
        (
            [http_tool("https://x.example/t"), http_tool("https://y.example/t")],
            "two tools are named 'forecast'",
        ),
        ([{"type": "builtin", "name": "calculator"}] * 65, "at most 64"),
    ],
)
def test_an_invalid_tool_declaration_is_refused_with_a_reason(
    declaration: dict[str, Any] | list[dict[str, Any]], complaint: str
) -> None:
    tools = declaration if isinstance(declaration, list) else [declaration]
    with pytest.raises(pydantic.ValidationError) as caught:
        tools_adapter.validate_python(tools)
    assert complaint in str(caught.value)


def test_unique_names_are_checked_on_plain_dicts_too() -> None:
    calculator = {"type": "builtin", "name": "calculator"}
    mcp = {"type": "mcp", "url": "http://m.example/mcp"}
    check_unique_names([calculator, mcp, mcp])  # MCP declarations have no name
    with pytest.raises(ValueError, match="calculator"):
        check_unique_names([calculator, calculator])


# -- builtins ------------------------------------------------------------------------------------


def test_current_time_is_now_in_utc_by_default() -> None:
    answer = builtins.run("current_time", {})
    now = datetime.fromisoformat(answer["now"])
    assert answer["timezone"] == "UTC"
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_current_time_in_a_named_zone() -> None:
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    answer = builtins.current_time({"timezone": "Europe/Paris"}, now=moment)
    assert answer == {"now": "2026-07-01T14:00:00+02:00", "timezone": "Europe/Paris"}


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "", "x" * 100, 5])
def test_current_time_refuses_an_unknown_zone(zone: Any) -> None:
    if zone == "":
        assert builtins.run("current_time", {"timezone": zone})["timezone"] == "UTC"
        return
    with pytest.raises(BuiltinError, match=r"time zone|timezone"):
        builtins.run("current_time", {"timezone": zone})


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("-3 ** 2", -9),
        ("+5 - -5", 10),
        ("2 ** -1", 0.5),
        ("1_000 * 1.5", 1500.0),
        ("sqrt(16)", 4.0),
        ("abs(-2.5)", 2.5),
        ("round(pi, 2)", 3.14),
        ("round(2.5)", 2),
        ("min(4, 2, 8)", 2),
        ("max(4, 2, 8)", 8),
        ("floor(2.7) + ceil(2.1)", 5),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("10 ** 100", 10**100),
    ],
)
def test_calculator_computes(expression: str, result: float) -> None:
    answer = builtins.run("calculator", {"expression": expression})
    assert answer == {"result": result}
    assert type(answer["result"]) is type(result)


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("__import__('os')", "not strings"),
        ("__import__(os)", "unknown function __import__"),
        ("eval(1)", "unknown function eval"),
        ("os.system(1)", "only the calculator's functions"),
        ("(1).__class__", "attributes are not allowed"),
        ("x + 1", "unknown name x"),
        ("'\\d'", "not strings"),
        ("'a' * 3", "not strings"),
        ("True + 1", "only numbers"),
        ("[1, 2]", "List is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("1 < 2", "Compare is not allowed"),
        ("1 << 3", "<< is not allowed"),
        ("sqrt(x=4)", "positional arguments only"),
        ("2 ** 100000", "more than 4000 digits"),
        ("9 ** 9 ** 9 ** 9", "more than 4000 digits"),
        ("10 ** 3000 * 10 ** 3000", "more than 4000 digits"),
        ("2.0 ** 100000", "too large"),
        ("1e308 * 10", "too large"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "math domain error"),
        ("(-8) ** 0.5", "not a real number"),
        ("round(1, 10 ** 6)", "within"),
        ("min()", "at least one"),
        ("1 +", "not an arithmetic expression"),
        ("", "empty"),
        ("1 + " * 300 + "1", "longer than 1000"),
        ("-" * 500 + "1", "nested"),
        ("abs(" * 150 + "1" + ")" * 150, "nested"),
        ("(" * 250 + "1" + ")" * 250, "too many nested parentheses"),
    ],
)
def test_calculator_refuses(expression: str, complaint: str) -> None:
    started = time.monotonic()
    with pytest.raises(BuiltinError) as caught:
        builtins.run("calculator", {"expression": expression})
    assert complaint in str(caught.value)
    assert time.monotonic() - started < 1


def test_calculator_needs_an_expression() -> None:
    with pytest.raises(BuiltinError, match="expression must be a string"):
        builtins.run("calculator", {})
    with pytest.raises(BuiltinError, match="unexpected arguments: code"):
        builtins.run("calculator", {"expression": "1", "code": "x"})


# -- the toolbox: builtins and bad calls ----------------------------------------------------


@pytest.mark.anyio
async def test_builtins_are_offered_and_called_through_the_toolbox(
    http: httpx.AsyncClient,
) -> None:
    declarations = [
        {"type": "builtin", "name": "calculator"},
        {"type": "builtin", "name": "current_time"},
    ]
    async with Toolbox.open(declarations, http=http, allow_private=False) as toolbox:
        assert toolbox.specs() == [builtins.CALCULATOR, builtins.CURRENT_TIME]
        assert await toolbox.call("calculator", '{"expression": "6 * 7"}') == ToolResult(
            ok=True, content={"result": 42}
        )
        refused = await toolbox.call("calculator", {"expression": "__import__('os').getcwd()"})
        assert refused == ToolResult(ok=False, error="only numbers are allowed, not strings")
        bad_zone = await toolbox.call("current_time", {"timezone": "Nowhere/Never"})
        assert not bad_zone.ok and "unknown time zone" in (bad_zone.error or "")
        assert toolbox.errors == []


@pytest.mark.anyio
async def test_an_undeclared_tool_is_an_error_result(http: httpx.AsyncClient) -> None:
    async with Toolbox.open([], http=http, allow_private=False) as toolbox:
        assert toolbox.specs() == []
        result = await toolbox.call("rm_rf", {})
    assert result == ToolResult(ok=False, error="no tool named rm_rf")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [("not json", "not valid JSON"), ("[1, 2]", "a JSON object"), ('"text"', "a JSON object")],
)
async def test_arguments_that_are_not_a_json_object_are_an_error_result(
    http: httpx.AsyncClient, arguments: str, complaint: str
) -> None:
    async with Toolbox.open(
        [{"type": "builtin", "name": "calculator"}], http=http, allow_private=False
    ) as toolbox:
        result = await toolbox.call("calculator", arguments)
    assert not result.ok and complaint in (result.error or "")


@pytest.mark.anyio
async def test_a_stored_declaration_that_is_no_longer_valid_is_reported_not_raised(
    http: httpx.AsyncClient,
) -> None:
    declarations = [
        {"type": "builtin", "name": "teleport"},
        {"type": "builtin", "name": "calculator"},
        {"type": "builtin", "name": "calculator"},
    ]
    async with Toolbox.open(declarations, http=http, allow_private=False) as toolbox:
        assert [spec.name for spec in toolbox.specs()] == ["calculator"]
    assert len(toolbox.errors) == 2
    assert "tool 0: invalid declaration" in toolbox.errors[0]
    assert "two tools are named calculator" in toolbox.errors[1]


# -- http tools -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_http_tool_posts_its_arguments_and_returns_the_json_answer(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    declaration = http_tool(target.url("/echo"), headers={"Authorization": "Bearer tool-token"})
    async with Toolbox.open([declaration], http=http, allow_private=True) as toolbox:
        (spec,) = toolbox.specs()
        assert (spec.name, spec.parameters) == ("forecast", PARAMETERS)
        result = await toolbox.call("forecast", {"city": "Oslo", "days": 2})
    assert result == ToolResult(ok=True, content={"received": {"city": "Oslo", "days": 2}})
    (request,) = target.requests
    assert request.method == "POST"
    assert request.json() == {"city": "Oslo", "days": 2}
    assert request.headers["authorization"] == "Bearer tool-token"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{target.port}"
    assert request.headers["user-agent"].startswith("Runyard-Agents/")


@pytest.mark.anyio
async def test_an_http_tool_answering_text_gives_the_text(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    async with Toolbox.open(
        [http_tool(target.url("/text"))], http=http, allow_private=True
    ) as toolbox:
        result = await toolbox.call("forecast", '{"city": "Oslo"}')
    assert result == ToolResult(ok=True, content="plain words")


@pytest.mark.anyio
async def test_an_http_host_named_by_name_is_reached_at_its_checked_address(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    # `localhost` may resolve to ::1 first, where nothing listens: the next address is tried
    url = f"http://localhost:{target.port}/echo"
    async with Toolbox.open([http_tool(url)], http=http, allow_private=True) as toolbox:
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert result.ok, result.error
    assert target.requests[-1].headers["host"] == f"localhost:{target.port}"


@pytest.mark.anyio
async def test_arguments_breaking_the_schema_are_refused_without_a_request(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    async with Toolbox.open(
        [http_tool(target.url("/echo"))], http=http, allow_private=True
    ) as toolbox:
        wrong_type = await toolbox.call("forecast", {"city": 12})
        missing = await toolbox.call("forecast", {"days": 2})
        too_few = await toolbox.call("forecast", {"city": "Oslo", "days": 0})
        extra = await toolbox.call("forecast", {"city": "Oslo", "units": "C"})
    assert wrong_type == ToolResult(
        ok=False, error="invalid arguments: city: 12 is not of type 'string'"
    )
    assert "'city' is a required property" in (missing.error or "")
    assert "days: 0 is less than the minimum of 1" in (too_few.error or "")
    assert "'units' was unexpected" in (extra.error or "")
    assert target.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 404, 429])
async def test_an_http_error_status_is_an_error_result_with_the_body(
    http: httpx.AsyncClient, target: HttpToolTarget, status: int
) -> None:
    async with Toolbox.open(
        [http_tool(target.url(f"/status/{status}"))], http=http, allow_private=True
    ) as toolbox:
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert result == ToolResult(ok=False, error=f"HTTP {status}: the target failed with {status}")


@pytest.mark.anyio
async def test_an_http_tool_does_not_follow_redirects(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    declaration = http_tool(target.url("/redirect"))
    async with (
        httpx.AsyncClient(follow_redirects=True) as following,
        Toolbox.open([declaration], http=following, allow_private=True) as toolbox,
    ):
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert result == ToolResult(ok=False, error="HTTP 307")
    assert [r.path for r in target.requests] == ["/redirect"]


@pytest.mark.anyio
async def test_an_http_tool_that_does_not_answer_in_time_is_an_error_result(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    async with Toolbox.open(
        [http_tool(target.url("/slow?seconds=10"))],
        http=http,
        allow_private=True,
        timeout_seconds=0.5,
    ) as toolbox:
        started = time.monotonic()
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert time.monotonic() - started < 5
    assert not result.ok and "did not answer within 0.5 s" in (result.error or "")


@pytest.mark.anyio
async def test_an_answer_over_one_mebibyte_is_an_error_result(
    http: httpx.AsyncClient, target: HttpToolTarget
) -> None:
    fits = http_tool(target.url(f"/big?bytes={MAX_RESULT_BYTES}"), name="fits")
    too_big = http_tool(target.url(f"/big?bytes={MAX_RESULT_BYTES + 1}"), name="too_big")
    async with Toolbox.open([fits, too_big], http=http, allow_private=True) as toolbox:
        small = await toolbox.call("fits", {"city": "Oslo"})
        large = await toolbox.call("too_big", {"city": "Oslo"})
    assert small.ok and len(small.content) == MAX_RESULT_BYTES
    assert large == ToolResult(
        ok=False, error=f"the answer is larger than {MAX_RESULT_BYTES} bytes"
    )


@pytest.mark.anyio
async def test_an_http_tool_that_cannot_be_reached_is_an_error_result(
    http: httpx.AsyncClient,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing-here"
    async with Toolbox.open([http_tool(url)], http=http, allow_private=True) as toolbox:
        result = await toolbox.call("forecast", {"city": "Oslo"})
    assert not result.ok and (result.error or "").startswith("ConnectError")


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_private_http_tool_is_refused_unless_private_targets_are_allowed(
    http: httpx.AsyncClient, target: HttpToolTarget, host: str
) -> None:
    declaration = http_tool(f"http://{host}:{target.port}/echo")
    async with Toolbox.open([declaration], http=http, allow_private=False) as toolbox:
        refused = await toolbox.call("forecast", {"city": "Oslo"})
    assert not refused.ok
    assert (refused.error or "").startswith("refused: ")
    assert "not a public address" in (refused.error or "")
    assert target.requests == []
    async with Toolbox.open([declaration], http=http, allow_private=True) as toolbox:
        allowed = await toolbox.call("forecast", {"city": "Oslo"})
    assert allowed.ok
    assert len(target.requests) == 1


@pytest.mark.anyio
async def test_the_pinned_transport_reaches_only_its_host_at_the_checked_address(
    target: HttpToolTarget,
) -> None:
    # a name that resolves nowhere, pinned to the loopback address the target listens on
    url = httpx2.URL(f"http://tools.invalid:{target.port}/")
    transport = PinnedTransport(url, ["127.0.0.1"])
    async with httpx2.AsyncClient(transport=transport) as client:
        response = await client.post(url.join("/echo"), json={"city": "Oslo"})
        assert response.json() == {"received": {"city": "Oslo"}}
        with pytest.raises(httpx2.ConnectError, match="not the MCP server's host"):
            await client.post(f"http://127.0.0.1:{target.port}/echo", json={})
    assert target.requests[-1].headers["host"] == f"tools.invalid:{target.port}"
    assert len(target.requests) == 1


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
